"""The inference form of a trained network: BatchNorm folded into its conv.

`fold` turns (arch, trained variables) into an inference network and its
values, in the convention `jnas.cost.weights` counts:

- a BatchNorm whose input is a conv that feeds nothing else disappears: the
  conv's kernel is scaled per output channel by s = scale / sqrt(var + eps)
  and it gains the bias (b - mean) * s + shift (b = 0 without a bias);
- any other BatchNorm (DenseNet's, after a concat or a pool) becomes a
  per-channel affine x * s + (shift - mean * s). In the folded `Arch` it stays
  a batchnorm node whose running statistics are fixed at mean 0 and
  var + eps == 1 (exactly, in float32), so jnas's own forward pass computes the
  same affine: the folded network runs in `jnas.nn` unchanged.

Folding is computed in float64 and stored in float32; `round_values` then
rounds every stored value to the deployment format.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np

from jnas import arch as arch_lib
from jnas import precision


@dataclasses.dataclass(frozen=True)
class Folded:
    """An inference network and its stored values.

    Attributes:
      arch: the folded architecture (foldable BatchNorms removed).
      variables: {"params", "batch_stats"} for `jnas.nn` (float32 numpy).
      affine: names of the batchnorm nodes kept as per-channel affines.
    """

    arch: arch_lib.Arch
    variables: dict[str, Any]
    affine: tuple[str, ...]


def _unit_variance(eps: float) -> np.float32:
    """A float32 var with var + eps == 1 exactly in float32 (so rsqrt is 1)."""
    var = np.float32(1.0) - np.float32(eps)
    for _ in range(4):
        total = np.float32(var + np.float32(eps))
        if total == 1:
            return var
        var = np.nextafter(var, np.float32(2 if total < 1 else 0))
    raise AssertionError(f"no float32 var with var + {eps} == 1")


def fold(arch: arch_lib.Arch, variables: dict[str, Any]) -> Folded:
    """Folds every foldable BatchNorm of a trained network (see the module doc)."""
    params = {k: dict(v) for k, v in variables["params"].items()}
    stats = variables.get("batch_stats", {})
    consumers = Counter(src for node in arch.nodes for src in node.inputs)
    by_name = {node.name: node for node in arch.nodes}
    rename: dict[str, str] = {}
    out_params: dict[str, dict[str, np.ndarray]] = {}
    out_stats: dict[str, dict[str, np.ndarray]] = {}
    folded_into: dict[str, arch_lib.Node] = {}
    affine = []
    for node in arch.nodes:
        if node.op != "batchnorm":
            continue
        p, s = params[node.name], stats[node.name]
        eps = node.attr("eps")
        inv = np.asarray(p["scale"], np.float64) / np.sqrt(
            np.asarray(s["var"], np.float64) + eps
        )
        mean = np.asarray(s["mean"], np.float64)
        shift = np.asarray(p["bias"], np.float64)
        src = by_name[node.inputs[0]]
        if src.op == "conv" and consumers[src.name] == 1:
            w = params[src.name]
            kernel = np.asarray(w["kernel"], np.float64) * inv
            bias = np.asarray(w.get("bias", np.zeros_like(mean)), np.float64)
            out_params[src.name] = {
                "kernel": kernel.astype(np.float32),
                "bias": ((bias - mean) * inv + shift).astype(np.float32),
            }
            rename[node.name] = src.name
            attrs = dict(src.attrs, bias=True)
            folded_into[src.name] = arch_lib.Node(src.name, src.op, src.inputs, attrs)
        else:
            affine.append(node.name)
            out_params[node.name] = {
                "scale": inv.astype(np.float32),
                "bias": (shift - mean * inv).astype(np.float32),
            }
            unit = _unit_variance(eps)
            out_stats[node.name] = {
                "mean": np.zeros(mean.shape, np.float32),
                "var": np.full(mean.shape, unit, np.float32),
            }
    nodes = []
    for node in arch.nodes:
        if node.name in rename:
            continue
        node = folded_into.get(node.name, node)
        inputs = tuple(rename.get(i, i) for i in node.inputs)
        nodes.append(arch_lib.Node(node.name, node.op, inputs, node.attrs))
        if node.name in params and node.name not in out_params:
            out_params[node.name] = {
                k: np.asarray(v, np.float32) for k, v in params[node.name].items()
            }
    new = arch_lib.Arch(tuple(nodes), arch.input_shape, arch.num_classes, arch.meta)
    return Folded(new, {"params": out_params, "batch_stats": out_stats}, tuple(affine))


def stored_values(folded: Folded) -> list[tuple[str, str, np.ndarray]]:
    """(node, name, values) of every stored array, in node order.

    The order of the blob: per weighted node its kernel then bias, per affine
    its scale then shift. Their total size is ``cost.weights`` of the
    original network.
    """
    out = []
    for node in folded.arch.nodes:
        p = folded.variables["params"].get(node.name)
        if p is None:
            continue
        keys = ("kernel", "bias") if "kernel" in p else ("scale", "bias")
        out += [(node.name, k, p[k]) for k in keys if k in p]
    return out


def round_values(folded: Folded, fmt: precision.FloatFormat | None) -> Folded:
    """Every stored value rounded to ``fmt`` (None: float32, unchanged)."""
    if fmt is None:
        return folded
    # One rounding of all values at once: a call per array shape would
    # compile a program per shape (tens of seconds for a DenseNet).
    items = [
        (n, k, np.asarray(v, np.float32))
        for n, p in folded.variables["params"].items()
        for k, v in p.items()
    ]
    flat = np.concatenate([v.ravel() for _, _, v in items])
    rounded = np.asarray(precision.quantize(flat, precision.as_format(fmt)))
    params: dict[str, dict[str, np.ndarray]] = {}
    at = 0
    for n, k, v in items:
        params.setdefault(n, {})[k] = rounded[at : at + v.size].reshape(v.shape)
        at += v.size
    return dataclasses.replace(folded, variables=dict(folded.variables, params=params))
