"""PNASNet space (``random_net_pnasnet``; search-spaces.md section 8).

The kuangliu PNASNet with cell A only: sampled normal-cell counts per stage and
widths P0, P1 = P0 * a, P2 = P1 * b.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jnas import arch
from jnas.spaces import builder

NAME = "pnasnet"
# law -> [low, high) of "M" (cells per stage), "P0" and the multipliers "a", "b"
LAWS = {
    "s1": {"M": (1, 12), "P0": (16, 128), "a": (1, 4), "b": (1, 4)},
    "s2": {"M": (1, 8), "P0": (16, 64), "a": (1, 3), "b": (1, 3)},
    "s3": {"M": (1, 3), "P0": (8, 16), "a": (1, 2), "b": (1, 2)},
}
REFERENCES = {"PNASNetA": {"M": [6, 6, 6], "P": [44, 88, 176]}}


def sample_args(rng: np.random.RandomState, law: str) -> dict[str, Any]:
    """Draws the arguments of one network (draw order of section 8.1).

    Args:
      rng: a fresh ``numpy.random.RandomState(index)``.
      law: a key of ``LAWS``.

    Returns:
      {"M": 3 ints, "P": [P0, P1, P2]}.
    """
    lw = LAWS[law]
    m = rng.randint(*lw["M"], 3).tolist()
    p0 = int(rng.randint(*lw["P0"], 1)[0])
    p1 = p0 * int(rng.randint(*lw["a"], 1)[0])
    p2 = p1 * int(rng.randint(*lw["b"], 1)[0])
    return {"M": m, "P": [p0, p1, p2]}


def build(args: dict[str, Any]) -> arch.Arch:
    """Builds the network of section 8.3 from its arguments.

    Args:
      args: as returned by ``sample_args`` (or ``REFERENCES``).

    Returns:
      The validated Arch.
    """
    m = builder.int_list(args, "M", 3, NAME)
    p = builder.int_list(args, "P", 3, NAME)
    if p[1] % p[0] or p[2] % p[1]:
        raise ValueError(
            f"{NAME}: widths P {p} must be integer multiples (the 7x7 conv is "
            "grouped by its input width)"
        )
    b = builder.Builder()
    x = b.relu("stem.relu", b.conv_bn("stem", b.input, p[0], 3, padding=1))
    for s in range(3):
        if s > 0:
            x = _cell(b, f"down{s}", x, p[s - 1], p[s], 2)
        for j in range(m[s]):
            x = _cell(b, f"stage{s}.cell{j}", x, p[s], p[s], 1)
    b.classifier(x, 8, counted=False)
    return b.finish({"space": NAME})


def _cell(b: builder.Builder, p: str, x: str, c_in: int, c_out: int, stride: int):
    """Cell A: a depthwise 7x7 (multiplier c_out / c_in) plus a pooled path."""
    y1 = b.conv_bn(
        f"{p}.sep", x, c_out, 7, stride=stride, padding=3, groups=arch.DEPTHWISE
    )
    y2 = b.maxpool(f"{p}.pool", x, 3, stride=stride, padding=1)
    if stride == 2:  # the 1x1 projection runs after the pooling
        y2 = b.conv_bn(f"{p}.proj", y2, c_out, 1)
    return b.relu(f"{p}.relu", b.add(f"{p}.add", y1, y2))
