"""Replays the iotnets release through the constraints and Pareto machinery.

    python -m launch.replay --config=experiments/iotnets_replay.py --workdir=DIR

No training: every released configuration is rebuilt, its params and FLOPs
checked against the release, and its released accuracy and Pi latency written
as a result record; then the figures and ``summary.md`` (``figures/``). The
config file's docstring is the runbook.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from jnas.search import replay

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Replay config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (resumable).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    paths = replay.run(_CONFIG.value, _WORKDIR.value)
    logging.info("replay written; figures: %s", ", ".join(map(str, paths)))


if __name__ == "__main__":
    app.run(main)
