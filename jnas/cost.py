"""Costs of an architecture, from the IR alone (no JAX, no per-family rules).

Counts (all at batch 1):
- ``params``: stored values in the release convention (PyTorch state dict):
  conv weights (+ bias), linear weights + bias, BN(C) = 4C + 1 (scale, shift,
  running mean, running variance, one batch counter).
- ``trainable_params``: params without running statistics and counters
  (= params - 2 * sum(C_BN) - n_BN).
- ``flops``: the release's FLOP convention (search-spaces.md section 10.2): a
  MAC is one FLOP, BN is 2 per input element, conv biases add one per output
  element, the linear bias is ignored, and ReLU/pool nodes count (output resp.
  input elements) only when their ``counted`` attribute is set.
- ``macs``: true multiply-accumulates of convs and linears (no bias, BN, pools).
- ``weights``: values a deployment stores after folding BN. A BN folds into the
  conv that produces its input when that conv feeds nothing else: the BN then
  stores nothing and the conv gains a bias (C_out values, replacing its own
  bias if it had one). A BN that cannot fold (input not a conv, or the conv has
  other consumers: DenseNet's pre-activation BNs) keeps a per-channel scale and
  shift, 2C. Linear: weights + bias. Running statistics and counters are gone.
- ``peak_activation_bytes``: largest live set of tensors over the node order
  (the IR's topological order is the schedule). Each node writes a fresh output
  buffer (no in-place ops, no aliasing, flatten included); a tensor is live from
  the step that produces it through the last step that reads it, so during a
  step its inputs and its output are live together. The input image counts.
  Each tensor is stored separately: bytes = storage_bytes(numel, fmt).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jnas import arch as arch_lib

CONVENTIONS = ("release", "folded")
# breakdown() categories: op -> category; everything else is "other".
CATEGORIES = ("conv", "batchnorm", "relu", "pool", "linear", "other")
_CATEGORY = {
    "conv": "conv",
    "batchnorm": "batchnorm",
    "relu": "relu",
    "maxpool": "pool",
    "avgpool": "pool",
    "linear": "linear",
}


@dataclasses.dataclass(frozen=True)
class NodeCost:
    """Costs of one node (what the latency predictor consumes).

    Attributes:
      name: the node name.
      op: the IR op.
      kind: finer op kind: "conv_dense" (groups 1, kernel > 1x1), "conv_1x1"
        (groups 1, 1x1), "conv_depthwise" (groups == C_in), "conv_grouped"
        (1 < groups < C_in), else the op ("linear", "maxpool", "batchnorm", ...).
      flops: release-convention FLOPs.
      macs: true multiply-accumulates.
      params: stored values, release convention (BN: 4C + 1).
      trainable: trainable values (BN: 2C).
      weights: stored values after BN folding (see the module docstring).
      in_elems: total elements of all inputs (an add of two tensors: both).
      out_elems: elements of the output.
    """

    name: str
    op: str
    kind: str
    flops: int
    macs: int
    params: int
    trainable: int
    weights: int
    in_elems: int
    out_elems: int


@dataclasses.dataclass(frozen=True)
class Totals:
    """Summed counts of a group of nodes (see ``breakdown``)."""

    params: int = 0
    flops: int = 0
    macs: int = 0
    weights: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.params + other.params,
            self.flops + other.flops,
            self.macs + other.macs,
            self.weights + other.weights,
        )


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _folded_convs(arch: arch_lib.Arch) -> set[str]:
    """Names of the convs that absorb the BN reading them (sole consumer)."""
    consumers = dict.fromkeys(arch.index, 0)
    for node in arch.nodes:
        for src in node.inputs:
            consumers[src] += 1
    return {
        node.inputs[0]
        for node in arch.nodes
        if node.op == "batchnorm"
        and arch.node(node.inputs[0]).op == "conv"
        and consumers[node.inputs[0]] == 1
    }


def node_costs(arch: arch_lib.Arch) -> list[NodeCost]:
    """Returns the costs of every node, in node order.

    Args:
      arch: the architecture.

    Returns:
      One ``NodeCost`` per node.
    """
    shapes = arch.shapes
    folded = _folded_convs(arch)
    out = []
    for node in arch.nodes:
        ins = [shapes[i] for i in node.inputs]
        out_elems = _numel(shapes[node.name])
        in_elems = sum(_numel(s) for s in ins)
        flops = macs = params = weights = 0
        op = kind = node.op
        if op == "conv":
            c_in = ins[0][-1]
            groups = arch.groups(node)
            kh, kw = node.attr("kernel")
            c_out = node.attr("out_channels")
            per_out = (c_in // groups) * kh * kw  # MACs per output element
            macs = out_elems * per_out
            bias = c_out if node.attr("bias") else 0
            params = c_out * per_out + bias
            flops = macs + (out_elems if node.attr("bias") else 0)
            weights = c_out * per_out + (c_out if node.name in folded else bias)
            kind = _conv_kind(groups, c_in, kh * kw)
        elif op == "linear":
            n_in, n_out = ins[0][0], node.attr("out_features")
            macs = flops = n_in * n_out  # the release ignores the linear bias
            params = weights = n_in * n_out + (n_out if node.attr("bias") else 0)
        elif op == "batchnorm":
            c = ins[0][-1]
            params = 4 * c + 1
            flops = 2 * in_elems
            weights = 0 if node.inputs[0] in folded else 2 * c
        elif op == "relu":
            flops = out_elems if node.attr("counted") else 0
        elif op in ("maxpool", "avgpool"):
            flops = in_elems if node.attr("counted") else 0
        trainable = (params - 2 * ins[0][-1] - 1) if op == "batchnorm" else params
        out.append(
            NodeCost(
                name=node.name,
                op=op,
                kind=kind,
                flops=flops,
                macs=macs,
                params=params,
                trainable=trainable,
                weights=weights,
                in_elems=in_elems,
                out_elems=out_elems,
            )
        )
    return out


def _conv_kind(groups: int, c_in: int, kernel_area: int) -> str:
    if groups == c_in and c_in > 1:
        return "conv_depthwise"
    if groups > 1:
        return "conv_grouped"
    return "conv_1x1" if kernel_area == 1 else "conv_dense"


def breakdown(arch: arch_lib.Arch) -> dict[str, Totals]:
    """Returns the counts summed per category (as in search-spaces.md 12.2).

    Args:
      arch: the architecture.

    Returns:
      {category: Totals} for every name in ``CATEGORIES`` (maxpool and avgpool
      are "pool"; input, add, concat, flatten are "other").
    """
    totals = dict.fromkeys(CATEGORIES, Totals())
    for c in node_costs(arch):
        cat = _CATEGORY.get(c.op, "other")
        totals[cat] = totals[cat] + Totals(c.params, c.flops, c.macs, c.weights)
    return totals


def params(arch: arch_lib.Arch) -> int:
    """Returns the stored values in the release convention (BN(C) = 4C + 1)."""
    return sum(c.params for c in node_costs(arch))


def trainable_params(arch: arch_lib.Arch) -> int:
    """Returns the trainable values (params without BN statistics and counters)."""
    return sum(c.trainable for c in node_costs(arch))


def flops(arch: arch_lib.Arch) -> int:
    """Returns the FLOPs of one batch-1 inference in the release convention."""
    return sum(c.flops for c in node_costs(arch))


def macs(arch: arch_lib.Arch) -> int:
    """Returns the multiply-accumulates of the convs and linears."""
    return sum(c.macs for c in node_costs(arch))


def weights(arch: arch_lib.Arch) -> int:
    """Returns the stored values after folding BN into preceding convs."""
    return sum(c.weights for c in node_costs(arch))


def _storage_bytes(num_values: int, fmt: Any) -> int:
    # Imported here, not at the top: jnas.precision imports JAX, and counting
    # must stay JAX-free. Callers holding a FloatFormat have imported it anyway.
    from jnas import precision

    return precision.storage_bytes(num_values, fmt)


def memory_bytes(arch: arch_lib.Arch, fmt: Any, convention: str = "release") -> int:
    """Returns the bytes needed to store the network's values in ``fmt``.

    Args:
      arch: the architecture.
      fmt: a ``precision.FloatFormat`` (or its text form, e.g. "e5m10").
      convention: "release" stores ``params`` (the paper's memory measure);
        "folded" stores ``weights`` (what a BN-folded deployment keeps).

    Returns:
      ``precision.storage_bytes`` of the chosen count: ceil(n * bits / 8).
    """
    if convention not in CONVENTIONS:
        raise ValueError(
            f"unknown convention {convention!r}; allowed: {', '.join(CONVENTIONS)}"
        )
    count = params(arch) if convention == "release" else weights(arch)
    return _storage_bytes(count, fmt)


def peak_activation_bytes(arch: arch_lib.Arch, fmt: Any) -> int:
    """Returns the largest live set of activations over the node schedule.

    Args:
      arch: the architecture; its node order is the schedule.
      fmt: a ``precision.FloatFormat`` (or its text form).

    Returns:
      max over steps of the summed ``storage_bytes`` of the tensors live during
      that step (liveness rule in the module docstring).
    """
    last_use = {node.name: i for i, node in enumerate(arch.nodes)}
    for i, node in enumerate(arch.nodes):
        for src in node.inputs:
            last_use[src] = i
    size = {name: _storage_bytes(_numel(s), fmt) for name, s in arch.shapes.items()}
    live = peak = 0
    for i, node in enumerate(arch.nodes):
        live += size[node.name]  # allocated before the node runs
        peak = max(peak, live)
        # inputs whose last reader is this node are freed once it has run
        for name in set(node.inputs):
            if last_use[name] == i:
                live -= size[name]
    return peak
