"""Latency: measuring networks on a device, reading measurement tables, and
the roofline predictor (features, fit, save/load, held-out evaluation).

Modules: `measurement` (timing networks on this device), `roofline` (the
predictor and its features), `fitting` (fitting it to measurements),
`calibration` (the measure-then-fit workflow of `launch/calibrate.py`).
"""

from jnas.latency.measurement import (
    PI_ASSET,
    PI_FIT_OPTIONS,
    PIN_FLAGS,
    STATISTICS,
    Entry,
    Measurement,
    Predictor,
    calibration_record,
    compile_forward,
    evaluate,
    fit,
    fit_pi_table,
    format_metrics,
    host_description,
    load,
    measure,
    measure_many,
    pin_threads,
    raspi3b_predictor,
    read_calibration,
    read_release_table,
    tick_spreads,
    untrained_variables,
)

__all__ = [
    "PI_ASSET",
    "PI_FIT_OPTIONS",
    "PIN_FLAGS",
    "STATISTICS",
    "Entry",
    "Measurement",
    "Predictor",
    "calibration_record",
    "compile_forward",
    "evaluate",
    "fit",
    "fit_pi_table",
    "format_metrics",
    "host_description",
    "load",
    "measure",
    "measure_many",
    "pin_threads",
    "raspi3b_predictor",
    "read_calibration",
    "read_release_table",
    "tick_spreads",
    "untrained_variables",
]
