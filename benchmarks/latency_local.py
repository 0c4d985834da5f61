"""The local-device experiment: calibrate the roofline predictor on <= 100
networks measured on this machine and evaluate it on >= 200 others.

Run:  .venv/bin/python benchmarks/latency_local.py [--workdir DIR] [--variant small]
      [--fresh] [--seed N]
Expected (numbers in docs/results.md): ~5 minutes on the 2-core dev VM (mostly
XLA compilation); held-out within +-10% 90-97% (seeds 1-3, AMD VM, one Eigen
thread, 2026-11-25), 88.7-89.7% (seeds 4-6, Intel VM, XLA's pool on one core,
2026-12-01), median error ~3%. For the whole evaluation (all tables, per
family, leave-one-family-out, noise bounds) use benchmarks/latency_eval.py. The workdir is resumable: a second run re-fits from the measured files in
seconds (``--fresh`` re-measures). ``--variant ynn`` keeps XLA's YNNPACK
convolutions (~47%), ``--variant im2col`` measures jnas's im2col lowering (~68%).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for experiments/

from experiments import calibrate as calibrate_config  # noqa: E402
from jnas import latency  # noqa: E402
from jnas.latency import calibration  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/jnas_latency_local"))
    parser.add_argument(
        "--variant", default="", help="experiments/calibrate.py variant"
    )
    parser.add_argument("--fresh", action="store_true", help="delete the workdir first")
    parser.add_argument(
        "--seed", type=int, default=None, help="sample seed (default: the config's)"
    )
    args = parser.parse_args()
    if args.fresh and args.workdir.exists():
        shutil.rmtree(args.workdir)
    config = calibrate_config.get_config(args.variant)
    if args.seed is not None:
        config.seed = args.seed
    load_before = os.getloadavg()
    start = time.perf_counter()
    metrics = calibration.calibrate_and_fit(config, args.workdir)
    seconds = time.perf_counter() - start
    print(
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
        f"({os.cpu_count()} cores); total {seconds:.0f} s"
    )
    evaluation = metrics.get("evaluation")
    if evaluation:
        print(f"RESULT held-out: {latency.format_metrics(evaluation)}")


if __name__ == "__main__":
    main()
