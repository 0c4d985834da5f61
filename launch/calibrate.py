"""Calibrates the latency predictor: measure networks on this device, fit, test.

    python -m launch.calibrate --config=experiments/calibrate.py --workdir=DIR

The config file's docstring is the runbook (variants, remote-device round trip).
"""

from absl import app, flags
from ml_collections import config_flags

from jnas.latency import calibration

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Calibration config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (resumable).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    calibration.calibrate_and_fit(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
