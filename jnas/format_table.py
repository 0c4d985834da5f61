"""A table of number formats: their ranges, and the error of rounding a sample.

Used by `launch/formats_demo.py` to show what ⟨E, M⟩ buys: range from E,
precision from M, and storage from 1 + E + M bits.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jnas import precision

DEFAULT_FORMATS = ("e8m23", "e8m7", "e5m10", "e5m2", "e4m3", "e3m2", "e2m1")


@dataclasses.dataclass(frozen=True)
class Row:
    """One format's constants and its rounding error on a sample."""

    fmt: precision.FloatFormat
    rms_rel_error: float  # over the sample's finite, nonzero results
    max_rel_error: float
    overflow_frac: float  # results that became ±Inf
    underflow_frac: float  # nonzero inputs that became ±0


def sample_values(n: int = 100_000, seed: int = 0) -> np.ndarray:
    """Weight-like float32 values: a standard normal scaled by log-uniform 1e-3..1e3."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-3, 3, size=n)
    return (rng.standard_normal(n) * scale).astype(np.float32)


def make_rows(formats=DEFAULT_FORMATS, values: np.ndarray | None = None) -> list[Row]:
    """Rounds `values` (default: `sample_values()`) to each format.

    Args:
      formats: FloatFormats or their text forms.
      values: float32 sample to round with round-to-nearest-even.

    Returns:
      One Row per format.
    """
    x = sample_values() if values is None else np.asarray(values, np.float32)
    rows = []
    for fmt in map(precision.as_format, formats):
        rounded = jax.jit(lambda v, f=fmt: precision.quantize(v, f))(jnp.asarray(x))
        q = np.asarray(rounded)
        finite = np.isfinite(q) & (q != 0) & (x != 0)
        rel = np.abs(q[finite] - x[finite]) / np.abs(x[finite])
        rows.append(
            Row(
                fmt=fmt,
                rms_rel_error=float(np.sqrt(np.mean(rel**2))) if rel.size else np.nan,
                max_rel_error=float(rel.max()) if rel.size else np.nan,
                overflow_frac=float(np.mean(np.isinf(q))),
                underflow_frac=float(np.mean((q == 0) & (x != 0))),
            )
        )
    return rows


def render(rows: list[Row]) -> str:
    """Formats rows as a fixed-width text table."""
    head = (
        f"{'format':<8}{'bits':>5}{'max_finite':>12}{'min_normal':>12}"
        f"{'min_subnorm':>12}{'epsilon':>10}{'rms rel err':>13}{'max rel err':>13}"
        f"{'overflow':>10}{'underflow':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        f = r.fmt
        lines.append(
            f"{str(f):<8}{f.bits:>5}{f.max_finite:>12.4g}{f.min_normal:>12.4g}"
            f"{f.min_subnormal:>12.4g}{f.epsilon:>10.3g}{r.rms_rel_error:>13.3e}"
            f"{r.max_rel_error:>13.3e}{r.overflow_frac:>10.2%}{r.underflow_frac:>10.2%}"
        )
    return "\n".join(lines)
