"""Reading result records for figures and tables (schema: `jnas.results`).

Conventions: memory is in bytes here (figures and tables show KiB, 1 KiB =
1024 bytes); a record's latency is its measured value where it has one, else
its prediction; the accuracy split is "test" when any record has a test
accuracy, else "val" (never mixed within one figure or table). Missing values
are NaN. A candidate whose training diverged (``train.diverged``) has no
accuracy here: it is never feasible, on a front or "best"; tables list it
apart (`diverged`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Record = Mapping[str, Any]
FORMATS = ("float32", "half", "custom")
KIB = 1024


class NoDataError(ValueError):
    """The records hold nothing that a figure or table could show."""


def get(record: Record, *keys: str) -> Any:
    """record[k1][k2]..., or None where a key or level is missing."""
    value: Any = record
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def num(value: Any) -> float:
    """A JSON number as a float; null is NaN."""
    return float("nan") if value is None else float(value)


def choose_split(records: Sequence[Record]) -> str:
    """Returns "test" if any record has a test accuracy, else "val"."""
    for record in records:
        for fmt in FORMATS:
            if get(record, "accuracy", fmt, "test") is not None:
                return "test"
    return "val"


def diverged(records: Sequence[Record]) -> np.ndarray:
    """Whether each record's training diverged (``train.diverged``)."""
    return np.array([bool(get(r, "train", "diverged")) for r in records], bool)


def accuracies(records: Sequence[Record], fmt: str, split: str) -> np.ndarray:
    """Returns the accuracy of every record in ``fmt``.

    NaN where missing, and for a diverged candidate: its chance-level accuracy
    is no result to rank, put on a front or call feasible.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if split not in ("val", "test"):
        raise ValueError(f"unknown split {split!r}; allowed: val, test")
    acc = np.array([num(get(r, "accuracy", fmt, split)) for r in records])
    return np.where(diverged(records), np.nan, acc) if len(acc) else acc


def memories(records: Sequence[Record], fmt: str) -> np.ndarray:
    """Returns the memory of every record in ``fmt``, in bytes (NaN if missing)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    return np.array([num(get(r, "memory_bytes", fmt)) for r in records])


def latencies(records: Sequence[Record]) -> np.ndarray:
    """Returns each record's latency in ms: measured, else predicted, else NaN."""
    out = []
    for r in records:
        measured = get(r, "latency_ms", "measured")
        out.append(
            num(measured if measured is not None else get(r, "latency_ms", "predicted"))
        )
    return np.array(out)


def latency_label(records: Sequence[Record]) -> str:
    """The latency axis label: measured, predicted, or both."""
    measured = any(get(r, "latency_ms", "measured") is not None for r in records)
    predicted = any(get(r, "latency_ms", "predicted") is not None for r in records)
    if measured and predicted:
        return "latency [ms] (measured, else predicted)"
    return "measured latency [ms]" if measured else "predicted latency [ms]"
