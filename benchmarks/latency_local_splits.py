"""Choosing the local predictor's options: random 96 / rest splits of measured networks.

Pools the calibration and evaluation networks of each workdir (made by
``benchmarks/latency_local.py``), fits on a random 96 and tests on the rest,
``--splits`` times, and prints the share within +-10% (mean, min, max). This is
how the conv extras and lanes of ``experiments/calibrate.py`` were chosen
(docs/results.md); no measurement runs here.

Run:  .venv/bin/python benchmarks/latency_local_splits.py --extras vector,unaligned \
          /tmp/ll_seed0 /tmp/ll_seed1      (~1 minute per workdir)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # small least-squares problems

import numpy as np  # noqa: E402

from jnas import latency  # noqa: E402
from jnas.latency import calibration  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", type=Path, nargs="+")
    parser.add_argument("--extras", default="", help="conv extras, comma-separated")
    parser.add_argument("--channel-lanes", type=int, default=0, help="0: this host's")
    parser.add_argument("--pack-lanes", type=int, default=0, help="0: this host's")
    parser.add_argument("--prior", type=float, default=0.0)
    parser.add_argument("--train", type=int, default=96)
    parser.add_argument("--splits", type=int, default=8)
    args = parser.parse_args()
    extras = calibration.fit_extras([e for e in args.extras.split(",") if e])
    device = calibration.local_device()
    for field in ("channel_lanes", "pack_lanes"):
        if getattr(args, field):
            device = dataclasses.replace(device, **{field: getattr(args, field)})
    print(f"extras +{args.extras or 'none'}, {device}, prior {args.prior}")
    for workdir in args.workdirs:
        entries = [
            e
            for name in (calibration.CALIBRATION, calibration.EVALUATION)
            for e in latency.read_calibration(workdir / name, statistic="min_ms")
        ]
        y = np.array([e.latency_ms for e in entries])
        archs = [e.arch for e in entries]
        shares = []
        for split in range(args.splits):
            order = np.random.default_rng(100 + split).permutation(len(y))
            train, test = order[: args.train], order[args.train :]
            predictor = latency.fit(
                [archs[i] for i in train],
                y[train],
                device=device,
                extras=extras,
                prior=args.prior,
            )
            pred = predictor.predict_many([archs[i] for i in test])
            shares.append(np.mean(np.abs(pred / y[test] - 1) <= 0.1) * 100)
        print(
            f"  {workdir}: {len(y)} networks, fit on {args.train}, within +-10% "
            f"mean {np.mean(shares):.1f}% (min {min(shares):.1f}, max {max(shares):.1f})"
        )


if __name__ == "__main__":
    main()
