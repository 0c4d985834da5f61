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


# ------------------------------------------------- an explicit candidates list


def split_item(item: Any) -> tuple[str, str, str]:
    """(space, law, "index" | "A-B" | "*") of one ``config.search.candidates`` item.

    Raises:
      ValueError: naming the bad item and what is allowed.
    """
    parts = item.split(":") if isinstance(item, str) else []
    if len(parts) != 3:
        raise ValueError(
            f"config.search.candidates item {item!r} must be 'space:law:index', "
            "'space:law:A-B' or 'space:law:*', e.g. 'mobilenetv2:s5:37'"
        )
    space, law, which = parts
    try:
        space = spaces.canonical(space)
    except ValueError as e:
        raise ValueError(f"config.search.candidates item {item!r}: {e}") from None
    if law not in spaces.laws(space):
        raise ValueError(
            f"config.search.candidates item {item!r}: unknown law {law!r} of "
            f"{space}; allowed: {', '.join(spaces.laws(space))}"
        )
    lo, _, hi = which.partition("-")
    if which != "*" and not (lo.isdigit() and (hi.isdigit() or not hi)):
        raise ValueError(
            f"config.search.candidates item {item!r}: the index must be an "
            "integer >= 0, a range A-B or *"
        )
    if which != "*" and int(hi or lo) < int(lo):
        raise ValueError(
            f"config.search.candidates item {item!r}: range {which} is empty"
        )
    return space, law, which


def parse_candidates(
    items: Sequence[str], netconfigs: Sequence[dict[str, Any]] | None = None
) -> list[tuple[str, str, int]]:
    """(space, law, index) of each item of ``config.search.candidates``, in order.

    Items: "space:law:index" (e.g. "mobilenetv2:s5:37"), "space:law:A-B" (the
    indices A..B, both included) or "space:law:*" (every index of that law in
    the release table ``netconfigs``, NetConfigs.json's rows). Space names may
    be in the release spelling. Repeated items are kept once.

    Raises:
      ValueError: naming the bad item and what is allowed.
    """
    out: dict[tuple[str, str, int], None] = {}
    for item in items:
        space, law, which = split_item(item)
        if which == "*":
            if netconfigs is None:
                raise ValueError(
                    f"config.search.candidates item {item!r} takes every released "
                    "index of the law: set config.search.netconfigs to the "
                    "release's NetConfigs.json"
                )
            release = spaces.RELEASE_PREFIX + space
            indices = sorted(
                int(r["id"])
                for r in netconfigs
                if r.get("spacename") in (space, release) and r.get("law") == law
            )
            if not indices:
                raise ValueError(
                    f"config.search.candidates item {item!r}: the release table "
                    f"has no row of {space} {law}"
                )
        else:
            lo, _, hi = which.partition("-")
            indices = range(int(lo), int(hi or lo) + 1)
        out.update({(space, law, int(i)): None for i in indices})
    return list(out)


def build_candidates(
    triples: Sequence[tuple[str, str, int]],
) -> list[arch_lib.Arch]:
    """The networks of (space, law, index) triples (`spaces.sample`).

    Raises:
      ValueError: an index whose network cannot be built (named), e.g. a
        DenseNet sample whose transition floors to zero channels.
    """
    out = []
    for space, law, index in triples:
        try:
            out.append(spaces.sample(space, law, index))
        except ValueError as e:
            raise ValueError(
                f"config.search.candidates: {space}:{law}:{index} cannot be built: {e}"
            ) from None
    return out
