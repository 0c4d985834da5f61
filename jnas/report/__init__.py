"""Reading a finished search: Pareto fronts, figures and summary tables.

Modules: `records` (readers of result records), `pareto` (fronts and budget
queries), `figures` (PNG/SVG figures, `write_all`), `summary` (`summary.md`).
"""

from jnas.report.figures import (
    FIGURES_DIR,
    accuracy_front,
    accuracy_vs_bits,
    accuracy_vs_latency,
    accuracy_vs_memory,
    learning_curves,
    options_from_config,
    predicted_vs_measured,
    write_all,
)
from jnas.report.records import (
    FORMATS,
    NoDataError,
    accuracies,
    choose_split,
    diverged,
    latencies,
    memories,
)
from jnas.report.summary import (
    DEFAULT_SWEEP_BYTES,
    PAPER_TARGETS,
    targets_for,
    write_summary,
)

__all__ = [
    "DEFAULT_SWEEP_BYTES",
    "FIGURES_DIR",
    "FORMATS",
    "PAPER_TARGETS",
    "targets_for",
    "NoDataError",
    "accuracies",
    "accuracy_front",
    "accuracy_vs_bits",
    "accuracy_vs_latency",
    "accuracy_vs_memory",
    "choose_split",
    "diverged",
    "latencies",
    "learning_curves",
    "memories",
    "options_from_config",
    "predicted_vs_measured",
    "write_all",
    "write_summary",
]
