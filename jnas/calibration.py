"""Calibrating the latency predictor on a device: sample, measure, fit, evaluate.

``calibrate_and_fit(config, workdir)`` is what ``launch/calibrate.py`` runs. Its
workdir holds:
- ``calibration.jsonl`` / ``evaluation.jsonl``: one JSON line per measured
  network (``latency.calibration_record``), appended and flushed one by one, so
  a killed run loses nothing measured; a rerun skips measured arch hashes;
- ``predictor.json``: the fitted predictor (``latency.load``);
- ``metrics.json``: held-out accuracy and the fitted table; ``config.json``.

Remote devices (e.g. a 64-bit Raspberry Pi with jax installed) run the
measurement half only (``config.mode = "measure"``), the JSON-lines files are
copied back, and ``config.mode = "fit"`` fits here without measuring.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jnas import arch as arch_lib
from jnas import latency, roofline, spaces

MODES = ("all", "measure", "fit")
CALIBRATION, EVALUATION = "calibration.jsonl", "evaluation.jsonl"


def local_device(cores: int = 1) -> roofline.Device:
    """Returns generous ceilings for this host, from its nominal clock.

    At most 32 single-precision MACs per cycle and core (two 512-bit FMA pipes)
    and 128 bytes per cycle and core (two 64-byte L1 loads), at the nominal
    clock of /proc/cpuinfo: AVX2 parts (16 MACs per cycle) stay under this even
    at turbo clocks up to twice nominal. A fitted throughput or bandwidth above
    it would be unphysical. Channel lanes: 8 float32 lanes with AVX2 (XLA
    prefers 256-bit vectors also on AVX-512 parts), else 4 (NEON).
    """
    mhz, flags = 3000.0, ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
            elif line.startswith(("flags", "Features")):
                flags = " " + line.split(":", 1)[1]
            if mhz != 3000.0 and flags:
                break
    except (OSError, ValueError):
        pass
    hz = mhz * 1e6
    lanes = 8 if " avx2" in flags else 4  # XLA prefers 256-bit vectors
    return roofline.Device(
        f"this host ({cores} core(s), nominal {mhz:.0f} MHz)",
        32 * hz * cores,
        128 * hz * cores,
        channel_lanes=lanes,
    )


def parse_space_laws(items: Sequence[str]) -> list[tuple[str, str]]:
    """Parses ["mobilenetv2:s5", ...] into (space, law) pairs, checking both."""
    pairs = []
    for item in items:
        space, _, law = str(item).partition(":")
        if law not in spaces.laws(space):
            raise ValueError(
                f"{item!r}: law must be one of {spaces.laws(space)} (write 'space:law')"
            )
        pairs.append((spaces.canonical(space), law))
    if not pairs:
        raise ValueError("no 'space:law' pairs given")
    return pairs


def sample_candidates(
    pairs: Sequence[tuple[str, str]],
    n: int,
    *,
    seed: int,
    exclude: set[str] = frozenset(),
) -> list[arch_lib.Arch]:
    """Draws ``n`` distinct networks, cycling over (space, law) pairs.

    Args:
      pairs: (space, law) pairs; sample i uses pairs[i % len(pairs)].
      n: how many networks.
      seed: seeds the sample indices (the same seed gives the same networks).
      exclude: arch hashes not to draw (e.g. the calibration set).

    Returns:
      ``n`` architectures with distinct hashes, none in ``exclude``.
    """
    rng = np.random.default_rng(seed)
    seen, out, tries = set(exclude), [], 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 100:
            raise ValueError(
                f"could only draw {len(out)} of {n} distinct networks from {pairs}"
            )
        space, law = pairs[len(out) % len(pairs)]
        try:
            net = spaces.sample(space, law, int(rng.integers(0, 2**31)))
        except ValueError:
            continue  # an invalid draw (e.g. a DenseNet transition with 0 channels)
        if net.hash not in seen:
            seen.add(net.hash)
            out.append(net)
    return out


def measure_to_file(
    archs: Sequence[arch_lib.Arch],
    path: Path,
    *,
    measure_kwargs: Mapping[str, Any],
    chunk: int,
    host: Mapping,
    log_fn: Callable[[str], None] = print,
) -> None:
    """Measures the networks not yet in ``path`` and appends them, chunk by chunk.

    Each chunk is compiled together and timed interleaved
    (``latency.measure_many``); every record is flushed and fsynced as soon as
    its chunk is done.
    """
    done = set()
    if path.exists():
        text = path.read_text()
        if text and not text.endswith("\n"):  # a kill mid-write: drop the stub
            path.write_text(text[: text.rfind("\n") + 1])
        done = {e.arch.hash for e in latency.read_calibration(path)}
    todo = [a for a in archs if a.hash not in done]
    log_fn(f"{path.name}: {len(done)} measured, {len(todo)} to measure")
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        t0 = time.perf_counter()
        measured = latency.measure_many(part, **measure_kwargs)
        with path.open("a") as f:
            for net, m in zip(part, measured, strict=True):
                f.write(json.dumps(latency.calibration_record(net, m, host)) + "\n")
                f.flush()
                os.fsync(f.fileno())
        log_fn(f"  {start + len(part)}/{len(todo)} in {time.perf_counter() - t0:.0f} s")


def calibrate_and_fit(
    config: Any, workdir: str | Path, log_fn: Callable[[str], None] = print
) -> dict[str, Any]:
    """Runs the calibration described by ``config`` (experiments/calibrate.py).

    Args:
      config: a ConfigDict with mode, spaces, n_calibration, n_evaluation, seed,
        batch, warmup, repeats, rounds, chunk, pin_threads, statistic, fmt and
        the device ceilings (see experiments/calibrate.py).
      workdir: output folder (created; reruns resume).
      log_fn: progress output.

    Returns:
      The metrics dict also written to ``metrics.json`` ({} in "measure" mode).
    """
    if config.mode not in MODES:
        raise ValueError(f"config.mode={config.mode!r}; allowed: {MODES}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json(indent=1) + "\n")
    if config.mode != "fit":
        if config.pin_threads:
            cpu = None if config.cpu < 0 else config.cpu
            pinned = latency.pin_threads(cpu, config.xla_flags.split())
            log_fn(f"pinned: {pinned}")
        pairs = parse_space_laws(config.spaces)
        calib = sample_candidates(pairs, config.n_calibration, seed=config.seed)
        evals = sample_candidates(
            pairs,
            config.n_evaluation,
            seed=config.seed + 1,
            exclude={a.hash for a in calib},
        )
        host = latency.host_description()
        log_fn(f"host: {host}")
        kwargs = {
            "batch": config.batch,
            "warmup": config.warmup,
            "repeats": config.repeats,
            "rounds": config.rounds,
        }
        for name, nets in ((CALIBRATION, calib), (EVALUATION, evals)):
            measure_to_file(
                nets,
                workdir / name,
                measure_kwargs=kwargs,
                chunk=config.chunk,
                host=host,
                log_fn=log_fn,
            )
    if config.mode == "measure":
        return {}
    return fit_and_evaluate(config, workdir, log_fn)


def _device(config: Any) -> roofline.Device:
    if config.device == "local":
        return local_device()
    if config.device == "raspberry_pi_3b_plus":
        return roofline.RASPBERRY_PI_3B_PLUS
    return roofline.Device(config.device, config.peak_flops, config.peak_bandwidth)


def fit_and_evaluate(
    config: Any, workdir: Path, log_fn: Callable[[str], None] = print
) -> dict[str, Any]:
    """Fits on ``calibration.jsonl``, evaluates on ``evaluation.jsonl``, saves."""
    calib = latency.read_calibration(workdir / CALIBRATION, statistic=config.statistic)
    evals = []
    if (workdir / EVALUATION).exists():
        evals = latency.read_calibration(
            workdir / EVALUATION, statistic=config.statistic
        )
    t0 = time.perf_counter()
    predictor = latency.fit(
        [e.arch for e in calib],
        [e.latency_ms for e in calib],
        spreads_ms=None,
        device=_device(config),
        fmt=config.fmt,
        tie=config.tie,
    )
    log_fn(f"fitted on {len(calib)} networks in {time.perf_counter() - t0:.1f} s")
    log_fn(predictor.report())
    predictor.save(workdir / "predictor.json")
    metrics = {
        "calibration": _metrics(predictor, calib),
        "statistic": config.statistic,
        "table": predictor.to_dict()["kinds"],
    }
    log_fn(f"calibration (in-sample): {latency.format_metrics(metrics['calibration'])}")
    if evals:
        metrics["evaluation"] = _metrics(predictor, evals)
        log_fn(f"held-out: {latency.format_metrics(metrics['evaluation'])}")
        metrics["per_space"] = {}
        for space in sorted({e.source["space"] for e in evals}):
            sub = [e for e in evals if e.source["space"] == space]
            metrics["per_space"][space] = _metrics(predictor, sub)
            log_fn(
                f"  {space:12s} {latency.format_metrics(metrics['per_space'][space])}"
            )
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def _metrics(predictor: roofline.Predictor, entries: list[latency.Entry]) -> dict:
    pred = predictor.predict_many([e.arch for e in entries])
    out = latency.evaluate(pred, [e.latency_ms for e in entries])
    return {
        k: (v if not isinstance(v, float) or math.isfinite(v) else None)
        for k, v in out.items()
    }
