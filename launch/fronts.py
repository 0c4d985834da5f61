"""Accuracy-vs-memory fronts per kind of format, from a workdir's format sweep.

    python -m launch.formats --config=experiments/formats.py:reproduce --workdir=DIR
    python -m launch.fronts --workdir=DIR [--select=test_a --report=test_b]
        [--qat_workdir=QAT_DIR]

Writes ``fronts.md`` into the workdir (and prints it): per memory budget the
best network in float32, in half and in its own custom format, the custom
format chosen on ``--select`` and every accuracy read on ``--report``
(``jnas.report.fronts``). With ``--qat_workdir`` (a search trained with
``train.qat_format``, swept by ``launch.formats`` too) it adds the table of
QAT against post-training rounding of the same networks in that format.
"""

from absl import app, flags

import launch
from jnas import results, storage
from jnas.report import fronts

_WORKDIR = flags.DEFINE_string("workdir", None, "A swept search's workdir.")
_SELECT = flags.DEFINE_string("select", "test_a", "Split that chooses the format.")
_REPORT = flags.DEFINE_string("report", "test_b", "Split the accuracies come from.")
_TOLERANCE = flags.DEFINE_float("tolerance", 0.01, "Allowed drop from float32.")
_BUDGETS = flags.DEFINE_list("budgets_kib", ["8", "16", "24", "32", "48", "64"], "KiB.")
_QAT = flags.DEFINE_string(
    "qat_workdir", None, "A QAT search's workdir (swept), to set against --workdir's."
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    records = results.load(launch.workdir(_WORKDIR.value))
    rows = results.format_rows(_WORKDIR.value)
    if not records or not rows:
        launch.fail(
            f"--workdir={_WORKDIR.value} needs result records and format-sweep rows "
            "(python -m launch.formats first)"
        )
    try:
        budgets = [float(b) * 1024 for b in _BUDGETS.value]
        pts = fronts.points(
            records,
            rows,
            select=_SELECT.value,
            report=_REPORT.value,
            tolerance=_TOLERANCE.value,
        )
    except ValueError as e:
        launch.fail(str(e))
    text = (
        f"Best network per memory budget; custom format chosen on {_SELECT.value} "
        f"(within {_TOLERANCE.value:g} of float32), accuracies on {_REPORT.value}; "
        f"{len(pts) // 3} networks.\n\n" + fronts.front_table(pts, budgets)
    )
    if _QAT.value:
        text += "\n" + _qat_section(records, rows)
    out = storage.path(_WORKDIR.value) / "fronts.md"
    storage.atomic_write(out, text)
    print(text)
    print(f"written to {out}")


def _qat_section(records, rows) -> str:
    qat_dir = launch.workdir(_QAT.value)
    try:
        fmt = (results.read_config(qat_dir).get("train") or {}).get("qat_format")
    except FileNotFoundError as e:
        launch.fail(f"--qat_workdir: {e}")
    if not fmt:
        launch.fail(f"--qat_workdir={_QAT.value} was not trained with train.qat_format")
    qat_records, qat_rows = results.load(qat_dir), results.format_rows(qat_dir)
    try:
        table = fronts.qat_table(
            records, rows, qat_records, qat_rows, fmt, report=_REPORT.value
        )
    except ValueError as e:
        launch.fail(f"--qat_workdir={_QAT.value}: {e}")
    return (
        f"QAT ({_QAT.value}) against post-training rounding ({_WORKDIR.value}) "
        f"in {fmt}, accuracies on {_REPORT.value}:\n\n" + table
    )


if __name__ == "__main__":
    app.run(main)
