"""How much of the Raspberry Pi table can any architecture-only predictor explain?

Three measurements of the table's own noise, none of which uses jnas's
predictor (so they bound every model, not just ours):

1. Repeated architectures: the same network measured twice (same law), both
   rows with spread < 5%: how often they agree within 10%.
2. PNASNet, a structural fit. A PNASNet network is fixed by its cells per stage
   (M0, M1, M2) and widths (P0, P1, P2), so its time is exactly linear in
   [1, M_j, M_j*P_j, P_j, P0*P1, P1*P2] whatever the per-operator costs are
   (every operator's cost is linear in the width at a fixed resolution, up to
   cache effects). Fitted per law, in-sample, to relative error: the share of
   low-spread rows within 10% is an upper bound for ANY model on those rows
   (a model that cannot fit the rows it was fitted on cannot predict them).
3. Two speed modes in PNASNet s1/s2: the structural model fitted only to the
   rows with std < 1 ms, then measured/predicted for the rows by their std.

Run:  .venv/bin/python benchmarks/latency_pi_noise.py   (~20 s)
Numbers in docs/results.md; what they mean in docs/latency.md.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import re
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from jnas import latency

DEFAULT = Path(__file__).resolve().parents[2] / "shared/iotnets/results_RaspPi.json"
CLEAN = 0.05


def pnasnet_structure(arch) -> tuple[float, ...]:
    """(M0, M1, M2, P0, P1, P2) read from a PNASNet architecture's nodes."""
    shapes = arch.shapes
    cells = collections.Counter()
    width = {}
    for node in arch.nodes:
        m = re.fullmatch(r"stage(\d)\.cell(\d+)\.add", node.name)
        if m:
            cells[int(m.group(1))] += 1
            width[int(m.group(1))] = shapes[node.name][-1]
    down = {
        int(n.name[4]): shapes[n.name][-1]
        for n in arch.nodes
        if re.fullmatch(r"down\d\.add", n.name)
    }
    p0 = width.get(0, shapes["stem.conv"][-1])
    p1, p2 = down[1], down[2]
    return (cells[0], cells[1], cells[2], p0, p1, p2)


def design(s: np.ndarray) -> np.ndarray:
    m0, m1, m2, p0, p1, p2 = s.T
    one = np.ones(len(s))
    return np.c_[
        one, m0, m0 * p0, m1, m1 * p1, m2, m2 * p2, p0, p1, p2, p0 * p1, p1 * p2
    ]


def relative_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error; returns the coefficients."""
    return nnls(x / y[:, None], np.ones(len(y)))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=DEFAULT)
    args = parser.parse_args()
    entries = latency.read_release_table(args.table)
    y = np.array([e.latency_ms for e in entries])
    s = np.array([e.spread_ms for e in entries])
    clean = s / y < CLEAN
    tick = np.mod(y, 10.0)
    pinned = (tick >= 9.5) | (tick < 0.3)
    print(f"table: {len(y)} rows, {clean.sum()} with spread < 5%")

    # 1. repeated architectures
    groups = collections.defaultdict(list)
    for i, e in enumerate(entries):
        groups[e.arch.hash].append(i)
    ratio = np.array(
        [
            y[a] / y[b]
            for idx in groups.values()
            for a, b in itertools.combinations(idx, 2)
            if clean[a] and clean[b]
        ]
    )
    print(
        f"1. repeated architectures, both rows spread < 5%: {len(ratio)} pairs, "
        f"within 10% {np.mean(np.abs(ratio - 1) <= 0.1) * 100:.0f}%, within 5% "
        f"{np.mean(np.abs(ratio - 1) <= 0.05) * 100:.0f}%"
    )

    # 2. PNASNet structural fits
    rows = np.array([e.source["space"] == "pnasnet" for e in entries])
    law = np.array([e.source["law"] for e in entries])
    struct = np.zeros((len(y), 6))
    struct[rows] = [pnasnet_structure(entries[i].arch) for i in np.flatnonzero(rows)]
    x = design(struct)
    print("2. PNASNet, structural model (12 coefficients) fitted in-sample to the")
    print("   low-spread rows away from a 10 ms tick; share within 10% / 5%:")
    for name, laws in (
        ("s1", ["s1"]),
        ("s2", ["s2"]),
        ("s3", ["s3"]),
        ("s1-s3", ["s1", "s2", "s3"]),
    ):
        sel = rows & np.isin(law, laws)
        fit = sel & clean & ~pinned
        p = x @ relative_fit(x[fit], y[fit])
        err = np.abs(p / y - 1)
        for one in laws:
            m = sel & clean & (law == one)
            print(
                f"   fit on {name:6s} {one}: low-spread rows {m.sum():3d}: "
                f"{np.mean(err[m] <= 0.1) * 100:3.0f}% / {np.mean(err[m] <= 0.05) * 100:3.0f}%"
                f" (away from a tick: {np.mean(err[m & ~pinned] <= 0.1) * 100:3.0f}%)"
            )

    # 3. speed modes
    print("3. PNASNet structural model fitted to rows with std < 1 ms only;")
    print("   measured / predicted, percentiles 10/50/90, by the row's std:")
    for one in ("s1", "s2"):
        sel = rows & (law == one)
        anchor = sel & (s < 1.0) & ~pinned
        q = y / (x @ relative_fit(x[anchor], y[anchor]))
        print(
            f"   {one} anchors {anchor.sum():2d}: {np.percentile(q[anchor], [10, 50, 90]).round(3)}"
        )
        for lo, hi in ((1, 2), (2, 5), (5, 10), (10, np.inf)):
            m = sel & (s >= lo) & (s < hi)
            if m.any():
                print(
                    f"      std [{lo}, {hi}) ms, {m.sum():2d} rows "
                    f"({np.mean(clean[m]) * 100:3.0f}% of them spread < 5%): "
                    f"{np.percentile(q[m], [10, 50, 90]).round(3)}"
                )


if __name__ == "__main__":
    main()
