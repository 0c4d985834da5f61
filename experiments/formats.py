"""Post-training format sweep of a finished search (no retraining).

Runbook:

    python -m launch.formats --config=experiments/formats.py --workdir=runs/quickstart

re-evaluates every candidate recorded in the workdir (its orbax checkpoint)
with all stored values rounded to each format E x M of the grid below, on the
validation and test splits of the search's own data config, and appends the
accuracies to ``<workdir>/formats.jsonl`` (resumable). The quickstart's 10-20
candidates x 78 formats take a few minutes on the 2-core dev VM.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the sweep config (``arg``: "full" for M up to 23, "reproduce")."""
    c = ml_collections.ConfigDict()
    c.exponents = tuple(range(2, 9))  # E
    c.mantissas = tuple(range(0, 11))  # M
    # Splits to evaluate: "val", "test", or "test_a" / "test_b", the two
    # stratified halves of test (choose a format on one, report the other).
    c.splits = ("val", "test")
    c.eval_batch_size = 500
    if arg == "full":
        c.mantissas = tuple(range(0, 24))
    elif arg == "reproduce":
        # experiments/reproduce.py trains without a validation split: the
        # per-model format is chosen on one half of test, reported on the
        # other (`jnas.report.fronts`). The grid spans 6..16 bits around the
        # paper's formats (half is E5 M10) at a cost this CPU can pay.
        c.exponents = (3, 4, 5)
        c.mantissas = (2, 3, 4, 5, 6, 7, 10)
        c.splits = ("test_a", "test_b")
    elif arg:
        raise ValueError(f"unknown formats variant {arg!r}; allowed: full, reproduce")
    return c
