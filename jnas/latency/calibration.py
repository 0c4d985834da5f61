"""Calibrating the latency predictor on a device: sample, measure, fit, evaluate.

``calibrate_and_fit(config, workdir)`` is what ``launch/calibrate.py`` runs. Its
workdir holds:
- ``calibration.jsonl`` / ``evaluation.jsonl``: one JSON line per measured
  network (``tables.calibration_record``), appended and flushed as each chunk
  is done (the two sets are measured interleaved, ``measure_to_files``), so a
  killed run loses at most one chunk; a rerun skips measured arch hashes;
- ``predictor.json``: the fitted predictor (``jnas.latency.load``);
- ``metrics.json``: held-out accuracy and the fitted table; ``config.json``.

Remote devices (e.g. a 64-bit Raspberry Pi with jax installed) run the
measurement half only (``config.mode = "measure"``), the JSON-lines files are
copied back, and ``config.mode = "fit"`` fits here without measuring.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jnas import arch as arch_lib
from jnas import spaces, storage
from jnas.latency import measurement, recipe, roofline, tables
from jnas.latency import metrics as metrics_lib

MODES = ("all", "measure", "fit")
CALIBRATION, EVALUATION = "calibration.jsonl", "evaluation.jsonl"
CONVS = "convs.jsonl"  # the calibration networks' convs timed alone


def local_device(cores: int = 1) -> roofline.Device:
    """Returns generous ceilings for this host, from its nominal clock.

    At most 32 single-precision MACs per cycle and core (two 512-bit FMA pipes)
    and 128 bytes per cycle and core (two 64-byte L1 loads), at the nominal
    clock of /proc/cpuinfo: AVX2 parts (16 MACs per cycle) stay under this even
    at turbo clocks up to twice nominal. A fitted throughput or bandwidth above
    it would be unphysical. Channel lanes: 16 float32 lanes with AVX-512, 8
    with AVX2, else 4 (NEON). Pack lanes: 8 on x86 (the AVX packets of the
    Eigen that XLA's CPU convolutions use), else 4.
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
    # float32 lanes of the widest vectors. 16 on AVX-512 parts fitted this
    # VM's timings better than 8 in cross-validation (docs/latency.md).
    lanes = 16 if " avx512f" in flags else 8 if " avx2" in flags else 4
    # Random 96/204 splits of 600 networks measured here: within +-10% 92-94%
    # with pack lanes 8 against 89-90% with 16 or without the feature.
    pack = 8 if " avx" in flags else 4
    return roofline.Device(
        f"this host ({cores} core(s), nominal {mhz:.0f} MHz)",
        32 * hz * cores,
        128 * hz * cores,
        channel_lanes=lanes,
        pack_lanes=pack,
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


def _measured_hashes(path: Path) -> set[str]:
    """Arch hashes already in a calibration file (a truncated last line is cut)."""
    if not path.exists():
        return set()
    storage.cut_torn_tail(path)  # a kill mid-write: drop the stub
    if path.stat().st_size == 0:  # killed before its first whole line
        return set()
    return {e.arch.hash for e in tables.read_calibration(path)}


def measure_to_files(
    jobs: Sequence[tuple[Sequence[arch_lib.Arch], Path]],
    *,
    measure_kwargs: Mapping[str, Any],
    chunk: int,
    host: Mapping,
    log_fn: Callable[[str], None] = print,
) -> None:
    """Measures the networks not yet in their files and appends them, chunk by chunk.

    The networks of all ``jobs`` (``(archs, path)`` pairs, e.g. the calibration
    and the evaluation set) are interleaved in proportion, so every chunk holds
    some of each: slow drifts of a shared machine (other tenants, clocks) then
    touch both sets alike instead of biasing one against the other. Each chunk
    is compiled together and timed interleaved (``measurement.measure_many``); every
    record is flushed and fsynced to its job's file as soon as its chunk is done.
    """
    todo = []
    for archs, path in jobs:
        done = _measured_hashes(path)
        left = [a for a in archs if a.hash not in done]
        log_fn(f"{path.name}: {len(done)} measured, {len(left)} to measure")
        # Position i of n sits at (i + 0.5) / n: merging by it interleaves the
        # jobs evenly whatever their sizes.
        todo += [((i + 0.5) / len(left), a, path) for i, a in enumerate(left)]
    todo.sort(key=lambda t: t[0])
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        t0 = time.perf_counter()
        measured = measurement.measure_many([a for _, a, _ in part], **measure_kwargs)
        for (_, net, path), m in zip(part, measured, strict=True):
            storage.append_line(path, tables.calibration_record(net, m, host))
        log_fn(f"  {start + len(part)}/{len(todo)} in {time.perf_counter() - t0:.0f} s")


def calibrate_and_fit(
    config: Any, workdir: str | Path, log_fn: Callable[[str], None] = print
) -> dict[str, Any]:
    """Runs the calibration described by ``config`` (experiments/calibrate.py).

    Args:
      config: a ConfigDict with mode, spaces, n_calibration, n_evaluation, seed,
        batch, warmup, repeats, rounds, chunk, pin_threads, xla_flags,
        conv_impl, statistic, fmt, tie, conv_extras, the device ceilings and
        lanes (see experiments/calibrate.py).
      workdir: output folder (created; reruns resume).
      log_fn: progress output.

    Returns:
      The metrics dict also written to ``metrics.json`` ({} in "measure" mode).
    """
    if config.mode not in MODES:
        raise ValueError(f"config.mode={config.mode!r}; allowed: {MODES}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    storage.atomic_write(workdir / "config.json", config.to_json(indent=1) + "\n")
    if config.mode != "fit":
        if config.pin_threads:
            cpu = None if config.cpu < 0 else config.cpu
            pinned = measurement.pin_threads(
                cpu,
                config.xla_flags.split(),
                single_threaded=config.get("single_threaded", True),
            )
            log_fn(f"pinned: {pinned}")
        pairs = parse_space_laws(config.spaces)
        calib = sample_candidates(pairs, config.n_calibration, seed=config.seed)
        evals = sample_candidates(
            pairs,
            config.n_evaluation,
            seed=config.seed + 1,
            exclude={a.hash for a in calib},
        )
        # What is measured is the network as lowered with this conv_impl.
        host = measurement.host_description() | {"conv_impl": config.conv_impl}
        log_fn(f"host: {host}")
        kwargs = {
            "conv_impl": config.conv_impl,
            "batch": config.batch,
            "warmup": config.warmup,
            "repeats": config.repeats,
            "rounds": config.rounds,
        }
        measure_to_files(
            [(calib, workdir / CALIBRATION), (evals, workdir / EVALUATION)],
            measure_kwargs=kwargs,
            chunk=config.chunk,
            host=host,
            log_fn=log_fn,
        )
        if config.get("kernels", False) and config.conv_impl == "xla":
            measure_convs_to_file(
                tables.read_calibration(workdir / CALIBRATION),
                workdir / CONVS,
                warmup=config.warmup,
                log_fn=log_fn,
            )
    if config.mode == "measure":
        return {}
    return fit_and_evaluate(config, workdir, log_fn)


def read_conv_times(path: Path) -> dict[tuple, float]:
    """{conv key: ms alone} from a convs file (a torn last line is skipped)."""
    times: dict[tuple, float] = {}
    if not path.exists():
        return times
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
            key = tuple(rec["key"])
            ms = float(rec["ms"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if i == len(lines) - 1:
                continue  # interrupted write
            raise ValueError(f"{path} line {i + 1}: not a conv timing") from None
        if len(key) != 12 or not (math.isfinite(ms) and ms > 0):
            raise ValueError(f"{path} line {i + 1}: bad key or time")
        times[key] = ms
    return times


def measure_convs_to_file(
    entries: Sequence[tables.Entry],
    path: Path,
    *,
    warmup: int = 5,
    chunk: int = 128,
    log_fn: Callable[[str], None] = print,
) -> None:
    """Times alone every conv of ``entries`` not yet in ``path`` (resumable)."""
    from jnas.latency import kernels

    done = read_conv_times(path)
    keys = sorted({k for e in entries for k in kernels.conv_keys(e.arch)} - set(done))
    log_fn(f"{path.name}: {len(done)} convs timed, {len(keys)} to time alone")
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk]
        t0 = time.perf_counter()
        ms = measurement.measure_convs(part, warmup=warmup)
        storage.append_lines(
            path, [{"key": list(k), "ms": t} for k, t in zip(part, ms, strict=True)]
        )
        log_fn(f"  {start + len(part)}/{len(keys)} in {time.perf_counter() - t0:.0f} s")


def _device(config: Any) -> roofline.Device:
    if config.device == "local":
        device = local_device()
    elif config.device == "raspberry_pi_3b_plus":
        device = roofline.RASPBERRY_PI_3B_PLUS
    else:
        device = roofline.Device(
            config.device, config.peak_flops, config.peak_bandwidth
        )
    for lanes in ("channel_lanes", "pack_lanes"):
        if config.get(lanes, 0):
            device = dataclasses.replace(device, **{lanes: config[lanes]})
    return device


def fit_extras(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``roofline.DEFAULT_EXTRAS`` plus ``names`` for every convolution kind."""
    for name in names:
        if name not in roofline.EXTRAS:
            raise ValueError(f"extra {name!r} is not one of {roofline.EXTRAS}")
    return {
        kind: (*base, *(n for n in names if n not in base))
        for kind, base in roofline.DEFAULT_EXTRAS.items()
    }


def fit_and_evaluate(
    config: Any, workdir: Path, log_fn: Callable[[str], None] = print
) -> dict[str, Any]:
    """Fits on ``calibration.jsonl``, evaluates on ``evaluation.jsonl``, saves."""
    calib = tables.read_calibration(workdir / CALIBRATION, statistic=config.statistic)
    evals = []
    if (workdir / EVALUATION).exists() and (workdir / EVALUATION).stat().st_size:
        evals = tables.read_calibration(
            workdir / EVALUATION, statistic=config.statistic
        )
    t0 = time.perf_counter()
    base = recipe.Options(
        extras=fit_extras(list(config.get("conv_extras", ()))), tie=config.tie
    )
    device = _device(config)
    if config.get("search", True):
        log_fn(
            "choosing the fit options by cross-validation inside the calibration set"
            " (score = 100 - 400 x mean clipped |log error|):"
        )
        result = recipe.fit_table(
            calib,
            device=device,
            fmt=config.fmt,
            base=base,
            weight_spreads=False,
            log_fn=log_fn,
        )
        predictor, cv, options = result.predictor, dict(result.cv), result.options
        log_fn(result.report(trials=False))  # the trials were logged as scored
    else:  # too few networks to cross-validate: fit the given options
        predictor = recipe.fit_options(
            calib, device, base, fmt=config.fmt, weight_spreads=False
        )
        cv, options = None, base
    level = "whole-network"
    conv_times = read_conv_times(workdir / CONVS)
    if config.get("kernels", False) and cv is not None and conv_times:
        predictor, level = choose_kernel_level(
            calib, result, device, conv_times, log_fn
        ) or (
            predictor,
            level,
        )
    log_fn(f"fitted on {len(calib)} networks in {time.perf_counter() - t0:.1f} s")
    log_fn(predictor.roofline.report() if level == "kernel" else predictor.report())
    predictor.save(workdir / "predictor.json")
    metrics = {
        "calibration": _metrics(predictor, calib),
        "cross_validated": cv,
        "options": options.to_dict(),
        "level": level,
        "statistic": config.statistic,
        "table": (predictor.roofline if level == "kernel" else predictor).to_dict()[
            "kinds"
        ],
    }
    log_fn(
        f"calibration (in-sample): {metrics_lib.format_metrics(metrics['calibration'])}"
    )
    if evals:
        metrics["evaluation"] = _metrics(predictor, evals)
        log_fn(f"held-out: {metrics_lib.format_metrics(metrics['evaluation'])}")
        metrics["per_space"] = {}
        for space in sorted({e.source["space"] for e in evals}):
            sub = [e for e in evals if e.source["space"] == space]
            metrics["per_space"][space] = _metrics(predictor, sub)
            line = metrics_lib.format_metrics(metrics["per_space"][space])
            log_fn(f"  {space:12s} {line}")
    storage.atomic_write(workdir / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    return metrics


def choose_kernel_level(
    calib: Sequence[tables.Entry],
    result: recipe.TableFit,
    device: roofline.Device,
    conv_times: Mapping[tuple, float],
    log_fn: Callable[[str], None] = print,
) -> tuple[Any, str] | None:
    """The kernel-level predictor where it beats the whole-network fit in the
    same cross-validation folds, else None."""
    from jnas.latency import kernels

    keys = {k for e in calib for k in kernels.conv_keys(e.arch)}
    if not keys <= set(conv_times):
        log_fn(f"kernel level: {len(keys - set(conv_times))} convs not timed; skipped")
        return None
    y = np.array([e.latency_ms for e in calib])
    whole = recipe.out_of_fold(calib, result.options, device, weight_spreads=False)
    kernel = kernels.out_of_fold(calib, result.options, device, conv_times)
    s_whole, s_kernel = recipe.score(whole, y), recipe.score(kernel, y)
    line = metrics_lib.format_metrics(metrics_lib.evaluate(kernel, y))
    log_fn(
        f"kernel level, cross-validated: {line} (score {s_kernel:.2f} against "
        f"{s_whole:.2f} whole-network)"
    )
    if s_kernel < s_whole + 0.5:
        return None
    model = kernels.fit_kernel_predictor(
        [e.arch for e in calib],
        y,
        result.predictor,
        conv_times,
        fit_kwargs=result.options.fit_kwargs(),
    )
    return model, "kernel"


def _metrics(predictor: Any, entries: list[tables.Entry]) -> dict:
    pred = predictor.predict_many([e.arch for e in entries])
    out = metrics_lib.evaluate(pred, [e.latency_ms for e in entries])
    return {
        k: (v if not isinstance(v, float) or math.isfinite(v) else None)
        for k, v in out.items()
    }
