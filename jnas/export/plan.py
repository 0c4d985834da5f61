"""A static memory plan for a network's activations: one arena, fixed offsets.

The deployment allocates nothing at run time: every tensor of the schedule
(the IR's node order, input image included) gets a fixed offset in one arena.
The liveness rule is `jnas.cost.peak_activation_bytes`'s: a node's output is
allocated before it runs, while its inputs are still live, and an input is
freed after its last reader has run.
`plan` places them offline (greedy by size, see there) and checks that the
arena is exactly the peak live size: no fragmentation, so the memory the
search counted is the memory the device needs.
"""

from __future__ import annotations

import math

import numpy as np

from jnas import arch as arch_lib
from jnas import cost, precision


class PlanError(ValueError):
    """No fragmentation-free placement was found for this schedule."""


def _numel(shape) -> int:
    return math.prod(shape)


def lifetimes(arch: arch_lib.Arch) -> dict[str, tuple[int, int]]:
    """{tensor: (first step, last step)} under the liveness rule above."""
    span = {node.name: [i, i] for i, node in enumerate(arch.nodes)}
    for i, node in enumerate(arch.nodes):
        for src in node.inputs:
            span[src][1] = i
    return {k: (a, b) for k, (a, b) in span.items()}


def peak_floats(arch: arch_lib.Arch) -> int:
    """The largest live set over the schedule, in floats (float32 activations:
    `cost.peak_activation_bytes` / 4, the cost model's own count)."""
    return cost.peak_activation_bytes(arch, precision.FLOAT32) // 4


def _place(order, size, spans, best_fit=False) -> tuple[dict[str, int], int]:
    """Offsets in ``order``: the lowest gap that fits (or the smallest one)."""
    placed: list[tuple[str, int]] = []
    offsets: dict[str, int] = {}
    for name in order:
        a, b = spans[name]
        busy = sorted(
            (off, off + size[other])
            for other, off in placed
            if spans[other][0] <= b and a <= spans[other][1]
        )
        gaps, cursor = [], 0
        for lo, hi in busy:
            if lo - cursor >= size[name]:
                gaps.append((lo - cursor, cursor))
            cursor = max(cursor, hi)
        if not gaps:
            offset = cursor
        elif best_fit:
            offset = min(gaps)[1]
        else:
            offset = gaps[0][1]
        offsets[name] = offset
        placed.append((name, offset))
    return offsets, max(offsets[n] + size[n] for n in size)


def plan(
    arch: arch_lib.Arch, tries: int = 500, *, strict: bool = True
) -> tuple[dict[str, int], int]:
    """({node name: offset in floats}, arena size in floats) of ``arch``.

    Greedy by size (the offline planner of TFLite's arena allocator): the
    tensors, largest first, each at the lowest offset where it overlaps no
    already placed tensor that is live at the same time. Where that order
    fragments (DenseNet's growing concatenations, mostly), seeded random
    perturbations of the order (sizes jittered by +-30%, placed lowest-fit,
    and by +-70%, placed best-fit, in turn) are tried until one packs into
    the peak live size (docs/export.md has how often that is reached).

    Large MobileNetV2 s1 and GoogLeNet s1 samples (arenas of megabytes) can
    stay a few percent above the peak; ``strict=False`` returns the best
    plan found instead of raising.

    Raises:
      PlanError: (strict) no order of ``tries`` reached the peak live size.
    """
    size = {name: _numel(shape) for name, shape in arch.shapes.items()}
    spans = lifetimes(arch)
    peak = peak_floats(arch)
    order = sorted(size, key=lambda n: (-size[n], spans[n][0]))
    offsets, arena = _place(order, size, spans)
    rng = np.random.default_rng(0)
    for attempt in range(tries):
        if arena == peak:
            return offsets, arena
        spread = 0.7 if attempt % 2 else 0.3  # best-fit takes wider jitter
        jitter = dict(
            zip(size, rng.uniform(1 - spread, 1 + spread, len(size)), strict=True)
        )
        order = sorted(size, key=lambda n: (-size[n] * jitter[n], spans[n][0]))
        candidate = _place(order, size, spans, best_fit=attempt % 2 == 1)
        if candidate[1] < arena:
            offsets, arena = candidate
    if arena != peak and strict:
        raise PlanError(
            f"the best arena plan of {tries} orders needs {arena} floats, the "
            f"peak live set is {peak}"
        )
    return offsets, arena
