"""Runs (or resumes) a constrained search, then writes its figures.

    python -m launch.search --config=experiments/quickstart.py --workdir=DIR
    python -m launch.search --config=experiments/paper.py:half --workdir=DIR \
        --config.train.steps=20000

The config file's docstring is the runbook. The replay of the release
(``experiments/iotnets_replay.py``) has its own launcher, ``launch.replay``.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

import launch
from jnas import distributed, hostmem, results, search
from jnas import report as plots
from jnas.search import defaults

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (resumable).")
_ADOPT = flags.DEFINE_bool(
    "adopt_records",
    False,
    "Continue in a workdir that holds results but no config.json, declaring "
    "that this config made them.",
)
_SHOW = flags.DEFINE_bool(
    "show_config",
    False,
    "Print every config key with its value and documentation, then exit "
    "(no --workdir needed).",
)
flags.mark_flag_as_required("config")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config, workdir = _CONFIG.value, _WORKDIR.value
    if _SHOW.value:  # jnas.search.defaults documents every key
        print(defaults.describe(config))
        return
    if not workdir:
        launch.fail("--workdir is required: the search's output folder")
    if config.get("mode") == "replay":
        raise app.UsageError(
            "this is a replay config; run it with "
            f"python -m launch.replay --config=... --workdir={workdir}"
        )
    launch.workdir(workdir)
    hostmem.tune_malloc()  # before XLA allocates anything (jnas.hostmem)
    try:  # every key, before anything is written or started
        search.config.validate(config)
        search.config.check_data(config)
    except (ValueError, FileNotFoundError) as e:  # incl. DatasetNotFoundError
        launch.fail(str(e))
    if config.get("distributed") is not None:  # before anything touches a device
        workers = distributed.local_workers(config.distributed)
        if workers > 1:  # one process per core, each running this command
            code = distributed.run_local_workers("launch.search", sys.argv[1:], workers)
            if code:
                raise SystemExit(code)
            return
        distributed.initialize(config.distributed)
    try:
        search.run(config, workdir, adopt_records=_ADOPT.value)
    except (search.NoFeasibleCandidatesError, results.ConfigMismatchError) as e:
        launch.fail(str(e))
    if distributed.process_index() == 0:  # it merged every process's records
        records = results.load(workdir)
        paths = plots.write_all(
            records,
            f"{workdir}/{plots.FIGURES_DIR}",
            curves=results.load_curves(workdir),
            **plots.options_from_config(config.to_dict()),
        )
        logging.info(
            "%d candidates; figures: %s", len(records), ", ".join(map(str, paths))
        )
    # Process 0, the coordination service, goes last.
    distributed.finish(lease_s=distributed.lease_seconds(config.get("distributed")))


if __name__ == "__main__":
    app.run(main)
