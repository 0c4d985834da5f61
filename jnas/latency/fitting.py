"""Fitting the roofline predictor (``roofline``) to whole-network latencies.

Only network totals are measured, so every per-kind parameter is inferred from
how kinds mix across networks. The fit:

1. builds the per-node features of every network (``roofline.features``);
2. initialises with three linear relaxations (node time = F / P + B / BW + ...,
   or only the compute or only the memory roof), each linear in the inverse
   throughputs: bounded non-negative least squares on relative error
   (``scipy.optimize.lsq_linear``);
3. refines the true roofline max() by robust non-linear least squares on the
   log-ratio log(predicted / measured) with a soft-L1 loss
   (``scipy.optimize.least_squares``, trust-region reflective, bounds). Given
   which roof binds at every node the model is linear, so the Jacobian is exact
   almost everywhere. The max() is reached by continuation, through the
   p-norms (c^p + m^p)^(1/p) for p = 4, 16 (smooth: the roof that does not
   bind still gets a gradient, so a node can switch roofs), then the max;
   the best of the three refined optima is kept.

Bounds keep the model physical: 1/P_k >= 1/peak_flops, 1/BW_k >= 1/peak_bandwidth
and every overhead >= 0. Rows are weighted by the measurement's own precision,
1 / ((spread / latency)^2 + noise_floor^2): a timing whose repeats disagree by
40% carries little information about the network's cost.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence

import numpy as np

from jnas import arch as arch_lib
from jnas.latency import roofline

_NX = len(roofline.EXTRAS)
# Continuation in the roofline's max(): p-norms, then the max itself (inf).
POWERS = (4.0, 16.0, math.inf)
# Parameters pulled together by the optional prior (see ``fit``): one
# throughput for all convs and the linear layer, one bandwidth, one per-call
# overhead, and one cost per unit of each extra.
PRIOR_GROUPS = (
    ("a", ("conv_dense", "conv_1x1", "conv_depthwise", "conv_grouped", "linear")),
    ("b", roofline.KINDS),
    ("c", roofline.KINDS),
)


def _check_inputs(archs, latencies_ms, spreads_ms) -> tuple[np.ndarray, np.ndarray]:
    if len(archs) != len(latencies_ms):
        raise ValueError(
            f"{len(archs)} architectures but {len(latencies_ms)} latencies"
        )
    for i, a in enumerate(archs):
        if not isinstance(a, arch_lib.Arch):
            raise ValueError(
                f"archs[{i}] is a {type(a).__name__}, not a jnas.arch.Arch"
                " (build it first, e.g. with spaces.sample)"
            )
    y = np.asarray(latencies_ms, dtype=float)
    bad = np.flatnonzero(~np.isfinite(y) | (y <= 0))
    if bad.size:
        raise ValueError(
            f"latencies must be finite and > 0 ms; bad at index "
            f"{bad[0]}: {y[bad[0]]!r} ({bad.size} bad in all)"
        )
    if spreads_ms is None:
        return y, np.zeros_like(y)
    s = np.asarray(spreads_ms, dtype=float)
    if s.shape != y.shape:
        raise ValueError(f"spreads_ms has {s.size} values for {y.size} latencies")
    bad = np.flatnonzero(~np.isfinite(s) | (s < 0))
    if bad.size:
        raise ValueError(
            f"spreads must be finite and >= 0 ms; bad at index {bad[0]}: {s[bad[0]]!r}"
        )
    return y, s


class _Design:
    """Stacked node features of N networks and the parameter layout.

    Kinds are mapped to G parameter groups (``tie``; by default one per kind).
    Parameters, in order: a_g = ms per FLOP (G), b_g = ms per byte (G), c_g = ms
    per call (G), e_gj = ms per unit of extra j (G * NX), c_0 (1), d_m = ms per
    unit of network extra m (one per column of ``network``). Only the
    ``active`` ones are fitted; the others stay at their lower bound.
    """

    def __init__(
        self,
        feats: list[roofline.Features],
        group_of_kind: np.ndarray,
        use: np.ndarray,
        network: np.ndarray,
    ):
        self.n, g = len(feats), use.shape[0]
        self.g = g
        self.net = np.concatenate(
            [np.full(len(f.kind), i) for i, f in enumerate(feats)]
        )
        self.grp = group_of_kind[np.concatenate([f.kind for f in feats])]
        self.flops = np.concatenate([f.flops for f in feats])
        self.bytes = np.concatenate([f.bytes for f in feats])
        x = np.concatenate([f.extras for f in feats]) * use[self.grp]
        self.seg = self.net * g + self.grp
        sums = lambda v: np.bincount(self.seg, v, minlength=self.n * g).reshape(
            self.n, g
        )
        count = sums(np.ones_like(self.flops))
        ext = np.stack([sums(x[:, j]) for j in range(_NX)], axis=2)
        # Columns whose value does not depend on which roof binds.
        self.static = np.concatenate(
            [count, ext.reshape(self.n, -1), np.ones((self.n, 1)), network], axis=1
        )
        self.present = count.sum(0) > 0
        self.add_flops, self.add_bytes = sums(self.flops), sums(self.bytes)
        self.active = np.concatenate(
            [
                (self.add_flops > 0).any(0),
                (self.add_bytes > 0).any(0),
                self.static.any(0),
            ]
        )

    def bounds(self, device: roofline.Device) -> np.ndarray:
        lb = np.zeros(self.active.size)
        lb[: self.g] = 1e3 / device.peak_flops
        lb[self.g : 2 * self.g] = 1e3 / device.peak_bandwidth
        return lb

    def _roofs(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        compute = self.flops * theta[: self.g][self.grp]
        memory = self.bytes * theta[self.g : 2 * self.g][self.grp]
        return compute, memory

    def _blend(self, theta: np.ndarray, power: float):
        """Node roof times and their weights in the p-norm max (hard if inf)."""
        compute, memory = self._roofs(theta)
        if math.isinf(power):
            sel = compute >= memory
            return np.maximum(compute, memory), sel * 1.0, ~sel * 1.0
        # (c^p + m^p)^(1/p) >= max(c, m), and smooth: both roofs get a gradient.
        top = np.maximum(np.maximum(compute, memory), 1e-300)
        u, v = compute / top, memory / top
        norm = (u**power + v**power) ** (1 / power)
        return top * norm, (u / norm) ** (power - 1), (v / norm) ** (power - 1)

    def predict(self, theta: np.ndarray, power: float = math.inf) -> np.ndarray:
        node, _, _ = self._blend(theta, power)
        dynamic = np.bincount(self.net, node, minlength=self.n)
        return dynamic + self.static @ theta[2 * self.g :]

    def jacobian(self, theta: np.ndarray, power: float = math.inf) -> np.ndarray:
        _, wc, wm = self._blend(theta, power)
        sums = lambda v: np.bincount(self.seg, v, minlength=self.n * self.g).reshape(
            self.n, self.g
        )
        return np.concatenate(
            [sums(self.flops * wc), sums(self.bytes * wm), self.static], axis=1
        )

    def additive(self) -> np.ndarray:
        return np.concatenate([self.add_flops, self.add_bytes, self.static], axis=1)


def fit(
    archs: Sequence[arch_lib.Arch],
    latencies_ms: Sequence[float],
    *,
    spreads_ms: Sequence[float] | None = None,
    device: roofline.Device | None = None,
    fmt: str = "e8m23",
    extras: Mapping[str, Sequence[str]] | None = None,
    network_extras: Sequence[str] = (),
    offsets_ms: Sequence[float] | None = None,
    skip_kinds: Sequence[str] = (),
    tie: str | Mapping[str, str] = "none",
    loss_scale: float = 0.05,
    noise_floor: float = 0.05,
    prior: float = 0.0,
    max_nfev: int = 300,
) -> roofline.Predictor:
    """Fits a roofline predictor to measured whole-network latencies.

    Args:
      archs: the measured networks.
      latencies_ms: their latencies (ms, > 0), e.g. medians of repeats.
      spreads_ms: optional per-network spreads (std, ms) to weight rows by.
      device: the measured device's ceilings for the fitted throughputs and
        bandwidths, and its lanes and cache (``roofline.Device``). Required:
        ``roofline.RASPBERRY_PI_3B_PLUS`` for the Pi's tables,
        ``calibration.local_device()`` for this host, or a ``Device`` with the
        target's numbers (docs/latency.md, "Fitting a new device's table").
      fmt: deployment number format of the bytes term.
      extras: {kind: extra feature names} to fit (default ``DEFAULT_EXTRAS``).
      network_extras: per-network counts to fit a cost for
        (``roofline.NETWORK_EXTRAS``: framework module calls with no IR node).
      offsets_ms: known per-network times added to the model's (e.g. the
        convs' times from a kernel-level model, ``kernels``); the model fits
        the rest.
      skip_kinds: node kinds left out of the model (their time is in the
        offsets); their parameters in the result are borrowed, not fitted.
      tie: kinds sharing parameters: "none" (one set per kind), a preset of
        ``roofline.TIES`` ("compact", "single") for few measurements, or a
        {kind: group name} mapping.
      loss_scale: soft-L1 scale on log-ratio residuals (~ the error, as a
        fraction, beyond which a network counts as an outlier).
      noise_floor: relative error floor added to each row's spread in the weight.
      prior: strength of a soft pull of related kinds' parameters towards each
        other (``PRIOR_GROUPS``; relative differences, soft-L1); 0 = off.
      max_nfev: iteration budget of the non-linear refinement.

    Returns:
      The fitted ``roofline.Predictor``.

    Raises:
      ValueError: for non-positive or non-finite latencies, objects that are not
        architectures, unknown kinds, extras or ties, fewer networks than
        fitted parameters, or no device.
    """
    if not isinstance(device, roofline.Device):
        # A default would be right for one device only and fit another's
        # table against the wrong ceilings without a word.
        raise ValueError(
            f"device={device!r}: fit needs the measured device's ceilings, a "
            "jnas.latency.Device: roofline.RASPBERRY_PI_3B_PLUS for the Pi 3B+'s "
            "tables, latency.calibration.local_device() for this host, or "
            "Device(name, peak_flops, peak_bandwidth, ...) for another device "
            "(docs/latency.md, 'Fitting a new device's table')"
        )
    extras = {
        k: tuple(v)
        for k, v in (roofline.DEFAULT_EXTRAS if extras is None else extras).items()
    }
    for k, names in extras.items():
        if k not in roofline.KINDS or any(e not in roofline.EXTRAS for e in names):
            raise ValueError(
                f"extras[{k!r}] = {names!r}: kinds are "
                f"{roofline.KINDS}, extras {roofline.EXTRAS}"
            )
    network_extras = tuple(dict.fromkeys(network_extras))
    unknown = [m for m in network_extras if m not in roofline.NETWORK_EXTRAS]
    if unknown:
        raise ValueError(
            f"network_extras {unknown}: known {', '.join(roofline.NETWORK_EXTRAS)}"
        )
    tie_map = roofline.tie_map(tie)
    names = list(dict.fromkeys(tie_map[k] for k in roofline.KINDS))
    group_of_kind = np.array([names.index(tie_map[k]) for k in roofline.KINDS])
    use = np.zeros((len(names), _NX), bool)
    for k, ex in extras.items():
        for e in ex:
            use[group_of_kind[roofline.KINDS.index(k)], roofline.EXTRAS.index(e)] = True
    y, spread = _check_inputs(archs, latencies_ms, spreads_ms)
    cache: dict[str, roofline.Features] = {}
    feats = [
        cache.setdefault(a.hash, roofline.device_features(a, fmt, device))
        for a in archs
    ]
    for k in skip_kinds:
        if k not in roofline.KINDS:
            raise ValueError(f"skip_kinds: {k!r} is not one of {roofline.KINDS}")
    if skip_kinds:
        skip = [roofline.KINDS.index(k) for k in skip_kinds]
        feats = [_drop_kinds(f, skip) for f in feats]
    offset = np.zeros_like(y) if offsets_ms is None else np.asarray(offsets_ms, float)
    if offset.shape != y.shape or not np.all(np.isfinite(offset) & (offset >= 0)):
        raise ValueError(
            f"offsets_ms: need {y.size} finite values >= 0; got shape {offset.shape}"
        )
    columns = [roofline.NETWORK_EXTRAS.index(m) for m in network_extras]
    network = np.array(
        [roofline.network_features(a)[columns] for a in archs], float
    ).reshape(len(archs), len(columns))
    design = _Design(feats, group_of_kind, use, network)
    n_par = int(design.active.sum())
    if n_par > len(y):
        raise ValueError(
            f"{len(y)} measurements cannot determine {n_par} parameters "
            f"({int(design.present.sum())} parameter groups): measure at "
            f"least {n_par} networks, or tie kinds (tie='compact' or "
            "'single') / fit fewer extras"
        )
    weight = 1.0 / ((spread / y) ** 2 + noise_floor**2)
    sw = np.sqrt(weight / weight.mean())
    lb = design.bounds(device)
    act = design.active
    theta = lb.copy()
    pairs = _prior_pairs(design, group_of_kind) if prior > 0 else np.zeros((0, 2), int)
    eps = np.maximum(lb, 1e-6)[pairs[:, 0]]
    root = math.sqrt(prior)

    power = [math.inf]

    def residual(x):
        theta[act] = x
        data = sw * np.log(
            np.maximum(design.predict(theta, power[0]) + offset, 1e-12) / y
        )
        u, v = theta[pairs[:, 0]], theta[pairs[:, 1]]
        return np.concatenate([data, root * (u - v) / (u + v + eps)])

    def jacobian(x):
        theta[act] = x
        pred = np.maximum(design.predict(theta, power[0]) + offset, 1e-12)
        jp = np.zeros((len(pairs), theta.size))
        u, v = theta[pairs[:, 0]], theta[pairs[:, 1]]
        den = (u + v + eps) ** 2
        jp[np.arange(len(pairs)), pairs[:, 0]] = root * (2 * v + eps) / den
        jp[np.arange(len(pairs)), pairs[:, 1]] = -root * (2 * u + eps) / den
        jd = design.jacobian(theta, power[0]) * (sw / pred)[:, None]
        return np.concatenate([jd, jp])[:, act]

    # The max() makes the problem non-convex: start from the additive relaxation
    # and from "every node compute-bound" / "every node memory-bound", and keep
    # the best optimum. The matrices are small (networks x parameters): a
    # multi-threaded BLAS only adds fork/join, 10x slower on a loaded 2-core host.
    with _single_threaded_blas():
        result = _refine(
            residual,
            jacobian,
            design,
            np.maximum(y - offset, 0.05 * y),
            sw,
            lb,
            act,
            power,
            loss_scale,
            max_nfev,
        )
    theta[act] = np.maximum(result.x, lb[act])
    pred = design.predict(theta) + offset
    info = {
        "networks": len(y),
        "parameters": n_par,
        "loss_scale": loss_scale,
        "noise_floor": noise_floor,
        "prior": prior,
        "weighted_by_spread": spreads_ms is not None,
        "train_median_abs_error": float(np.median(np.abs(pred / y - 1))),
        "optimizer": f"least_squares soft_l1: {result.message}",
        "tie": {k: tie_map[k] for k in roofline.KINDS},
        "extras": {k: list(v) for k, v in extras.items()},
        "network_extras": list(network_extras),
    }
    return _predictor(
        theta, design, group_of_kind, use, device, fmt, info, network_extras
    )


def _drop_kinds(f: roofline.Features, kinds: Sequence[int]) -> roofline.Features:
    keep = ~np.isin(f.kind, kinds)
    return roofline.Features(f.kind[keep], f.flops[keep], f.bytes[keep], f.extras[keep])


def _refine(residual, jacobian, design, y, sw, lb, act, power, loss_scale, max_nfev):
    """Runs the continuation from every start; returns the best optimum."""
    from scipy import optimize  # only fitting needs it (a second per process)

    result = None
    for x0 in _starts(design, y, sw, lb, act):
        for power[0] in POWERS:  # smooth max first, then the hard roofline
            run = optimize.least_squares(
                residual,
                x0,
                jac=jacobian,
                bounds=(lb[act], np.inf),
                loss="soft_l1",
                f_scale=loss_scale,
                x_scale="jac",
                max_nfev=max_nfev,
            )
            x0 = np.maximum(run.x, lb[act] * (1 + 1e-9))
        if result is None or run.cost < result.cost:
            result = run
    return result


def _single_threaded_blas():
    try:
        import threadpoolctl  # installed with scikit-learn
    except ImportError:
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(1)


def _prior_pairs(design: _Design, group_of_kind: np.ndarray) -> np.ndarray:
    """Index pairs of (active) parameters pulled together by the prior."""
    g, pairs = design.g, []
    offset = {"a": 0, "b": g, "c": 2 * g}
    cliques = [
        [offset[part] + group_of_kind[roofline.KINDS.index(k)] for k in kinds]
        for part, kinds in PRIOR_GROUPS
    ]
    cliques += [[3 * g + grp * _NX + j for grp in range(g)] for j in range(_NX)]
    for clique in cliques:
        idx = [i for i in dict.fromkeys(clique) if design.active[i]]
        pairs += [(i, j) for n, i in enumerate(idx) for j in idx[n + 1 :]]
    return np.array(pairs, int).reshape(-1, 2)


def _starts(design: _Design, y, sw, lb, act) -> list[np.ndarray]:
    """Initial points: bounded NNLS on relative error of three linear models."""
    g = design.g
    x = design.additive()
    starts = []
    for keep in ("both", "compute", "memory"):
        xs = x.copy()
        if keep == "compute":
            xs[:, g : 2 * g] = 0  # bandwidth never binds
        elif keep == "memory":
            xs[:, :g] = 0  # throughput never binds
        starts.append(_nnls(xs[:, act], y, sw, lb[act]))
    return starts


def _nnls(x: np.ndarray, y: np.ndarray, sw: np.ndarray, lb: np.ndarray):
    """Bounded NNLS of sum(x * theta) ~ y on relative error."""
    from scipy import optimize  # only fitting needs it (a second per process)

    a = x / y[:, None] * sw[:, None]
    scale = np.abs(a).max(0)
    unused = scale == 0
    scale[unused] = 1.0
    res = optimize.lsq_linear(a / scale, sw, bounds=(lb * scale, np.inf), method="bvls")
    theta = np.where(unused, lb, res.x / scale)
    # Strictly inside the bounds, so the refinement can move every parameter.
    return np.maximum(theta, lb * (1 + 1e-6) + 1e-12)


def _predictor(theta, design, group_of_kind, use, device, fmt, info, network_extras):
    g = design.g
    a, b, c = theta[:g], theta[g : 2 * g], theta[2 * g : 3 * g]
    e = theta[3 * g : 3 * g + g * _NX].reshape(g, _NX)
    c0 = float(theta[3 * g + g * _NX])
    d = {m: float(theta[3 * g + g * _NX + 1 + i]) for i, m in enumerate(network_extras)}
    kinds = {}
    for k, grp in zip(roofline.KINDS, group_of_kind, strict=True):
        entry = {
            "flops_per_s": 1e3 / a[grp],
            "bytes_per_s": 1e3 / b[grp],
            "call_ms": float(c[grp]),
        }
        for j, name in enumerate(roofline.EXTRAS):
            if use[grp, j]:
                entry[f"{name}_ms"] = float(e[grp, j])
        kinds[k] = entry
    fitted = {
        k
        for k, grp in zip(roofline.KINDS, group_of_kind, strict=True)
        if design.present[grp]
    }
    borrowed = {}
    for k in roofline.KINDS:
        src, seen = roofline.BORROW.get(k), {k}
        while k not in fitted and src is not None and src not in fitted | seen:
            seen.add(src)
            src = roofline.BORROW.get(src)
        if k not in fitted and src in fitted:
            borrowed[k] = src
            kinds[k] = {key: kinds[src].get(key, 0.0) for key in kinds[k]}
    info = dict(info, fitted_kinds=sorted(fitted))
    return roofline.Predictor(device, str(fmt), kinds, c0, borrowed, info, d)


def check_physical(predictor: roofline.Predictor) -> list[str]:
    """Returns violations of the device ceilings (empty when plausible)."""
    bad = []
    for k, p in predictor.kinds.items():
        if p["flops_per_s"] > predictor.device.peak_flops * (1 + 1e-9):
            bad.append(f"{k}: {p['flops_per_s']:.3g} FLOP/s above peak")
        if p["bytes_per_s"] > predictor.device.peak_bandwidth * (1 + 1e-9):
            bad.append(f"{k}: {p['bytes_per_s']:.3g} B/s above the bandwidth bound")
        bad += [f"{k}.{key} < 0" for key, v in p.items() if not v >= 0]
    if not (math.isfinite(predictor.network_ms) and predictor.network_ms >= 0):
        bad.append(f"network_ms = {predictor.network_ms}")
    bad += [
        f"network_extras.{m} = {v}"
        for m, v in predictor.network_extras.items()
        if not (math.isfinite(v) and v >= 0)
    ]
    return bad
