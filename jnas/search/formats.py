"""Number formats after training: the per-model format search of a search.

`format_search` finds, per candidate, the format with the fewest bits whose
validation accuracy is within a tolerance of float32 (every stored value,
parameters and BatchNorm statistics, rounded by `quantize_variables`);
`evaluate_formats` runs it on a trained bucket. The post-training sweep of a
finished workdir's checkpoints is `jnas.search.posttraining`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jnas import cost, precision
from jnas.data import pipeline
from jnas.population import engine

E_GRID = range(2, 9)
M_GRID = range(0, 24)
# The format search splits the validation set into at least this many batches,
# so that a format that cannot pass stops early (about 1/6 of the data for a
# collapsed format on the quickstart).
SCREEN_BATCHES = 6


def quantize_variables(variables: Any, fmt: precision.FloatFormat | None) -> Any:
    """Every stored value (params and BN statistics) rounded to `fmt`
    (`precision.quantize_tree`: one compiled rounding per vector size serves
    every format of the grid and every network)."""
    return precision.quantize_tree(variables, fmt)


def format_grid_by_bits() -> list[list[precision.FloatFormat]]:
    """The grid E in 2..8, M in 0..23, grouped by total bits (increasing)."""
    by_bits: dict[int, list[precision.FloatFormat]] = {}
    for e in E_GRID:
        for m in M_GRID:
            fmt = precision.FloatFormat(e, m)
            by_bits.setdefault(fmt.bits, []).append(fmt)
    return [by_bits[b] for b in sorted(by_bits)]


def format_search(
    evaluate: Callable[[precision.FloatFormat, np.ndarray], engine.Screening],
    reference: np.ndarray,
    tolerance: float,
) -> tuple[list[precision.FloatFormat], list[list[dict[str, Any]]]]:
    """Per candidate, the format with the fewest bits within `tolerance`.

    Walks the grid in increasing total bits and stops once every candidate has
    a format, so the answer is exactly the grid's minimum without assuming that
    accuracy grows with bits. Among passing formats of the same width the one
    with the best validation accuracy wins (then more exponent bits).

    Args:
      evaluate: (format, need) -> `engine.Screening` of every candidate with
        its weights and statistics rounded to the format. `need` is the
        validation accuracy each candidate must reach (+inf for candidates
        already decided); a candidate may be screened out early with an upper
        bound below its need (`engine.screen`), which decides as the full
        evaluation would.
      reference: float32 validation accuracy per candidate.
      tolerance: allowed accuracy drop (absolute, e.g. 0.01 = one point).

    Returns:
      (chosen format per candidate, per candidate the list of evaluations
      made on the way: {"format", "bits", "val"}, where "val" is None for a
      format screened out early, with "val_at_most" (its bound) and
      "val_examples" (validation examples it took)).
    """
    n = len(reference)
    reference = np.asarray(reference, np.float64)
    chosen: list[precision.FloatFormat | None] = [None] * n
    grid: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for formats in format_grid_by_bits():
        best: list[tuple[float, int] | None] = [None] * n
        decided = np.array([c is not None for c in chosen])
        need = np.where(decided, np.inf, reference - tolerance - 1e-12)
        for fmt in formats:
            result = evaluate(fmt, need)
            for i in range(n):
                if decided[i]:
                    continue
                acc = float(result.accuracy[i])
                entry = {"format": str(fmt), "bits": fmt.bits, "val": acc}
                if not result.exact[i]:  # screened out: a bound below `need`
                    entry["val"] = None
                    entry["val_at_most"] = acc
                    entry["val_examples"] = int(result.examples[i])
                grid[i].append(entry)
                if result.exact[i] and acc >= need[i]:
                    score = (acc, fmt.exponent_bits)
                    if best[i] is None or score > best[i][0]:
                        best[i] = (score, fmt)
        for i in range(n):
            if chosen[i] is None and best[i] is not None:
                chosen[i] = best[i][1]
        if all(c is not None for c in chosen):
            break
    return chosen, grid


def evaluate_formats(
    trainer: engine.BucketTrainer,
    datasets: dict[str, pipeline.DeviceDataset],
    *,
    batch_size: int,
    tolerance: float,
) -> list[dict[str, Any]]:
    """A trained bucket's accuracies in float32, half and its per-model formats.

    Runs `format_search` on the validation split, then the test split in each
    chosen format. Every evaluation runs the bucket's one compiled evaluation
    program, which rounds the trained variables to the format it is given at
    run time (`engine.evaluate(weight_format=...)`).

    Without a "val" split (``data.num_val = 0``: trained on all training
    data, the release's protocol) there is nothing to choose a format on:
    float32 and half are evaluated on the test split, "val" is None, and
    "custom" is None throughout (the post-training sweep,
    `posttraining.sweep`, then gives every format's test accuracy).

    Returns:
      Per member: "accuracy" ({"float32"|"half"|"custom": {"val", "test"}}),
      "custom_format" (text), "format_grid" (the search's evaluations) and
      "memory_custom" (bytes of the params in the chosen format).
    """
    if "val" not in datasets:
        return _test_only(trainer, datasets["test"], batch_size)

    # One batch size for both splits (one compiled program), as even as
    # possible, and at least SCREEN_BATCHES batches of validation data: the
    # format search evaluates dozens of formats, and one that cannot pass
    # stops after the batches that prove it (`engine.screen`).
    n_val = datasets["val"].images.shape[0]
    batches = max(-(-n_val // batch_size), min(SCREEN_BATCHES, n_val))
    batch_size = -(-n_val // batches)

    def accuracy(split: str, fmt: precision.FloatFormat | None) -> np.ndarray:
        return engine.evaluate(
            trainer, datasets[split], batch_size=batch_size, weight_format=fmt
        )

    def screen(fmt: precision.FloatFormat, need: np.ndarray) -> engine.Screening:
        return engine.screen(
            trainer, datasets["val"], need, batch_size=batch_size, weight_format=fmt
        )

    val32 = accuracy("val", None)
    chosen, grids = format_search(screen, val32, tolerance)
    per_format = {
        "float32": {"val": val32, "test": accuracy("test", None)},
        "half": {
            "val": accuracy("val", precision.HALF),
            "test": accuracy("test", precision.HALF),
        },
    }
    custom_test = {fmt: accuracy("test", fmt) for fmt in set(chosen)}
    out = []
    for i, arch in enumerate(trainer.bucket.members):
        fmt = chosen[i]
        acc = {k: {s: float(v[s][i]) for s in v} for k, v in per_format.items()}
        val_custom = next(g["val"] for g in grids[i] if g["format"] == str(fmt))
        acc["custom"] = {"val": val_custom, "test": float(custom_test[fmt][i])}
        out.append(
            {
                "accuracy": acc,
                "custom_format": str(fmt),
                "format_grid": grids[i],
                "memory_custom": cost.memory_bytes(arch, fmt),
            }
        )
    return out


def _test_only(trainer, test, batch_size: int) -> list[dict[str, Any]]:
    """`evaluate_formats` without a validation split: float32 and half on test."""
    batches = -(-test.images.shape[0] // batch_size)
    batch_size = -(-test.images.shape[0] // batches)  # as even as possible
    acc = {
        name: engine.evaluate(trainer, test, batch_size=batch_size, weight_format=fmt)
        for name, fmt in (("float32", None), ("half", precision.HALF))
    }
    return [
        {
            "accuracy": {
                **{k: {"val": None, "test": float(v[i])} for k, v in acc.items()},
                "custom": {"val": None, "test": None},
            },
            "custom_format": None,
            "format_grid": [],
            "memory_custom": None,
        }
        for i in range(trainer.bucket.size)
    ]
