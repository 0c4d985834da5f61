"""Reading a finished search: Pareto fronts, figures and summary tables.

Modules: `pareto` (fronts and budget queries), `figures` (the PNG/SVG figures
and `summary.md`).
"""

from jnas.report.figures import (
    DEFAULT_SWEEP_BYTES,
    FIGURES_DIR,
    FORMATS,
    PAPER_TARGETS,
    NoDataError,
    accuracies,
    accuracy_vs_bits,
    accuracy_vs_latency,
    accuracy_vs_memory,
    choose_split,
    latencies,
    memories,
    options_from_config,
    predicted_vs_measured,
    write_all,
    write_summary,
)

__all__ = [
    "DEFAULT_SWEEP_BYTES",
    "FIGURES_DIR",
    "FORMATS",
    "PAPER_TARGETS",
    "NoDataError",
    "accuracies",
    "accuracy_vs_bits",
    "accuracy_vs_latency",
    "accuracy_vs_memory",
    "choose_split",
    "latencies",
    "memories",
    "options_from_config",
    "predicted_vs_measured",
    "write_all",
    "write_summary",
]
