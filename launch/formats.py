"""Re-evaluates a search's trained checkpoints under a grid of number formats.

    python -m launch.formats --config=experiments/formats.py --workdir=DIR

The config file's docstring is the runbook; ``jnas.search.posttraining.sweep``
does the work.
"""

from absl import app, flags
from ml_collections import config_flags

import launch
from jnas import hostmem, results
from jnas.search import posttraining

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Format sweep config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "A search's workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    hostmem.tune_malloc()  # before XLA allocates anything (jnas.hostmem)
    try:
        rows = posttraining.sweep(_CONFIG.value, launch.workdir(_WORKDIR.value))
    except results.CheckpointError as e:  # the other candidates were swept
        launch.fail(str(e))
    print(
        f"{len(rows)} (candidate, format) evaluations in {_WORKDIR.value}/formats.jsonl"
    )


if __name__ == "__main__":
    app.run(main)
