"""Kernel-level calibration: convolutions timed alone, a per-shape time model,
and a network predictor that sums it.

On this machine a network's time is the sum of its kernels' times (convs timed
alone and summed predict 96-100% of networks within 10%,
``benchmarks/latency_additivity.py``), but the per-kind roofline cannot tell
every conv's time from its shape: Eigen's and oneDNN's cost is irregular in the
channel counts. nn-Meter's answer is a learned per-kernel model. Here:

- ``conv_key`` names a conv by everything its time depends on (channels,
  kernel, input size, padding, stride, groups); ``measure_convs`` times each
  distinct one alone, as the calibration times networks (one pinned XLA thread,
  minimum of repeats);
- ``ConvModel``: per conv kind a non-negative linear base (ms = a MACs + b
  patch elements + c output elements + d, fitted on relative error), times
  exp(gradient-boosted trees on the log-residual) from scikit-learn, whose
  trees are stored as JSON arrays (``Trees``; no pickle) and evaluated with
  NumPy exactly as scikit-learn does;
- ``KernelPredictor``: a roofline predictor for everything but the convs
  (refitted with the convs' time as a known offset), plus ``scale`` x the conv
  model's sum and ``per_conv_ms`` per conv (the dispatch a conv timed alone
  pays and a network does not), fitted on the calibration networks' totals.

``fit_kernel_predictor`` builds it; ``launch.calibrate`` uses it where its
out-of-fold error on the calibration networks beats the whole-network fit's
(``calibration.fit_and_evaluate``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jnas import arch as arch_lib
from jnas.latency import roofline

FORMAT_VERSION = 1
CONV_KINDS = ("conv_dense", "conv_1x1", "conv_depthwise", "conv_grouped")
# Features of the trees: channel counts per group and their residues modulo
# the SIMD widths (where Eigen's and oneDNN's kernels change code path), the
# kernel, the output size, stride, groups and the log work.
TREE_FEATURES = (
    "log2_cin_per_group",
    "log2_cout_per_group",
    "cin_per_group_mod8",
    "cout_per_group_mod8",
    "cout_per_group_mod16",
    "kh",
    "kw",
    "log2_out_pixels",
    "stride",
    "log2_groups",
    "log2_macs",
    "kind",
)


def conv_key(arch: arch_lib.Arch, node: arch_lib.Node) -> tuple:
    """Returns (c_in, c_out, kh, kw, h, w, pad_h, pad_w, stride_h, stride_w,
    groups, bias) of a conv node: everything its time alone depends on."""
    h, w, c_in = arch.shapes[node.inputs[0]]
    kh, kw = node.attr("kernel")
    ph, pw = node.attr("padding")
    sh, sw = node.attr("stride")
    return (
        int(c_in),
        int(node.attr("out_channels")),
        int(kh),
        int(kw),
        int(h),
        int(w),
        int(ph),
        int(pw),
        int(sh),
        int(sw),
        int(arch.groups(node)),
        bool(node.attr("bias")),
    )


def conv_keys(arch: arch_lib.Arch) -> list[tuple]:
    """The ``conv_key`` of every conv node of ``arch``, in node order."""
    return [conv_key(arch, n) for n in arch.nodes if n.op == "conv"]


def _kind(key: tuple) -> str:
    c_in, _, kh, kw, *_, groups, _ = key
    if groups == 1:
        return "conv_1x1" if (kh, kw) == (1, 1) else "conv_dense"
    return "conv_depthwise" if groups == c_in else "conv_grouped"


def _sizes(key: tuple) -> tuple[float, float, float, float]:
    """(MACs, patch elements, output elements, output pixels) of a conv."""
    c_in, c_out, kh, kw, h, w, ph, pw, sh, sw, groups, _ = key
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    pixels = oh * ow
    macs = pixels * c_out * (c_in // groups) * kh * kw
    return float(macs), float(c_in * kh * kw * pixels), float(c_out * pixels), pixels


def tree_features(keys: Sequence[tuple]) -> np.ndarray:
    """(n, len(TREE_FEATURES)) float64 features of conv keys."""
    rows = []
    for key in keys:
        c_in, c_out, kh, kw, *_, sh, _sw, groups, _ = key
        macs, _, _, pixels = _sizes(key)
        cin_g, cout_g = c_in // groups, c_out // groups
        rows.append(
            (
                math.log2(cin_g),
                math.log2(cout_g),
                cin_g % 8,
                cout_g % 8,
                cout_g % 16,
                kh,
                kw,
                math.log2(pixels),
                sh,
                math.log2(groups),
                math.log2(max(macs, 1.0)),
                CONV_KINDS.index(_kind(key)),
            )
        )
    return np.array(rows, float).reshape(len(rows), len(TREE_FEATURES))


@dataclasses.dataclass(frozen=True)
class Trees:
    """Gradient-boosted regression trees as plain arrays (JSON, no pickle).

    prediction = init + rate * sum over trees of the leaf value reached, going
    left where x[feature] <= threshold, with x rounded to float32 first (as
    scikit-learn's trees compare).
    """

    init: float
    rate: float
    left: tuple[tuple[int, ...], ...]
    right: tuple[tuple[int, ...], ...]
    feature: tuple[tuple[int, ...], ...]
    threshold: tuple[tuple[float, ...], ...]
    value: tuple[tuple[float, ...], ...]

    @classmethod
    def from_sklearn(cls, model: Any) -> Trees:
        """Exports a fitted ``sklearn.ensemble.GradientBoostingRegressor``."""
        trees = [t[0].tree_ for t in model.estimators_]
        return cls(
            float(np.ravel(model.init_.constant_)[0]),
            float(model.learning_rate),
            tuple(tuple(int(v) for v in t.children_left) for t in trees),
            tuple(tuple(int(v) for v in t.children_right) for t in trees),
            tuple(tuple(int(v) for v in t.feature) for t in trees),
            tuple(tuple(float(v) for v in t.threshold) for t in trees),
            tuple(tuple(float(v) for v in t.value[:, 0, 0]) for t in trees),
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Evaluates the trees on rows of ``x``."""
        x = np.asarray(x, np.float32).astype(np.float64)
        out = np.full(len(x), self.init)
        rows = np.arange(len(x))
        for left, right, feat, thr, val in zip(
            self.left, self.right, self.feature, self.threshold, self.value, strict=True
        ):
            left, right = np.array(left), np.array(right)
            feat, thr, val = np.array(feat), np.array(thr), np.array(val)
            node = np.zeros(len(x), int)
            while True:
                inner = left[node] != -1
                if not inner.any():
                    break
                go_left = x[rows, np.maximum(feat[node], 0)] <= thr[node]
                step = np.where(go_left, left[node], right[node])
                node = np.where(inner, step, node)
            out += self.rate * val[node]
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trees:
        fields = ("left", "right", "feature", "threshold", "value")
        arrays = {f: tuple(tuple(t) for t in data[f]) for f in fields}
        lengths = {len(arrays[f]) for f in fields}
        if len(lengths) != 1:
            raise ValueError("kernel trees: arrays of different tree counts")
        for i in range(len(arrays["left"])):
            n = len(arrays["left"][i])
            if any(len(arrays[f][i]) != n for f in fields):
                raise ValueError(f"kernel trees: tree {i} has ragged arrays")
            for f in ("left", "right"):
                if any(not -1 <= c < n for c in arrays[f][i]):
                    raise ValueError(f"kernel trees: tree {i} {f} out of range")
            if any(not -2 <= c < len(TREE_FEATURES) for c in arrays["feature"][i]):
                raise ValueError(f"kernel trees: tree {i} feature out of range")
        return cls(float(data["init"]), float(data["rate"]), **arrays)


@dataclasses.dataclass(frozen=True)
class ConvModel:
    """Time of one conv alone (ms) from its key.

    Attributes:
      base: {kind: [ms per MAC, ms per patch element, ms per output element,
        ms per call]} (non-negative; kinds never measured borrow along
        ``roofline.BORROW``).
      trees: boosted trees on the log-residual (None: the base alone).
    """

    base: Mapping[str, tuple[float, float, float, float]]
    trees: Trees | None

    def predict_ms(self, keys: Sequence[tuple]) -> np.ndarray:
        if not keys:
            return np.zeros(0)
        base = np.array(
            [np.dot(self.base[_kind(k)], (*_sizes(k)[:3], 1.0)) for k in keys]
        )
        if self.trees is None:
            return base
        return base * np.exp(self.trees.predict(tree_features(keys)))


def fit_conv_model(
    keys: Sequence[tuple],
    times_ms: Sequence[float],
    *,
    trees: bool = True,
    seed: int = 0,
) -> ConvModel:
    """Fits the per-shape conv model to convs timed alone.

    Args:
      keys: ``conv_key`` of each measured conv (distinct).
      times_ms: their times alone (ms, > 0).
      trees: add boosted trees on the log-residual of the linear base.
      seed: the trees' subsampling seed.
    """
    from scipy import optimize  # only fitting needs it (a second per process)

    y = np.asarray(times_ms, float)
    if len(keys) != len(y) or not len(y):
        raise ValueError(f"{len(keys)} conv keys but {len(y)} times")
    if not np.all(np.isfinite(y) & (y > 0)):
        raise ValueError("conv times must be finite and > 0 ms")
    kinds = np.array([_kind(k) for k in keys])
    sizes = np.array([(*_sizes(k)[:3], 1.0) for k in keys])
    base: dict[str, tuple[float, float, float, float]] = {}
    for kind in CONV_KINDS:
        m = kinds == kind
        if m.sum() >= 4:
            a = sizes[m] / y[m, None]  # relative error
            scale = a.max(0)
            scale[scale == 0] = 1
            coef, _ = optimize.nnls(a / scale, np.ones(m.sum()))
            base[kind] = tuple(float(c) for c in coef / scale)
    if not base:
        raise ValueError("kernel model: need at least 4 convs of one kind")
    for kind in CONV_KINDS:  # borrow for kinds never (or too rarely) measured
        src, seen = kind, {kind}
        while src not in base:
            src = roofline.BORROW.get(src, "conv_dense")
            if src in seen:
                src = next(iter(base))
            seen.add(src)
        base.setdefault(kind, base[src])
    model = ConvModel(base, None)
    if not trees or len(y) < 20:
        return model
    from sklearn.ensemble import GradientBoostingRegressor

    resid = np.log(y / np.maximum(model.predict_ms(keys), 1e-9))
    gbr = GradientBoostingRegressor(
        n_estimators=200,
        max_depth=3,
        learning_rate=0.05,
        subsample=0.8,
        min_samples_leaf=3,
        random_state=seed,
    ).fit(tree_features(keys), resid)
    return ConvModel(base, Trees.from_sklearn(gbr))


@dataclasses.dataclass(frozen=True)
class KernelPredictor:
    """A network's latency from its kernels: the conv model summed over its
    convs, plus a roofline predictor for every other node.

    predict = roofline (non-conv nodes + per-network terms)
              + scale * sum(conv model) + per_conv_ms * convs
    """

    roofline: roofline.Predictor
    convs: ConvModel
    scale: float
    per_conv_ms: float
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def device(self) -> roofline.Device:
        return self.roofline.device

    def predict(self, arch: arch_lib.Arch) -> float:
        """Returns the predicted batch-1 latency of ``arch`` in ms."""
        keys = conv_keys(arch)
        convs = float(self.convs.predict_ms(keys).sum())
        rest = self.roofline.predict(arch, skip_kinds=CONV_KINDS)
        return rest + self.scale * convs + self.per_conv_ms * len(keys)

    def predict_many(self, archs: Sequence[arch_lib.Arch]) -> np.ndarray:
        return np.array([self.predict(a) for a in archs])

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model": "kernel",
            "roofline": self.roofline.to_dict(),
            "conv_base": {k: list(v) for k, v in self.convs.base.items()},
            "conv_trees": None
            if self.convs.trees is None
            else self.convs.trees.to_dict(),
            "scale": self.scale,
            "per_conv_ms": self.per_conv_ms,
            "info": dict(self.info),
        }

    def save(self, path: str | Path) -> None:
        """Writes the predictor as JSON (no pickle) to ``path``."""
        text = json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)
        Path(path).write_text(text + "\n")


