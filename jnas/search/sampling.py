"""Sampling a round's candidates: seeded indices per (space, law), and the
"narrow" mode's boxes (the paper's automatic workflow: rounds after the first
sample only inside the box of arguments where feasible, accurate candidates
were found).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jnas import arch as arch_lib
from jnas import spaces


def _sample_indices(seed: int, round_index: int, count: int) -> np.ndarray:
    rng = np.random.default_rng([seed, round_index, 0x5EA2C4])
    return rng.integers(0, 2**31, size=count)


def _flat_args(args: dict[str, Any]) -> dict[str, float]:
    """Numeric sampled arguments as scalars: lists become key[i] entries."""
    flat = {}
    for key, value in args.items():
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if isinstance(v, (int, float)):
                    flat[f"{key}[{i}]"] = float(v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = float(value)
    return flat


def narrowed_box(
    records: Sequence[dict[str, Any]], top_fraction: float, margin: float
) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """The sampling box per (space, law) for the next round of "narrow" mode.

    Among the feasible records of a (space, law), the best `top_fraction` by
    validation accuracy (float32) span, per numeric sampled argument, a range
    [lo, hi]; it is widened by `margin` times its width (and by at least 1,
    so integer arguments keep a neighbour). Pairs without feasible records get
    no box (their sampling stays the law's).
    """
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r.get("feasible"):
            by_pair.setdefault((r["space"], r["law"]), []).append(r)
    boxes = {}
    for (space, law), rs in by_pair.items():
        rs = sorted(rs, key=lambda r: -r["accuracy"]["float32"]["val"])
        top = rs[: max(1, math.ceil(top_fraction * len(rs)))]
        flats = [_flat_args(spaces.sampled_args(space, law, r["index"])) for r in top]
        keys = set.intersection(*(set(f) for f in flats))
        box = {}
        for key in keys:
            lo = min(f[key] for f in flats)
            hi = max(f[key] for f in flats)
            pad = max(1.0, margin * (hi - lo))
            box[key] = (lo - pad, hi + pad)
        boxes[(space, law)] = box
    return boxes


def _in_box(args: dict[str, Any], box: dict[str, tuple[float, float]]) -> bool:
    flat = _flat_args(args)
    return all(lo <= flat[k] <= hi for k, (lo, hi) in box.items() if k in flat)


def sample_round(
    pairs: Sequence[tuple[str, str]],
    count: int,
    *,
    seed: int,
    round_index: int,
    boxes: dict[tuple[str, str], dict[str, tuple[float, float]]] | None = None,
    max_tries: int = 50,
) -> list[arch_lib.Arch]:
    """The round's `count` candidates, spread evenly over the (space, law) pairs.

    Deterministic in (seed, round): sample indices come from a seeded
    generator; an index whose network cannot be built (e.g. a DenseNet
    transition of zero width) is skipped, as are, in "narrow" mode (`boxes`
    given), samples outside the pair's box (at most `max_tries` draws per
    candidate).
    """
    n = count
    want = [n // len(pairs) + (i < n % len(pairs)) for i in range(len(pairs))]
    out = []
    tries = max(1, max_tries if boxes else 4)
    for p, ((space, law), count) in enumerate(zip(pairs, want, strict=True)):
        indices = _sample_indices(seed, round_index * 1000 + p, count * tries)
        box = (boxes or {}).get((space, law))
        got = 0
        for index in indices:
            if got == count:
                break
            index = int(index)
            if box and not _in_box(spaces.sampled_args(space, law, index), box):
                continue
            try:
                out.append(spaces.sample(space, law, index))
            except ValueError:
                continue  # an invalid sample of the law: draw the next one
            got += 1
    return out
