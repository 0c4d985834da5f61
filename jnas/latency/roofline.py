"""The roofline latency model: per-node features and the parameterised predictor.

A network's latency is predicted as a sum over its IR nodes:

    node time    = max(F / P_k, B / BW_k) + c_k + sum_j e_kj * X_j
    network time = sum over nodes + c_0 + sum_m d_m * Z_m

for the node's kind k (``KINDS``, from ``cost.NodeCost.kind``): F its FLOPs
(a multiply-accumulate is one FLOP, the release's convention), B the bytes it
moves in the deployment format, P_k a throughput, BW_k a bandwidth, c_k a
per-call overhead, and X_j optional extra features (``EXTRAS``: im2col, runs,
groups, channels, inputs, vector, unaligned, spill) with non-negative costs
e_kj. Z_m are optional per-network counts (``NETWORK_EXTRAS``: module calls
a framework makes that the IR has no node for) with costs d_m >= 0. What each
feature counts, and why, is in docs/latency.md.

This module holds no fitting code (``jnas.latency.fitting``) and imports JAX
only through ``jnas.precision``, lazily.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jnas import arch as arch_lib
from jnas import cost

FORMAT_VERSION = 1
KINDS = (
    "conv_dense",
    "conv_1x1",
    "conv_depthwise",
    "conv_grouped",
    "linear",
    "maxpool",
    "avgpool",
    "batchnorm",
    "relu",
    "add",
    "concat",
    "flatten",
)
EXTRAS = (
    "groups",
    "im2col",
    "runs",
    "channels",
    "inputs",
    "spill",
    "vector",
    "unaligned",
)
# Per-network counts (``network_features``): framework calls with no IR node.
NETWORK_EXTRAS = ("containers", "shortcuts")
# Extras fitted by default: GEMM-based convs pay for building the patch matrix
# (per element and per contiguous piece), and frameworks that loop over groups
# pay one call per group.
DEFAULT_EXTRAS = {
    "conv_dense": ("im2col", "runs"),
    "conv_1x1": ("im2col", "runs"),
    "conv_depthwise": ("groups", "im2col", "runs"),
    "conv_grouped": ("groups", "im2col", "runs"),
}
# Where a kind that calibration never saw borrows its parameters (first fitted
# kind along the chain): the closest implementation, not the closest name.
BORROW = {
    "conv_1x1": "conv_dense",
    "conv_dense": "conv_1x1",
    "conv_grouped": "conv_dense",
    "conv_depthwise": "conv_grouped",
    "linear": "conv_1x1",
    "maxpool": "avgpool",
    "avgpool": "maxpool",
    "batchnorm": "relu",
    "relu": "add",
    "add": "relu",
    "concat": "add",
    "flatten": "concat",
}

# Kinds sharing one parameter set, for calibrations with few measurements.
_CONV = ("conv_dense", "conv_1x1", "linear")
TIES = {
    "none": {k: k for k in KINDS},
    "compact": {
        k: "conv"
        if k in _CONV
        else "conv_grouped"
        if k.startswith("conv")
        else "elementwise"
        for k in KINDS
    },
    "single": {k: "all" for k in KINDS},
}


def tie_map(tie: str | Mapping[str, str]) -> dict[str, str]:
    """Returns {kind: parameter group} for a ``TIES`` preset or a mapping.

    Raises:
      ValueError: for an unknown preset or a mapping that misses a kind.
    """
    if isinstance(tie, str):
        if tie not in TIES:
            raise ValueError(f"tie={tie!r}; presets: {', '.join(TIES)}")
        return dict(TIES[tie])
    missing = [k for k in KINDS if k not in tie]
    if missing:
        raise ValueError(f"tie mapping misses kinds {missing}")
    return {k: str(tie[k]) for k in KINDS}


@dataclasses.dataclass(frozen=True)
class Device:
    """The physical ceilings that fitted parameters must respect.

    Attributes:
      name: human-readable description.
      peak_flops: FLOP/s with a MAC counted as one FLOP (all cores).
      peak_bandwidth: bytes/s, an upper bound on any kind's fitted bandwidth.
      channel_lanes: SIMD lanes along the channel axis of the device's conv
        kernels (8 for float32 AVX2 with NHWC, as XLA); 1 where kernels
        vectorise over space (PyTorch's NCHW). The "im2col" feature pads each
        group's input channels to a multiple of it: a 3-channel stem fills
        3 of 8 lanes.
      cache_bytes: last-level cache size; the "spill" feature counts the bytes
        of a node's traffic beyond it (0: all bytes spill).
      pack_lanes: vector width (float32 lanes) of the conv library's patch
        packing; the "unaligned" feature counts the patch elements of convs
        whose per-group input channels are not a multiple of it (1: none).
    """

    name: str
    peak_flops: float
    peak_bandwidth: float
    channel_lanes: int = 1
    cache_bytes: int = 0
    pack_lanes: int = 1

    def __post_init__(self):
        for field in ("channel_lanes", "pack_lanes"):
            lanes = getattr(self, field)
            if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
                raise ValueError(f"Device.{field} must be an int >= 1; got {lanes!r}")
        cache = self.cache_bytes
        if isinstance(cache, bool) or not isinstance(cache, int) or cache < 0:
            raise ValueError(f"Device.cache_bytes must be an int >= 0; got {cache!r}")
        for field in ("peak_flops", "peak_bandwidth"):
            value = getattr(self, field)
            if not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise ValueError(
                    f"Device.{field} must be a positive number; got {value!r}"
                )


# 4 Cortex-A53 at 1.4 GHz, one MAC per cycle and core (the paper's 5.6 GFLOPS);
# LPDDR2 at 900 MT/s on a 32-bit bus = 3.6 GB/s theoretical; 512 KiB shared L2.
RASPBERRY_PI_3B_PLUS = Device(
    "Raspberry Pi 3B+ (4x Cortex-A53 @ 1.4 GHz)", 5.6e9, 3.6e9, cache_bytes=512 * 1024
)


class Features(NamedTuple):
    """Per-node model inputs of one network (the input node is left out).

    Attributes:
      kind: (n,) int, index into ``KINDS``.
      flops: (n,) float64, F in the module's convention.
      bytes: (n,) float64, B in the deployment format.
      extras: (n, len(EXTRAS)) float64, the ``EXTRAS`` columns.
    """

    kind: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray
    extras: np.ndarray


def features(
    arch: arch_lib.Arch,
    fmt: Any = "e8m23",
    channel_lanes: int = 1,
    cache_bytes: int = 0,
    pack_lanes: int = 1,
) -> Features:
    """Returns the per-node features of ``arch``.

    Args:
      arch: the architecture.
      fmt: deployment number format of weights and activations (a
        ``precision.FloatFormat`` or its text form; default float32).
      channel_lanes: ``Device.channel_lanes`` (the "im2col" padding).
      cache_bytes: ``Device.cache_bytes`` (the "spill" threshold).
      pack_lanes: ``Device.pack_lanes`` (the "unaligned" test).

    Returns:
      The ``Features`` of every node except the input.

    Raises:
      ValueError: for a node kind the model does not know.
    """
    from jnas import precision  # imports JAX; keep module import light

    fmt = precision.as_format(fmt)
    shapes = arch.shapes
    rows = []
    for node, c in zip(arch.nodes, cost.node_costs(arch), strict=True):
        if node.op == "input":
            continue
        if c.kind not in KINDS:
            raise ValueError(
                f"node '{node.name}': kind {c.kind!r} has no latency "
                f"model; known: {', '.join(KINDS)}"
            )
        out = shapes[node.name]
        spatial = out[0] * out[1] if len(out) == 3 else 1
        flops, groups, im2col, runs, vector, unaligned = c.flops, 0, 0, 0, 0, 0
        if node.op == "conv":
            kh, kw = node.attr("kernel")
            groups = arch.groups(node)
            runs = groups * spatial * kh
            c_in = shapes[node.inputs[0]][-1]
            patch = c_in * kh * kw * spatial  # the GEMM's input, as stored
            per_group = -(-c_in // groups // channel_lanes) * channel_lanes
            im2col = groups * per_group * kh * kw * spatial  # as the SIMD lanes see it
            depth = c_in // groups * kh * kw * spatial  # MACs per output channel
            vector = groups * depth * _row_blocks(out[-1] // groups, channel_lanes)
            if (c_in // groups) % pack_lanes:
                unaligned = patch
        elif node.op == "relu":
            flops = c.out_elems
        elif node.op in ("maxpool", "avgpool"):
            kh, kw = node.attr("kernel")
            flops = c.out_elems * kh * kw
        elif node.op == "add":
            flops = c.out_elems * (len(node.inputs) - 1)
        read = c.params - (1 if node.op == "batchnorm" else 0)  # no BN counter
        ins = [_numel(shapes[i]) for i in node.inputs]
        if node.op == "conv":
            ins = [patch]
        nbytes = sum(precision.storage_bytes(n, fmt) for n in (read, *ins, c.out_elems))
        rows.append(
            (
                KINDS.index(c.kind),
                flops,
                nbytes,
                (
                    groups,
                    im2col,
                    runs,
                    out[-1],
                    len(node.inputs),
                    max(0, nbytes - cache_bytes),
                    vector,
                    unaligned,
                ),
            )
        )
    kind, flops, nbytes, extras = zip(*rows, strict=True)
    return Features(
        np.array(kind),
        np.array(flops, float),
        np.array(nbytes, float),
        np.array(extras, float).reshape(len(rows), len(EXTRAS)),
    )


def network_features(arch: arch_lib.Arch) -> np.ndarray:
    """Returns the ``NETWORK_EXTRAS`` counts of ``arch`` as a float array.

    - ``containers``: distinct proper prefixes of the dotted node names
      ("stage0", "stage0.block0", "stage0.block0.shortcut", ...). An eager
      framework calls each such container module (``nn.Sequential``, a block's
      ``forward``) once per inference, at a dispatch cost that no IR node pays.
    - ``shortcuts``: inputs of ``add`` nodes taken straight from outside the
      add's own block (an identity shortcut): in PyTorch code an empty
      ``nn.Sequential`` call, in XLA nothing.
    """
    prefixes = set()
    for node in arch.nodes:
        parts = node.name.split(".")
        prefixes.update(".".join(parts[:i]) for i in range(1, len(parts)))
    shortcuts = 0
    for node in arch.nodes:
        if node.op != "add":
            continue
        block = node.name.rsplit(".", 1)[0] + "." if "." in node.name else ""
        shortcuts += sum(not i.startswith(block) for i in node.inputs)
    return np.array([len(prefixes), shortcuts], float)


def _row_blocks(rows: int, lanes: int) -> int:
    """SIMD instructions per multiply-accumulate step for ``rows`` output channels.

    A model of Eigen's GEMM kernel (XLA's CPU convolutions): output channels
    go in full vectors of ``lanes``, then at most one half vector, then one at
    a time. With 16 lanes 64 channels take 4 instructions, 7 channels 7, 12
    channels 5 (one half vector and 4 singles). Chosen because it fitted better
    in cross-validation (docs/latency.md), not read from Eigen's source.
    """
    if lanes < 2:
        return rows
    half = lanes // 2
    return rows // lanes + (rows % lanes >= half) + rows % half


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def device_features(arch: arch_lib.Arch, fmt: Any, device: Device) -> Features:
    """``features`` of ``arch`` with the lanes and cache of ``device``."""
    return features(
        arch, fmt, device.channel_lanes, device.cache_bytes, device.pack_lanes
    )


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A fitted roofline latency model (see the module docstring).

    Attributes:
      device: the ceilings the fit respected.
      fmt: deployment format of the bytes term (text form, e.g. "e8m23").
      kinds: {kind: {"flops_per_s": P_k, "bytes_per_s": BW_k, "call_ms": c_k,
        "<extra>_ms": e_kj, ...}} for every kind in ``KINDS``.
      network_ms: c_0, the per-network overhead.
      borrowed: {kind: source kind} for kinds absent from the calibration data.
      info: provenance and fit diagnostics (JSON-ready).
      network_extras: {name: d_m, ms per unit} for the fitted
        ``NETWORK_EXTRAS`` (absent ones cost nothing).
    """

    device: Device
    fmt: str
    kinds: Mapping[str, Mapping[str, float]]
    network_ms: float
    borrowed: Mapping[str, str] = dataclasses.field(default_factory=dict)
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    network_extras: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def vector(self) -> np.ndarray:
        """Returns (len(KINDS), 3 + len(EXTRAS)): 1/P, 1/BW, c, e per kind (ms)."""
        rows = []
        for k in KINDS:
            p = self.kinds[k]
            rows.append(
                [
                    1e3 / p["flops_per_s"],
                    1e3 / p["bytes_per_s"],
                    p["call_ms"],
                    *(p.get(f"{e}_ms", 0.0) for e in EXTRAS),
                ]
            )
        return np.array(rows)

    def node_times(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        """Returns (per-node ms, per-node compute-bound flag) for ``feats``."""
        v = self.vector()[feats.kind]
        compute, memory = feats.flops * v[:, 0], feats.bytes * v[:, 1]
        extra = np.einsum("ij,ij->i", feats.extras, v[:, 3:])
        return np.maximum(compute, memory) + v[:, 2] + extra, compute >= memory

    def predict(self, arch: arch_lib.Arch, *, skip_kinds: Sequence[str] = ()) -> float:
        """Returns the predicted batch-1 latency of ``arch`` in ms.

        ``skip_kinds`` leaves those node kinds' times out (what a kernel-level
        model predicts instead, ``kernels.KernelPredictor``).
        """
        feats = device_features(arch, self.fmt, self.device)
        times, _ = self.node_times(feats)
        if skip_kinds:
            times = times[~np.isin(feats.kind, [KINDS.index(k) for k in skip_kinds])]
        return float(times.sum() + self.network_ms + self._network_extra(arch))

    def _network_extra(self, arch: arch_lib.Arch) -> float:
        if not self.network_extras:
            return 0.0
        z = network_features(arch)
        return float(
            sum(
                z[NETWORK_EXTRAS.index(name)] * ms
                for name, ms in self.network_extras.items()
            )
        )

    def predict_many(self, archs: Sequence[arch_lib.Arch]) -> np.ndarray:
        """Returns the predicted latencies (ms) of ``archs`` as an array."""
        return np.array([self.predict(a) for a in archs])

    def breakdown(self, arch: arch_lib.Arch) -> list[tuple[str, str, float, str]]:
        """Returns (node name, kind, ms, "compute" | "memory") for every node."""
        names = [n.name for n in arch.nodes if n.op != "input"]
        feats = device_features(arch, self.fmt, self.device)
        times, bound = self.node_times(feats)
        return [
            (name, KINDS[k], float(t), "compute" if b else "memory")
            for name, k, t, b in zip(names, feats.kind, times, bound, strict=True)
        ]

    def report(self) -> str:
        """Returns a table of fitted throughput, bandwidth and overheads per kind.

        A value at the device ceiling means the data never made that roof bind
        (the term is negligible for that kind), not that it runs at peak.
        """
        lines = [
            f"device: {self.device.name} (peak {self.device.peak_flops / 1e9:.3g}"
            f" GFLOP/s, MAC = 1 FLOP; bandwidth bound "
            f"{self.device.peak_bandwidth / 1e9:.3g} GB/s); format {self.fmt}",
            f"{'kind':15s} {'GFLOP/s':>9s} {'GB/s':>8s} {'call us':>9s}  extras",
        ]
        for k in KINDS:
            p = self.kinds[k]
            flag = lambda v, peak: f"{v / 1e9:.3g}" + ("*" if v >= peak * 0.999 else "")
            extras = ", ".join(
                f"{e} {p[f'{e}_ms'] * 1e3:.3g} us" for e in EXTRAS if f"{e}_ms" in p
            )
            note = f"  (borrowed from {self.borrowed[k]})" if k in self.borrowed else ""
            lines.append(
                f"{k:15s} {flag(p['flops_per_s'], self.device.peak_flops):>9s}"
                f" {flag(p['bytes_per_s'], self.device.peak_bandwidth):>8s}"
                f" {p['call_ms'] * 1e3:9.3g}  {extras}{note}"
            )
        extra = "".join(
            f", {name} {ms * 1e3:.3g} us each"
            for name, ms in self.network_extras.items()
        )
        lines.append(
            f"per network: {self.network_ms:.4g} ms{extra}   (* = at the ceiling: "
            "never binding)"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Returns the JSON-ready form (see ``from_dict``)."""
        return {
            "format_version": FORMAT_VERSION,
            "model": "roofline",
            "device": dataclasses.asdict(self.device),
            "fmt": self.fmt,
            "kinds": {k: dict(v) for k, v in self.kinds.items()},
            "network_ms": self.network_ms,
            "network_extras": dict(self.network_extras),
            "borrowed": dict(self.borrowed),
            "info": dict(self.info),
        }

    def save(self, path: str | Path) -> None:
        """Writes the predictor as JSON (no pickle) to ``path``."""
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False)
        Path(path).write_text(text + "\n")


def from_dict(data: Mapping[str, Any]) -> Predictor:
    """Rebuilds a ``Predictor`` from ``Predictor.to_dict`` output.

    Raises:
      ValueError: naming the field when the data is malformed.
    """
    if not isinstance(data, Mapping) or data.get("model") != "roofline":
        raise ValueError("not a roofline predictor file (missing model='roofline')")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"predictor format_version {data.get('format_version')!r}; "
            f"supported: {FORMAT_VERSION}"
        )
    kinds = data["kinds"]
    for k in KINDS:
        entry = kinds.get(k)
        if not isinstance(entry, Mapping):
            raise ValueError(f"predictor: missing parameters of kind '{k}'")
        for key, value in entry.items():
            if not (
                isinstance(value, int | float) and math.isfinite(value) and value >= 0
            ):
                raise ValueError(
                    f"predictor: kinds.{k}.{key} must be a finite "
                    f"number >= 0; got {value!r}"
                )
        if entry.get("flops_per_s", 0) <= 0 or entry.get("bytes_per_s", 0) <= 0:
            raise ValueError(
                f"predictor: kind '{k}' needs positive flops_per_s and bytes_per_s"
            )
    network_extras = dict(data.get("network_extras", {}))
    for name, value in network_extras.items():
        if name not in NETWORK_EXTRAS:
            raise ValueError(
                f"predictor: network_extras.{name} unknown; known: "
                f"{', '.join(NETWORK_EXTRAS)}"
            )
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(
                f"predictor: network_extras.{name} must be a finite number >= 0;"
                f" got {value!r}"
            )
    return Predictor(
        Device(**data["device"]),
        data["fmt"],
        {k: dict(kinds[k]) for k in KINDS},
        float(data["network_ms"]),
        dict(data.get("borrowed", {})),
        dict(data.get("info", {})),
        {k: float(v) for k, v in network_extras.items()},
    )