def from_dict(data: Mapping[str, Any]) -> KernelPredictor:
    """Rebuilds a ``KernelPredictor`` from ``to_dict`` output.

    Raises:
      ValueError: naming the field when the data is malformed.
    """
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"kernel predictor format_version {data.get('format_version')!r}; "
            f"supported: {FORMAT_VERSION}"
        )
    base = {}
    for kind in CONV_KINDS:
        coef = data["conv_base"].get(kind)
        if (
            not isinstance(coef, list)
            or len(coef) != 4
            or not all(isinstance(c, int | float) and 0 <= c < math.inf for c in coef)
        ):
            raise ValueError(
                f"kernel predictor: conv_base.{kind} must be 4 numbers >= 0;"
                f" got {coef!r}"
            )
        base[kind] = tuple(float(c) for c in coef)
    trees = data.get("conv_trees")
    for field in ("scale", "per_conv_ms"):
        v = data.get(field)
        if not (isinstance(v, int | float) and 0 <= v < math.inf):
            raise ValueError(
                f"kernel predictor: {field} must be a number >= 0; got {v!r}"
            )
    return KernelPredictor(
        roofline.from_dict(data["roofline"]),
        ConvModel(base, None if trees is None else Trees.from_dict(trees)),
        float(data["scale"]),
        float(data["per_conv_ms"]),
        dict(data.get("info", {})),
    )


