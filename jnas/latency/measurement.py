"""Timing networks on this device.

Measurement protocol (``measure``, ``measure_many``): the network is built with
``jnas.nn`` and untrained (initial) weights, its eval forward pass is jitted and
compiled ahead of time, each call is blocked until the result is ready, warm-up
calls are discarded, and the timed calls are summarised (median, mean, std, min;
the raw samples are kept). Which statistic is "the latency" is the reader's
choice (``tables.read_calibration(statistic=...)``): the median on a quiet
device, the minimum on a shared one, where other jobs only ever add time. The
host description records the processor, XLA flags, CPU affinity and the load
average, so a calibration file says where and how it was measured.

Thread pinning has to happen before JAX creates its CPU backend (the XLA flags
are read once): call ``pin_threads()`` first thing, or run under
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jnas import arch as arch_lib

PIN_FLAGS = ("--xla_cpu_multi_thread_eigen=false",)


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


def pin_threads(
    cpu: int | None = None,
    extra_flags: Sequence[str] = (),
    *,
    single_threaded: bool = True,
) -> dict:
    """Makes XLA run single-threaded on one CPU core (call before using JAX).

    Args:
      cpu: the core to pin to; default the lowest core this process may use.
      extra_flags: more XLA flags for the measured program (recorded in the host
        description), e.g. ``--xla_cpu_experimental_ynn_fusion_type=`` to run
        convolutions with Eigen instead of YNNPACK.
      single_threaded: add ``PIN_FLAGS`` (one Eigen thread). False keeps XLA's
        thread pool, all of it on the pinned core: with jax 0.10.2 on an Intel
        Xeon host, single-threaded Eigen plus Eigen convolutions never finished
        compiling some 1x1 convs (17 -> 12 channels on 4x4 grew past 20 GB).

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
    pin = PIN_FLAGS if single_threaded else ()
    flags += [f for f in (*pin, *extra_flags) if f not in flags]
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


def measure_convs(
    keys: Sequence[tuple], *, warmup: int = 5, repeats: int = 30, rounds: int = 3
) -> list[float]:
    """Times each convolution alone; returns the minimum per conv (ms).

    ``keys`` are ``kernels.conv_key`` tuples. Each conv is one jitted
    ``lax.conv_general_dilated`` (NHWC, HWIO, plus the bias where the key has
    one), as ``jnas.nn`` lowers it with ``conv_impl="xla"``, batch 1, random
    data; rounds are interleaved over all convs as in ``measure_many``.
    """
    import jax

    calls = []
    rng = np.random.default_rng(0)
    for key in keys:
        c_in, c_out, kh, kw, h, w, ph, pw, sh, sw, groups, bias = key
        x = jax.device_put(rng.standard_normal((1, h, w, c_in), np.float32))
        k = jax.device_put(
            rng.standard_normal((kh, kw, c_in // groups, c_out), np.float32)
        )
        b = jax.device_put(np.zeros(c_out, np.float32))

        def conv(
            x, k, b, stride=(sh, sw), pad=((ph, ph), (pw, pw)), g=groups, bias=bias
        ):
            y = jax.lax.conv_general_dilated(
                x,
                k,
                stride,
                pad,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=g,
            )
            return y + b if bias else y

        compiled = jax.jit(conv).lower(x, k, b).compile()
        calls.append(lambda c=compiled, a=(x, k, b): c(*a).block_until_ready())
    per_round = math.ceil(repeats / rounds)
    best = [math.inf] * len(keys)
    order = np.random.default_rng(1)
    for _ in range(rounds):
        for i in order.permutation(len(keys)):
            _timed(calls[i], warmup)
            best[i] = min(best[i], *_timed(calls[i], per_round))
    return best
