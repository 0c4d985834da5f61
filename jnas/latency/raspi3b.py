"""The Raspberry Pi 3B+ recipe: how the shipped predictor is fitted to the
release's Pi table, and the shipped asset itself (``raspi3b_predictor``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jnas.latency import recipe, roofline, tables

# Options of the Pi fit, chosen by 4-fold cross-validation inside the 20%
# training splits of seeds 0-2 (benchmarks/latency_pi.py), never on test rows:
# the default extras plus "spill" (traffic beyond the 512 KiB L2) for convs, a
# weak prior between related kinds, and a 3% noise floor in the row weights.
PI_FIT_OPTIONS: Mapping[str, Any] = {
    "extras": {
        k: (*roofline.DEFAULT_EXTRAS.get(k, ()), "spill")
        for k in ("conv_dense", "conv_1x1", "conv_depthwise", "conv_grouped")
    },
    "prior": 0.1,
    "noise_floor": 0.03,
}
PI_ASSET = "raspi3b_predictor.json"


def tick_spreads(
    latencies_ms: Sequence[float],
    spreads_ms: Sequence[float],
    *,
    tick_ms: float = 10.0,
    window_ms: tuple[float, float] = (-0.5, 0.3),
    floor: float = 0.1,
) -> np.ndarray:
    """Returns spreads with timings pinned to a scheduler tick marked imprecise.

    On the Pi (Linux, HZ=100) some runs wait for the next 10 ms tick: their
    timings sit just below a multiple of 10 ms (PNASNet s3: 38% of rows in
    [9.5, 10.3) mod 10 against 8% by chance; one architecture measured at 26.7
    and 39.9 ms, each with a tiny std). The std does not show this, so such a
    row's spread is raised to at least ``floor`` times its latency, which
    lowers its weight in the fit. Uses the measurements only, never a test row.

    Args:
      latencies_ms, spreads_ms: the table's times and spreads (ms).
      tick_ms: the scheduler tick.
      window_ms: (below, above) a multiple of the tick that counts as pinned.
      floor: relative spread given to pinned rows.

    Returns:
      The adjusted spreads (ms), as an array.
    """
    y, s = np.asarray(latencies_ms, float), np.asarray(spreads_ms, float)
    offset = np.mod(y, tick_ms)
    pinned = (offset >= tick_ms + window_ms[0]) | (offset < window_ms[1])
    return np.where(pinned, np.maximum(s, floor * y), s)


def mark_ticks(entries: Sequence[tables.Entry]) -> list[tables.Entry]:
    """``entries`` with their spreads raised by ``tick_spreads``."""
    spread = tick_spreads(
        [e.latency_ms for e in entries], [e.spread_ms for e in entries]
    )
    return [
        dataclasses.replace(e, spread_ms=float(s))
        for e, s in zip(entries, spread, strict=True)
    ]


def fit_pi_table(entries: Sequence[tables.Entry]) -> roofline.Predictor:
    """Fits the Raspberry Pi 3B+ predictor to release-table entries.

    The recipe of the shipped predictor (``raspi3b_predictor``) and of the
    held-out experiment in ``benchmarks/latency_pi.py``: ``PI_FIT_OPTIONS``,
    rows weighted by ``tick_spreads``.
    """
    options = recipe.Options(
        extras=PI_FIT_OPTIONS["extras"],
        prior=PI_FIT_OPTIONS["prior"],
        noise_floor=PI_FIT_OPTIONS["noise_floor"],
    )
    # One use of the generic recipe, with the options fixed (no search, no
    # cross-validation: this fit is the shipped asset's and must be fast).
    predictor = recipe.fit_options(
        mark_ticks(entries), roofline.RASPBERRY_PI_3B_PLUS, options
    )
    info = dict(predictor.info, recipe="jnas.latency.fit_pi_table")
    return dataclasses.replace(predictor, info=info)


def raspi3b_predictor() -> roofline.Predictor:
    """Returns the Raspberry Pi 3B+ predictor shipped with the package.

    Fitted by ``fit_pi_table`` on all 1617 rows of the iotnets release's Pi
    table (PyTorch, batch 1, float32); its held-out accuracy (fit on 20%) is in
    docs/latency.md. Regenerate with
    ``python benchmarks/latency_pi.py --save jnas/assets/raspi3b_predictor.json
    --no-eval``.
    """
    from importlib import resources

    text = resources.files("jnas").joinpath("assets").joinpath(PI_ASSET).read_text()
    return roofline.from_dict(json.loads(text))