def fit_kernel_predictor(
    archs: Sequence[arch_lib.Arch],
    latencies_ms: Sequence[float],
    whole: roofline.Predictor,
    conv_times: Mapping[tuple, float],
    *,
    fit_kwargs: Mapping[str, Any] | None = None,
    trees: bool = True,
) -> KernelPredictor:
    """Fits the kernel-level predictor to calibration networks.

    1. The conv model on every conv of ``archs`` timed alone.
    2. ``scale`` and ``per_conv_ms`` by non-negative least squares on relative
       error, with the non-conv part taken from ``whole``.
    3. The non-conv roofline refitted with the conv part as a known offset
       (``fitting.fit(offsets_ms=..., skip_kinds=CONV_KINDS)``), so the other
       kinds stop absorbing what the whole-network fit got wrong about convs;
       then ``scale`` and ``per_conv_ms`` once more.

    Args:
      archs, latencies_ms: the calibration networks and their measured times.
      whole: the whole-network roofline fit of the same networks (its device
        and format are kept; its non-conv part starts step 2).
      conv_times: {conv_key: ms alone} for (at least) every conv of ``archs``.
      fit_kwargs: ``fitting.fit`` options of the non-conv refit (the
        whole-network fit's, e.g. ``recipe.Options.fit_kwargs()``).
      trees: boosted trees on the conv model's residual.
    """
    from scipy import optimize  # only fitting needs it (a second per process)

    from jnas.latency import fitting

    keys = sorted({k for a in archs for k in conv_keys(a)})
    missing = [k for k in keys if k not in conv_times]
    if missing:
        raise ValueError(f"{len(missing)} convs of the networks were not timed alone")
    convs = fit_conv_model(keys, [conv_times[k] for k in keys], trees=trees)
    y = np.asarray(latencies_ms, float)
    per_net = [conv_keys(a) for a in archs]
    total = np.array([convs.predict_ms(k).sum() for k in per_net])
    count = np.array([len(k) for k in per_net], float)

    def scales(rest_model):
        rest = np.array([rest_model.predict(a, skip_kinds=CONV_KINDS) for a in archs])
        # y - rest ~ scale * total + per_conv * count, on relative error, >= 0.
        coef, _ = optimize.nnls(np.c_[total, count] / y[:, None], 1 - rest / y)
        return float(coef[0]), float(coef[1])

    scale, per_conv = scales(whole)
    kwargs = dict(fit_kwargs or {})
    kwargs.pop("extras", None)  # conv extras: the convs are not in this fit
    rest_model = fitting.fit(
        archs,
        y,
        device=whole.device,
        fmt=whole.fmt,
        offsets_ms=scale * total + per_conv * count,
        skip_kinds=CONV_KINDS,
        extras={},
        **kwargs,
    )
    scale, per_conv = scales(rest_model)
    return KernelPredictor(
        rest_model,
        convs,
        scale,
        per_conv,
        {"networks": len(y), "convs_timed": len(keys), "trees": trees},
    )


