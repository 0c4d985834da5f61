"""The constrained search: config checks, sampling, constraints, training,
format search and records, resumable; the replay of the release.

Modules: `defaults` (every config key: its default and documentation),
`config` (validation; config groups to library values), `sampling`
(seeded rounds, narrowing), `constraints` (costs, filter, feasibility),
`formats` (the per-model format search), `posttraining` (the post-training
format sweep of a finished workdir), `loop` (`run`, the paper's workflow),
`replay` (the released configurations without training).
Design: docs/search.md.
"""

from jnas.results import load_checkpoint, save_checkpoint
from jnas.search.config import (
    LATENCY_SOURCES,
    MEMORY_FORMATS,
    MODES,
    STRATEGY_CHOICES,
    load_data,
    make_recipe,
    validate,
)
from jnas.search.constraints import (
    Constraints,
    NoFeasibleCandidatesError,
    costs,
    feasible,
    load_predictor,
    memory_format,
    satisfies,
)
from jnas.search.formats import (
    E_GRID,
    M_GRID,
    evaluate_formats,
    format_grid_by_bits,
    format_search,
    quantize_variables,
)
from jnas.search.loop import make_record, run
from jnas.search.sampling import narrowed_box, sample_round

__all__ = [
    "E_GRID",
    "LATENCY_SOURCES",
    "M_GRID",
    "MEMORY_FORMATS",
    "MODES",
    "STRATEGY_CHOICES",
    "Constraints",
    "NoFeasibleCandidatesError",
    "costs",
    "evaluate_formats",
    "feasible",
    "format_grid_by_bits",
    "format_search",
    "load_checkpoint",
    "load_data",
    "load_predictor",
    "make_record",
    "make_recipe",
    "memory_format",
    "narrowed_box",
    "quantize_variables",
    "run",
    "sample_round",
    "satisfies",
    "save_checkpoint",
    "validate",
]
