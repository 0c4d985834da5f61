"""Rebuilds every figure and summary.md of a search from its workdir alone.

    python -m launch.figures --workdir=DIR

Reads ``DIR/results.jsonl`` (and shards) and, when present, the budgets in
``DIR/config.json`` (``constraints.memory_bytes``, ``constraints.latency_ms``);
writes ``DIR/figures/`` (PNG + SVG figures and summary.md), as launch.search does.
"""

from absl import app, flags

import launch
from jnas import report as plots
from jnas import results

_WORKDIR = flags.DEFINE_string("workdir", None, "A search's workdir.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    workdir = launch.workdir(_WORKDIR.value)
    records = results.load(workdir)
    if not records:
        raise app.UsageError(f"{workdir} holds no results.jsonl records")
    try:
        config = results.read_config(workdir)
    except FileNotFoundError:
        config = {}
    outdir = f"{workdir}/{plots.FIGURES_DIR}"
    options = plots.options_from_config(config)
    curves = results.load_curves(workdir)
    for path in plots.write_all(records, outdir, curves=curves, **options):
        print(path)


if __name__ == "__main__":
    app.run(main)