def load(path: str | Path) -> roofline.Predictor | KernelPredictor:
    """Reads a predictor file: a roofline (``Predictor.save``) or a kernel-level
    one (``KernelPredictor.save``), told apart by its ``model`` field."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if isinstance(data, Mapping) and data.get("model") == "kernel":
        return from_dict(data)
    return roofline.from_dict(data)


def out_of_fold(
    entries: Sequence[Any],
    options: Any,
    device: roofline.Device,
    conv_times: Mapping[tuple, float],
    *,
    folds: int = 4,
    seed: int = 0,
    weight_spreads: bool = False,
) -> np.ndarray:
    """k-fold out-of-fold predictions of the kernel-level predictor (ms).

    The folds are ``recipe.out_of_fold``'s (same seed, same assignment), so
    the two predictors are compared on the same rows; each fold's conv model
    sees only the convs of its training networks.
    """
    from jnas.latency import recipe

    fold = recipe.fold_of(entries, folds, seed)
    pred = np.empty(len(entries))
    for k in range(folds):
        train = [e for e, f in zip(entries, fold, strict=True) if f != k]
        test = np.flatnonzero(fold == k)
        whole = recipe.fit_options(
            train, device, options, weight_spreads=weight_spreads
        )
        model = fit_kernel_predictor(
            [e.arch for e in train],
            [e.latency_ms for e in train],
            whole,
            conv_times,
            fit_kwargs=options.fit_kwargs(),
        )
        pred[test] = model.predict_many([entries[i].arch for i in test])
    return pred
