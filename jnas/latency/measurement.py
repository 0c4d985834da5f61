"""Latency: measuring networks on this device, reading measurement tables, and
the roofline predictor's public surface (fit, load, evaluate).

Measurement protocol (``measure``, ``measure_many``): the network is built with
``jnas.nn`` and untrained (initial) weights, its eval forward pass is jitted and
compiled ahead of time, each call is blocked until the result is ready, warm-up
calls are discarded, and the timed calls are summarised (median, mean, std, min;
the raw samples are kept). Which statistic is "the latency" is the reader's
choice (``read_calibration(statistic=...)``): the median on a quiet device, the
minimum on a shared one, where other jobs only ever add time. The host
description records the processor, XLA flags, CPU affinity and the load
average, so a calibration file says where and how it was measured.

Thread pinning has to happen before JAX creates its CPU backend (the XLA flags
are read once): call ``pin_threads()`` first thing, or run under
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0``.

The predictor itself is ``jnas.roofline`` (model, save/load) and
``jnas.latency_fit`` (fitting); ``fit`` and ``load`` here are the entry points.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jnas import arch as arch_lib
from jnas import spaces
from jnas.latency import fitting as latency_fit
from jnas.latency import roofline

PIN_FLAGS = ("--xla_cpu_multi_thread_eigen=false",)
STATISTICS = ("median_ms", "mean_ms", "min_ms")
load = roofline.load
Predictor = roofline.Predictor


def fit(
    archs: Sequence[arch_lib.Arch], latencies_ms: Sequence[float], **kwargs: Any
) -> roofline.Predictor:
    """Fits a roofline predictor; see ``latency_fit.fit`` for the options."""
    return latency_fit.fit(archs, latencies_ms, **kwargs)


# ------------------------------------------------- the Raspberry Pi predictor
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


def fit_pi_table(entries: Sequence[Entry]) -> roofline.Predictor:
    """Fits the Raspberry Pi 3B+ predictor to release-table entries.

    The recipe of the shipped predictor (``raspi3b_predictor``) and of the
    held-out experiment in ``benchmarks/latency_pi.py``: ``PI_FIT_OPTIONS``,
    rows weighted by ``tick_spreads``.
    """
    y = np.array([e.latency_ms for e in entries])
    spread = tick_spreads(y, [e.spread_ms for e in entries])
    predictor = fit(
        [e.arch for e in entries],
        y,
        spreads_ms=spread,
        device=roofline.RASPBERRY_PI_3B_PLUS,
        **PI_FIT_OPTIONS,
    )
    info = dict(predictor.info, recipe="jnas.latency.fit_pi_table")
    return dataclasses.replace(predictor, info=info)


def raspi3b_predictor() -> roofline.Predictor:
    """Returns the Raspberry Pi 3B+ predictor shipped with the package.

    Fitted by ``fit_pi_table`` on all 1617 rows of the iotnets release's Pi
    table (PyTorch, batch 1, float32); its held-out accuracy (fit on 20%) is in
    BUILD_NOTES.md. Regenerate with
    ``python benchmarks/latency_pi.py --save jnas/assets/raspi3b_predictor.json
    --no-eval``.
    """
    from importlib import resources

    text = resources.files("jnas").joinpath("assets").joinpath(PI_ASSET).read_text()
    return roofline.from_dict(json.loads(text))


# ----------------------------------------------------------------- measurement
@dataclasses.dataclass(frozen=True)
class Measurement:
    """Timings of one network (all in ms).

    Attributes:
      median_ms, mean_ms, std_ms, min_ms: statistics of ``samples_ms``.
      samples_ms: the timed calls, in the order they ran.
      warmup: discarded calls before timing (per round).
      batch: batch size of the timed input.
      compile_s: seconds to build, initialise and compile.
    """

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    samples_ms: tuple[float, ...]
    warmup: int
    batch: int
    compile_s: float = 0.0

    @classmethod
    def from_samples(
        cls,
        samples_ms: Iterable[float],
        *,
        warmup: int,
        batch: int,
        compile_s: float = 0.0,
    ) -> Measurement:
        """Summarises raw samples (ms) into a ``Measurement``."""
        s = np.asarray(list(samples_ms), dtype=float)
        if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"timings must be finite and > 0 ms; got {s.tolist()}")
        return cls(
            float(np.median(s)),
            float(s.mean()),
            float(s.std()),
            float(s.min()),
            tuple(float(v) for v in s),
            warmup,
            batch,
            compile_s,
        )

    def to_dict(self) -> dict[str, Any]:
        """Returns the JSON-ready form."""
        return dataclasses.asdict(self) | {"samples_ms": list(self.samples_ms)}


def pin_threads(cpu: int | None = None, extra_flags: Sequence[str] = ()) -> dict:
    """Makes XLA run single-threaded on one CPU core (call before using JAX).

    Args:
      cpu: the core to pin to; default the lowest core this process may use.
      extra_flags: more XLA flags for the measured program (recorded in the host
        description), e.g. ``--xla_cpu_experimental_ynn_fusion_type=`` to run
        convolutions with Eigen instead of YNNPACK.

    Returns:
      {"xla_flags", "affinity"} as now in effect.

    Raises:
      RuntimeError: if JAX's backend already exists (the flags would be ignored).
    """
    if _backend_initialised():
        raise RuntimeError(
            "pin_threads() must run before JAX initialises its "
            "backend (before the first jax computation)"
        )
    flags = os.environ.get("XLA_FLAGS", "").split()
    flags += [f for f in (*PIN_FLAGS, *extra_flags) if f not in flags]
    os.environ["XLA_FLAGS"] = " ".join(flags)
    if hasattr(os, "sched_setaffinity"):
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(allowed) if cpu is None else cpu})
    return {"xla_flags": os.environ["XLA_FLAGS"], "affinity": _affinity()}


def _backend_initialised() -> bool:
    try:
        from jax._src import xla_bridge  # private, hence the fallback

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return False


def _affinity() -> list[int] | None:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def host_description() -> dict[str, Any]:
    """Returns where and how measurements are taken (JSON-ready)."""
    import jax

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = jax.devices()[0]
    return {
        "hostname": platform.node(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "affinity": _affinity(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "single_threaded": all(f in os.environ.get("XLA_FLAGS", "") for f in PIN_FLAGS),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def untrained_variables(model: Any, seed: int = 0) -> Any:
    """Returns variables of ``model`` without compiling its init program.

    Latency does not depend on the values (barring subnormals), so the shapes
    come from ``jax.eval_shape`` and the values from NumPy: kernels uniform in
    +-1/sqrt(fan_in) (PyTorch's scale, so activations stay finite), 1-D
    ``scale`` / ``var`` leaves one, other 1-D leaves zero. This halves the
    per-network set-up time of a calibration run.
    """
    import jax

    from jnas import nn

    shapes = jax.eval_shape(lambda k: nn.init(model, k), jax.random.key(seed))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        if len(leaf.shape) >= 2:
            bound = 1.0 / math.sqrt(math.prod(leaf.shape[:-1]))
            return rng.uniform(-bound, bound, leaf.shape).astype(leaf.dtype)
        value = 1.0 if name in ("scale", "var") else 0.0
        return np.full(leaf.shape, value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def compile_forward(
    arch: arch_lib.Arch, *, batch: int = 1, seed: int = 0, conv_impl: str = "xla"
) -> tuple[Callable[[], Any], float]:
    """Builds and AOT-compiles the eval forward pass of ``arch``.

    Args:
      arch: the architecture.
      batch: batch size of the input.
      seed: seed of the (untrained) weights and the input.
      conv_impl: the convolution lowering (``nn_ops.CONV_IMPLS``): part of
        what is measured, so it is recorded with each measurement.

    Returns:
      (call, seconds): ``call()`` runs one forward pass and blocks until ready;
      seconds is the set-up time (build, weights, compile).

    Raises:
      ValueError: if ``jnas.nn`` cannot build or compile the network (naming it).
    """
    import jax

    from jnas import nn

    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int; got {batch!r}")
    start = time.perf_counter()
    try:
        model = nn.create_model(arch, conv_impl=conv_impl)
        variables = jax.device_put(untrained_variables(model, seed))
        x = jax.device_put(
            np.random.default_rng(seed)
            .standard_normal((batch, *arch.input_shape))
            .astype(np.float32)
        )
        forward = jax.jit(lambda v, x: nn.apply(model, v, x, train=False))
        compiled = forward.lower(variables, x).compile()
        compiled(variables, x).block_until_ready()  # fail here, not while timing
    except Exception as err:  # any build failure: name the network
        raise ValueError(
            f"network {arch.hash[:12]} ({dict(arch.meta)}) cannot be "
            f"built: {type(err).__name__}: {err}"
        ) from err
    return (lambda: compiled(variables, x).block_until_ready()), (
        time.perf_counter() - start
    )


def _timed(call: Callable[[], Any], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def measure(
    arch: arch_lib.Arch,
    *,
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 30,
    seed: int = 0,
    conv_impl: str = "xla",
) -> Measurement:
    """Measures the eval latency of ``arch`` on this device.

    Args:
      arch: the architecture (untrained weights are used).
      batch: batch size.
      warmup: untimed calls first (caches, page faults, lazy init).
      repeats: timed calls; the median is the latency.
      seed: PRNG seed of weights and input.
      conv_impl: the convolution lowering (``nn_ops.CONV_IMPLS``).

    Returns:
      The ``Measurement``.
    """
    return measure_many(
        [arch],
        batch=batch,
        warmup=warmup,
        repeats=repeats,
        rounds=1,
        seed=seed,
        conv_impl=conv_impl,
    )[0]


def measure_many(
    archs: Sequence[arch_lib.Arch],
    *,
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 30,
    rounds: int = 3,
    seed: int = 0,
    conv_impl: str = "xla",
) -> list[Measurement]:
    """Measures several networks with their repeats interleaved.

    All networks are compiled first; then ``rounds`` rounds each time every
    network (in a shuffled order) for ``warmup`` discarded plus
    ``repeats / rounds`` timed calls. Interleaving spreads slow phases of a
    shared machine (other users' jobs) over all networks instead of biasing the
    ones measured during them.

    Args:
      archs: the architectures.
      batch, warmup, seed, conv_impl: as for ``measure``.
      repeats: timed calls per network in total (rounded up to whole rounds).
      rounds: interleaved passes over the networks.

    Returns:
      One ``Measurement`` per network, in order.
    """
    for name, value, low in (
        ("warmup", warmup, 0),
        ("repeats", repeats, 1),
        ("rounds", rounds, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    compiled = [
        compile_forward(a, batch=batch, seed=seed, conv_impl=conv_impl) for a in archs
    ]
    per_round = math.ceil(repeats / rounds)
    samples: list[list[float]] = [[] for _ in archs]
    order = np.random.default_rng(seed)
    for _ in range(rounds):
        for i in order.permutation(len(archs)):
            call = compiled[i][0]
            _timed(call, warmup)
            samples[i] += _timed(call, per_round)
    return [
        Measurement.from_samples(s, warmup=warmup, batch=batch, compile_s=c[1])
        for s, c in zip(samples, compiled, strict=True)
    ]


# ------------------------------------------------------------------- ingestion
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
    rows = json.loads(Path(path).read_text())
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of measurements")
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
    arch: arch_lib.Arch, m: Measurement, host: Mapping[str, Any]
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
    """
    if statistic not in STATISTICS:
        raise ValueError(f"statistic={statistic!r}; allowed: {', '.join(STATISTICS)}")
    entries = []
    lines = Path(path).read_text().splitlines()
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
    return entries


# ------------------------------------------------------------------ evaluation
def evaluate(predicted_ms: Sequence[float], measured_ms: Sequence[float]) -> dict:
    """Accuracy metrics in the style of nn-Meter.

    Args:
      predicted_ms: predictions.
      measured_ms: measurements (> 0), same length.

    Returns:
      {"n", "rmspe" (root mean squared percentage error, %), "within_5",
      "within_10" (% of networks with |pred / meas - 1| <= 5%, 10%),
      "median_ape" (%), "spearman" (rank correlation)}.
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
        f"  rmspe={metrics['rmspe']:6.2f}%  spearman={rho}"
    )
