"""Writes the interactive report of a workdir: ``DIR/report.html``.

    python -m launch.report --workdir=runs/quickstart

One self-contained HTML file (plotly embedded, no network when opened),
rebuilt from the workdir alone, for any workdir (a search, the paper's runs,
the replay of the release): ``jnas.report.html``.
"""

from absl import app, flags

import launch
from jnas.report import html, records

_WORKDIR = flags.DEFINE_string("workdir", None, "A search's (or replay's) workdir.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        path = html.write_report(launch.workdir(_WORKDIR.value))
    except records.NoDataError as e:
        launch.fail(str(e))
    print(f"report written to {path}")


if __name__ == "__main__":
    app.run(main)
