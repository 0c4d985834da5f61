"""Latency: measuring networks on a device, reading measurement tables, and
the roofline predictor (features, fit, save/load, held-out evaluation).

Modules: `measurement` (timing networks on this device), `tables` (the
release's tables and calibration files), `roofline` (the predictor and its
features), `fitting` (fitting it to measurements), `raspi3b` (the Raspberry
Pi 3B+ recipe and shipped predictor), `metrics` (held-out accuracy),
`recipe` (``fit_table``: one recipe for any device's measurements, options
chosen by cross-validation), `kernels` (kernel-level calibration: convs timed
alone, a per-shape conv model, `KernelPredictor`), `calibration` (the
measure-then-fit workflow of `launch/calibrate.py`).
Design and figures: docs/latency.md.
"""

from jnas.latency.fitting import check_physical, fit
from jnas.latency.kernels import KernelPredictor, load
from jnas.latency.measurement import (
    PIN_FLAGS,
    Measurement,
    compile_forward,
    host_description,
    measure,
    measure_many,
    pin_threads,
    untrained_variables,
)
from jnas.latency.metrics import evaluate, format_metrics
from jnas.latency.raspi3b import (
    PI_ASSET,
    PI_FIT_OPTIONS,
    fit_pi_table,
    raspi3b_predictor,
    tick_spreads,
)
from jnas.latency.recipe import Options, TableFit, derive_device, fit_table
from jnas.latency.roofline import Device, Predictor
from jnas.latency.tables import (
    STATISTICS,
    Entry,
    calibration_record,
    read_calibration,
    read_json_list,
    read_release_table,
)

__all__ = [
    "PIN_FLAGS",
    "PI_ASSET",
    "PI_FIT_OPTIONS",
    "STATISTICS",
    "Device",
    "Entry",
    "KernelPredictor",
    "Measurement",
    "Options",
    "Predictor",
    "TableFit",
    "calibration_record",
    "check_physical",
    "compile_forward",
    "derive_device",
    "evaluate",
    "fit",
    "fit_pi_table",
    "fit_table",
    "format_metrics",
    "host_description",
    "load",
    "measure",
    "measure_many",
    "pin_threads",
    "raspi3b_predictor",
    "read_calibration",
    "read_json_list",
    "read_release_table",
    "tick_spreads",
    "untrained_variables",
]
