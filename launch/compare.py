"""Compares jnas's training of released networks with the release's accuracies.

    python -m launch.compare --workdir=runs/reproduce_phase1 \\
        [--workdir=runs/reproduce_seed1 ...] --netconfigs=PATH/NetConfigs.json

The first workdir is the reference run; later ones add seeds of the networks
they share. Writes ``release_comparison.md`` into the first workdir (and
prints it): per network the test accuracy of each run, mean and std, the
released accuracy and the training seconds; per law the Spearman correlation
with the released accuracies, next to ranking by parameter count
(``jnas.report.release``).
"""

from absl import app, flags

import launch
from jnas import latency, results, storage
from jnas.report import release

_WORKDIRS = flags.DEFINE_multi_string("workdir", None, "Workdirs (first: reference).")
_NETCONFIGS = flags.DEFINE_string(
    "netconfigs", None, "The release's NetConfigs.json (github.com/IBM/iotnets)."
)
_LABELS = flags.DEFINE_list("labels", None, "A name per workdir (default: seed N).")
flags.mark_flags_as_required(["workdir", "netconfigs"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    table = latency.read_json_list(
        _NETCONFIGS.value,
        "--netconfigs",
        "get NetConfigs.json from https://github.com/IBM/iotnets (MIT)",
    )
    runs = []
    for workdir in _WORKDIRS.value:
        records = results.load(launch.workdir(workdir))
        if not records:
            launch.fail(f"--workdir={workdir} holds no result records")
        runs.append(records)
    labels = _LABELS.value or [
        f"seed {results.read_config(w).get('seed', '?')}" for w in _WORKDIRS.value
    ]
    if len(labels) != len(runs):
        launch.fail(f"--labels has {len(labels)} names for {len(runs)} workdirs")
    try:
        rows = release.compare(runs, table)
    except ValueError as e:
        launch.fail(str(e))
    text = release.markdown(rows, labels)
    out = storage.path(_WORKDIRS.value[0]) / "release_comparison.md"
    storage.atomic_write(out, text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    app.run(main)
