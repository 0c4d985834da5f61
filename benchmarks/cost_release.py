"""Times sampling + costing all 1617 released configurations on one core.

Run:  .venv/bin/python benchmarks/cost_release.py [--repeats 3]
Expected: 1617/1617 params and flops matches; a few seconds per pass (target
under 10 s).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from jnas import cost, spaces

DEFAULT = Path(__file__).resolve().parents[2] / "shared/iotnets/NetConfigs.json"


def run_once(entries: list[dict]) -> tuple[float, int, int]:
    """Samples and costs every entry; returns (seconds, params ok, flops ok)."""
    params_ok = flops_ok = 0
    start = time.perf_counter()
    for e in entries:
        net = spaces.sample(e["spacename"], e["law"], e["id"])
        costs = cost.node_costs(net)
        params_ok += sum(c.params for c in costs) == e["params"]
        flops_ok += sum(c.flops for c in costs) == e["flops"]
    return time.perf_counter() - start, params_ok, flops_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=Path, default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):  # one core, as the target is stated
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    entries = json.loads(args.configs.read_text())
    times = []
    for _ in range(args.repeats):
        seconds, params_ok, flops_ok = run_once(entries)
        times.append(seconds)
    n = len(entries)
    print(f"configurations: {n}")
    print(f"params match: {params_ok}/{n}  flops match: {flops_ok}/{n}")
    print(
        f"sample + cost, one core: best {min(times):.2f} s, "
        f"all {', '.join(f'{t:.2f}' for t in times)} s"
    )


if __name__ == "__main__":
    main()
