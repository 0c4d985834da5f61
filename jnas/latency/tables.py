"""Reading measurement tables: the release's (e.g. iotnets ``results_RaspPi.json``)
and jnas calibration files (JSON lines written by ``latency.calibration``).

``read_json_list`` is the one reader of the release's JSON tables (also used
by ``jnas.search.replay``); ``read_release_table`` and ``read_calibration``
turn rows into ``Entry`` values with the sampled architecture.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jnas import arch as arch_lib
from jnas import spaces
from jnas.latency import measurement

STATISTICS = ("median_ms", "mean_ms", "min_ms")


def read_json_list(path: str | Path, what: str, hint: str = "") -> list[dict[str, Any]]:
    """Reads a JSON file holding a list of objects (a release table).

    Args:
      path: the file.
      what: how the caller names it in messages (e.g. "config.pi_table").
      hint: appended to the missing-file message (how to get the file).

    Raises:
      FileNotFoundError: the file is missing (naming `what` and `hint`).
      ValueError: the file is not a JSON list of objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{what}={str(path)!r} does not exist" + (f"; {hint}" if hint else "")
        )
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} ({what}) is not JSON: {err}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path} ({what}) must be a JSON list of objects")
    return rows


@dataclasses.dataclass(frozen=True)
class Entry:
    """One measured network from a table or calibration file.

    Attributes:
      arch: the network.
      latency_ms: its latency (the release's mean, or our median).
      spread_ms: the spread of its repeats (std), 0 if unknown.
      source: provenance ({"space", "law", "index"}, host, ...).
    """

    arch: arch_lib.Arch
    latency_ms: float
    spread_ms: float
    source: Mapping[str, Any]


def _check_time(where: str, value: Any, *, positive: bool = True) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or (value <= 0 if positive else value < 0):
        raise ValueError(
            f"{where}: time must be a finite number "
            f"{'> 0' if positive else '>= 0'} (ms); got {value!r}"
        )
    return float(value)


def read_release_table(path: str | Path) -> list[Entry]:
    """Reads the release's measurement table (e.g. iotnets results_RaspPi.json).

    Args:
      path: a JSON list of objects with ``spacename``, ``law``, ``id``, ``t_avg``
        and ``t_std`` (ms).

    Returns:
      One ``Entry`` per row, in file order, with the sampled architecture.

    Raises:
      ValueError: naming the row for a missing field, a bad time or a network
        that cannot be sampled.
    """
    rows = read_json_list(path, "the release table")
    entries = []
    for i, row in enumerate(rows):
        where = f"{path} row {i}"
        missing = {"spacename", "law", "id", "t_avg", "t_std"} - set(row)
        if missing:
            raise ValueError(f"{where}: missing fields {sorted(missing)}")
        try:
            net = spaces.sample(row["spacename"], row["law"], row["id"])
        except ValueError as err:
            raise ValueError(f"{where}: cannot build the network: {err}") from None
        entries.append(
            Entry(
                net,
                _check_time(f"{where} t_avg", row["t_avg"]),
                _check_time(f"{where} t_std", row["t_std"], positive=False),
                dict(net.meta),
            )
        )
    return entries


def calibration_record(
    arch: arch_lib.Arch, m: measurement.Measurement, host: Mapping[str, Any]
) -> dict[str, Any]:
    """Returns one calibration-file line (JSON-ready) for a measured network."""
    meta = dict(arch.meta)
    return {
        "hash": arch.hash,
        "arch": arch.to_dict(),
        "space": meta.get("space"),
        "law": meta.get("law"),
        "index": meta.get("index"),
        "measurement": m.to_dict(),
        "host": dict(host),
    }


def read_calibration(path: str | Path, *, statistic: str = "median_ms") -> list[Entry]:
    """Reads a jnas calibration file (JSON lines, see ``calibration_record``).

    Args:
      path: the file; a truncated last line (a killed run) is skipped.
      statistic: which measurement field is the latency ("median_ms",
        "mean_ms" or "min_ms").

    Returns:
      One ``Entry`` per line, with ``std_ms`` as the spread.

    Raises:
      FileNotFoundError: no such file.
      ValueError: no measurement in it, or a bad line (file and line named).
    """
    if statistic not in STATISTICS:
        raise ValueError(f"statistic={statistic!r}; allowed: {', '.join(STATISTICS)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no calibration file at {path}; measure one with python -m "
            "launch.calibrate (docs/latency.md)"
        )
    entries = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue  # interrupted write
            raise ValueError(f"{path} line {i + 1}: not JSON") from None
        where = f"{path} line {i + 1}"
        try:
            net, m = arch_lib.from_dict(rec["arch"]), rec["measurement"]
            value, spread = m[statistic], m["std_ms"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{where}: missing field {err}") from None
        except ValueError as err:  # the arch's schema
            raise ValueError(f"{where}: bad arch: {err}") from None
        if net.hash != rec.get("hash"):
            raise ValueError(f"{where}: arch hash mismatch (file edited?)")
        entries.append(
            Entry(
                net,
                _check_time(f"{where} {statistic}", value),
                _check_time(f"{where} std_ms", spread, positive=False),
                {k: rec.get(k) for k in ("space", "law", "index", "host")},
            )
        )
    if not entries:
        raise ValueError(
            f"{path} holds no measurements (empty, or only an interrupted line); "
            "measure with python -m launch.calibrate"
        )
    return entries
