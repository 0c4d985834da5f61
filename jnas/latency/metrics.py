"""Held-out accuracy of a latency predictor, in the style of nn-Meter."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def evaluate(predicted_ms: Sequence[float], measured_ms: Sequence[float]) -> dict:
    """Accuracy metrics in the style of nn-Meter.

    Args:
      predicted_ms: predictions.
      measured_ms: measurements (> 0), same length.

    Returns:
      {"n", "rmspe" (root mean squared percentage error, %), "within_5",
      "within_10" (% of networks with |pred / meas - 1| <= 5%, 10%),
      "median_ape", "p90_ape" (median and 90th percentile of the absolute
      percentage error, %), "spearman" (rank correlation)}.
    """
    p = np.asarray(predicted_ms, dtype=float)
    m = np.asarray(measured_ms, dtype=float)
    if p.shape != m.shape or p.ndim != 1 or p.size == 0:
        raise ValueError(
            f"need two equal-length non-empty vectors; got {p.shape}, {m.shape}"
        )
    if not (np.all(np.isfinite(m)) and np.all(m > 0) and np.all(np.isfinite(p))):
        raise ValueError("measurements must be finite and > 0, predictions finite")
    err = p / m - 1
    tol = 1e-12  # 0.9/1.0 - 1 is not exactly -0.1 in binary
    return {
        "n": int(p.size),
        "rmspe": float(np.sqrt(np.mean(err**2)) * 100),
        "within_5": float(np.mean(np.abs(err) <= 0.05 + tol) * 100),
        "within_10": float(np.mean(np.abs(err) <= 0.10 + tol) * 100),
        "median_ape": float(np.median(np.abs(err)) * 100),
        "p90_ape": float(np.percentile(np.abs(err), 90) * 100),
        "spearman": _spearman(p, m),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2:
        return float("nan")
    from scipy import stats

    return float(stats.spearmanr(a, b)[0])


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """Returns metrics as one line, e.g. for benchmark output."""
    rho = metrics.get("spearman")
    rho = "n/a" if rho is None or not math.isfinite(rho) else f"{rho:.4f}"
    return (
        f"n={metrics['n']:4d}  within10={metrics['within_10']:5.1f}%  "
        f"within5={metrics['within_5']:5.1f}%  median={metrics['median_ape']:5.2f}%"
        + (f"  p90={metrics['p90_ape']:5.1f}%" if "p90_ape" in metrics else "")
        + f"  rmspe={metrics['rmspe']:6.2f}%  spearman={rho}"
    )
