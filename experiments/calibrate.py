"""Latency calibration on this machine: measure, fit the roofline predictor, test.

Runbook (from the repository root):

    python -m launch.calibrate --config=experiments/calibrate.py --workdir=/tmp/calib

measures 96 calibration and 204 held-out networks (12 space:law pairs, small
laws: up to ~70 MFLOPs, so compiling dominates) on one pinned core, fits on
the 96 and prints the held-out accuracy. Measured on the 2-core AMD EPYC dev VM
(load average 2-3 from other users): ~6 minutes; held-out within +-10% 84-85%,
median error 3.4-3.6%, Spearman 0.996 (the issue's target of 95% is not
reached: BUILD_NOTES.md, "Latency predictor", says what limits it).
A killed run resumes where it stopped (measured arch hashes are skipped).

Variants, as ``experiments/calibrate.py:VARIANT[,VARIANT]``:
- ``small``: 8 + 6 networks, one shared parameter set, 10 repeats (the
  pipeline check the tests run).
- ``measure``: measure only, for a remote device (e.g. a 64-bit Raspberry Pi 4/5
  with ``pip install jax flax ml_collections scipy`` and this checkout):
      python -m launch.calibrate --config=experiments/calibrate.py:measure \
          --workdir=calib_pi
  then copy ``calib_pi/*.jsonl`` back here and fit without measuring:
      python -m launch.calibrate --config=experiments/calibrate.py:fit \
          --config.device=pi4 --config.peak_flops=... --workdir=calib_pi
  (``device`` "local" derives the ceilings from this host's clock; any other
  name uses ``peak_flops`` [MAC/s] and ``peak_bandwidth`` [B/s]).
- ``median``: use the median of the repeats instead of the minimum.
- ``ynn``: keep XLA's default convolution backend (YNNPACK); see ``xla_flags``.

Why the minimum by default: the dev machine is shared, and other jobs only
ever add time; with a load average of 3-5 on 2 cores the median of 30 calls
moved by up to +-10% between two runs while the minimum moved by ~1%.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the calibration config; ``arg`` selects comma-separated variants."""
    cfg = ml_collections.ConfigDict()
    cfg.mode = "all"  # "all" | "measure" | "fit"
    cfg.spaces = [
        "probenet_s:s0",
        "probenet_s:s1",
        "probenet_s:s2",
        "probenet_s:s3",
        "resnet:s4",
        "resnet:s5",
        "resnext:s2",
        "resnext:s3",
        "mobilenetv2:s5",
        "mobilenetv2:s6",
        "pnasnet:s3",
        "densenet:s3",
    ]
    cfg.n_calibration = 96
    cfg.n_evaluation = 204
    cfg.seed = 0
    cfg.batch = 1
    cfg.warmup = 3  # per round
    cfg.repeats = 30
    cfg.rounds = 3  # interleaved passes over each chunk
    cfg.chunk = 24  # networks compiled and timed together
    cfg.pin_threads = True  # one XLA thread, pinned to one core
    cfg.cpu = -1  # core to pin to; -1: the lowest allowed
    # Convolutions through Eigen, not YNNPACK (XLA's default in jax 0.10): YNNPACK
    # picks kernels by shape, and a 3->20 channel conv ran 4.5x slower than a
    # 3->40 one; Eigen's cost is a smooth function of the shape.
    cfg.xla_flags = "--xla_cpu_experimental_ynn_fusion_type="
    cfg.statistic = "min_ms"  # or "median_ms", "mean_ms"
    cfg.fmt = "e8m23"  # float32 bytes
    cfg.tie = "none"  # kinds sharing parameters: "none", "compact", "single"
    cfg.device = "local"
    cfg.peak_flops = 0.0  # MAC/s, when device is not "local"/"raspberry_pi_3b_plus"
    cfg.peak_bandwidth = 0.0  # bytes/s, likewise
    for variant in filter(None, (arg or "").split(",")):
        if variant == "small":
            cfg.spaces = ["probenet_s:s2", "resnext:s3", "mobilenetv2:s6"]
            cfg.n_calibration, cfg.n_evaluation = 8, 6
            cfg.tie = "single"  # 6 parameters: a handful of networks suffice
            cfg.repeats, cfg.rounds, cfg.warmup = 10, 2, 2
        elif variant in ("measure", "fit"):
            cfg.mode = variant
        elif variant == "median":
            cfg.statistic = "median_ms"
        elif variant == "ynn":
            cfg.xla_flags = ""
        else:
            raise ValueError(
                f"unknown variant {variant!r}; known: small, measure, fit, median, ynn"
            )
    return cfg
