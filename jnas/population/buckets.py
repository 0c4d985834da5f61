"""Buckets of candidates that share one compiled program: padding and exact masks.

A search trains many small networks that differ in widths. Candidates whose
architectures agree in everything but widths (and ResNeXt-style group counts)
share a *bucket*: one padded architecture whose every width is the bucket's
maximum, compiled once, with the candidate axis added by `jnas.population.engine`.

Exactness without activation masks. Each candidate's real parameters are
embedded into zero-filled padded tensors at the positions of its real channels
(`Layout`). A padded channel then computes exactly zero everywhere: its conv
kernel column and bias are 0; its BatchNorm scale and shift are 0, so the BN
output is 0 whatever the batch statistics; relu, pooling, add and concat of zeros
are zeros; and the next layer's kernel rows reading it are 0. Gradients of padded
entries are 0 too (their inputs or their output sensitivities are 0), and a
`grad_mask` zeroes them explicitly anyway, so momentum and weight decay of those
zeros stay zero. The real channels therefore see exactly the values, gradients,
BatchNorm statistics and optimiser state they would see alone (summation over
extra exact zeros aside, which can reorder float additions: equal within float32
rounding, not bit-for-bit).

Grouped convolutions (an integer group count K > 1, as in ResNeXt) become dense
convolutions in the padded program, with the real block-diagonal structure
enforced by the grad mask (off-block entries start at 0 and never get a gradient).
This lets candidates with different cardinalities share a bucket, at the price
of K times the MACs in that layer, which the planner counts as padding waste.
Depthwise convolutions stay depthwise (their channel multiplier is part of the
bucket key).

Initialisation uses each candidate's own architecture (`jnas.nn.init` on the
unpadded `Arch`), so every candidate keeps its true fan-in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jnas import arch as arch_lib
from jnas import cost, nn

Variables = dict[str, Any]


def bucket_key(arch: arch_lib.Arch) -> str:
    """Hash of what must be equal for two candidates to share a program.

    That is the skeleton (`Arch.skeleton_hash`: everything but widths) with
    integer group counts also dropped, since the padded program runs grouped
    convolutions densely. Input shape and class count are part of it.
    """
    text = json.dumps(arch.skeleton(cardinality=False), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a candidate's real channels sit inside the padded tensors.

    Attributes:
      channels: node name -> int array of positions (in the padded output's last
        axis) holding the candidate's real output channels, in its own order.
      groups: node name -> the candidate's group count, for convs that the padded
        program runs densely (integer groups > 1).
    """

    channels: dict[str, np.ndarray]
    groups: dict[str, int]


@dataclasses.dataclass(frozen=True)
class Bucket:
    """Candidates sharing one padded program.

    Attributes:
      padded: the padded architecture (every width the members' maximum,
        grouped convs dense).
      members: the candidates' own architectures.
      layouts: one Layout per member.
    """

    padded: arch_lib.Arch
    members: tuple[arch_lib.Arch, ...]
    layouts: tuple[Layout, ...]

    @property
    def size(self) -> int:
        return len(self.members)

    def useful_macs(self) -> int:
        """Sum of the members' own MACs (one image)."""
        return sum(cost.macs(a) for a in self.members)

    def padded_macs(self) -> int:
        """MACs the padded program computes for all members (one image each)."""
        return cost.macs(self.padded) * self.size

    def waste(self) -> float:
        """Padding waste: wasted MACs over useful MACs (0 = no waste)."""
        useful = self.useful_macs()
        return self.padded_macs() / useful - 1.0 if useful else 0.0


def make_bucket(members: Sequence[arch_lib.Arch]) -> Bucket:
    """Builds the padded architecture and member layouts of a bucket.

    Args:
      members: architectures with equal `bucket_key`.

    Returns:
      The Bucket.

    Raises:
      ValueError: if the members do not share a bucket key.
    """
    members = tuple(members)
    if not members:
        raise ValueError("a bucket needs at least one member")
    keys = {bucket_key(a) for a in members}
    if len(keys) != 1:
        raise ValueError(
            f"bucket members must share one bucket_key; got {len(keys)} different"
        )
    padded = _padded_arch(members)
    layouts = tuple(_layout(a, padded) for a in members)
    return Bucket(padded, members, layouts)


def _padded_arch(members: Sequence[arch_lib.Arch]) -> arch_lib.Arch:
    """The members' common architecture with every width at its maximum."""
    nodes = []
    for position, node in enumerate(members[0].nodes):
        attrs = dict(node.attrs)
        for key in arch_lib.WIDTH_ATTRS.get(node.op, ()):
            attrs[key] = max(a.nodes[position].attr(key) for a in members)
        if node.op == "conv" and attrs["groups"] != arch_lib.DEPTHWISE:
            attrs["groups"] = 1
        nodes.append(arch_lib.Node(node.name, node.op, node.inputs, attrs))
    first = members[0]
    return arch_lib.Arch(nodes, first.input_shape, first.num_classes)


def memory_bytes(padded: arch_lib.Arch, size: int, batch_size: int) -> int:
    """Device memory a bucket's training step needs, estimated from the IR.

    Per candidate: params, gradients, momentum and grad mask (4 float32 copies of
    the padded parameters) plus every node's output at `batch_size`, kept for
    the backward pass, and as much again for the backward temporaries. vmap
    holds all candidates' activations at once, so this is the vmap figure (an
    upper bound for lax.map, which holds one candidate's at a time).
    """
    nodes = cost.node_costs(padded)
    param_values = sum(n.trainable for n in nodes)
    activation_values = sum(n.out_elems for n in nodes) * batch_size
    per_candidate = 4 * (4 * param_values + 2 * activation_values)
    return size * per_candidate


def plan(
    archs: Sequence[arch_lib.Arch],
    *,
    max_waste: float = 0.5,
    max_size: int | None = None,
    memory_budget: int | None = None,
    batch_size: int = 128,
) -> list[tuple[Bucket, list[int]]]:
    """Groups candidates into buckets that bound padding waste and memory.

    Candidates are grouped by `bucket_key`; within a group, in decreasing order
    of MACs, each joins the open bucket unless that would push the bucket's
    waste (padded MACs over useful MACs, minus 1) above `max_waste`, its size
    above `max_size`, or its estimated memory (`memory_bytes`) above
    `memory_budget`; then a new bucket opens. The number of compiled programs
    is the number of buckets; raising `max_waste` trades padding for programs.

    Args:
      archs: the candidates.
      max_waste: bound on a bucket's padding waste (>= 0).
      max_size: bound on candidates per bucket (None: no bound).
      memory_budget: bytes a bucket's step may use (None: no bound).
      batch_size: training batch, for the memory estimate.

    Returns:
      (bucket, indices into `archs` of its members) pairs, in first-seen order.

    Raises:
      ValueError: on bad bounds, or a single candidate above the memory budget.
    """
    if max_waste < 0:
        raise ValueError(f"max_waste={max_waste} must be >= 0")
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size={max_size} must be >= 1 or None")
    groups: dict[str, list[int]] = {}
    for i, a in enumerate(archs):
        groups.setdefault(bucket_key(a), []).append(i)
    macs = [cost.macs(a) for a in archs]
    out = []
    for indices in groups.values():
        indices = sorted(indices, key=lambda i: -macs[i])
        current: list[int] = []
        for i in indices:
            trial = current + [i]
            if current and not _fits(
                [archs[j] for j in trial],
                [macs[j] for j in trial],
                max_waste,
                max_size,
                memory_budget,
                batch_size,
            ):
                out.append(current)
                trial = [i]
            if memory_budget is not None:
                need = memory_bytes(archs[i], 1, batch_size)
                if need > memory_budget:
                    raise ValueError(
                        f"candidate {i} alone needs about {need} bytes, above "
                        f"memory_budget={memory_budget}; lower the batch size"
                    )
            current = trial
        out.append(current)
    return [(make_bucket([archs[i] for i in idx]), idx) for idx in out]


def _fits(members, member_macs, max_waste, max_size, memory_budget, batch_size):
    if max_size is not None and len(members) > max_size:
        return False
    padded = _padded_arch(members)
    if cost.macs(padded) * len(members) > (1 + max_waste) * sum(member_macs):
        return False
    if memory_budget is not None:
        return memory_bytes(padded, len(members), batch_size) <= memory_budget
    return True


def _layout(arch: arch_lib.Arch, padded: arch_lib.Arch) -> Layout:
    """Real-channel positions of `arch`'s tensors inside `padded`'s."""
    channels: dict[str, np.ndarray] = {}
    groups: dict[str, int] = {}
    for node in arch.nodes:
        name, op = node.name, node.op
        if op == "input":
            channels[name] = np.arange(arch.input_shape[-1])
        elif op == "conv":
            width = node.attr("out_channels")
            if node.attr("groups") == arch_lib.DEPTHWISE:
                # Output channel o reads input channel o // multiplier.
                src = channels[node.inputs[0]]
                mult = width // arch.shapes[node.inputs[0]][-1]
                channels[name] = (src[:, None] * mult + np.arange(mult)).reshape(-1)
            else:
                channels[name] = np.arange(width)
                if arch.groups(node) > 1:
                    groups[name] = arch.groups(node)
        elif op == "linear":
            channels[name] = np.arange(node.attr("out_features"))
        elif op == "concat":
            parts, offset = [], 0
            for src in node.inputs:
                parts.append(channels[src] + offset)
                offset += padded.shapes[src][-1]
            channels[name] = np.concatenate(parts)
        elif op == "flatten":
            # "chw" order: element (c, h, w) sits at c * H * W + h * W + w.
            h, w, _ = padded.shapes[node.inputs[0]]
            src = channels[node.inputs[0]]
            channels[name] = (src[:, None] * (h * w) + np.arange(h * w)).reshape(-1)
        elif op == "add":
            first = channels[node.inputs[0]]
            for src in node.inputs[1:]:
                if not np.array_equal(channels[src], first):
                    raise ValueError(
                        f"add node '{name}': inputs have different channel layouts"
                    )
            channels[name] = first
        else:  # batchnorm, relu, pools: channel-wise, layout passes through
            channels[name] = channels[node.inputs[0]]
    return Layout(channels, groups)


def _kernel_index(
    arch: arch_lib.Arch, layout: Layout, node: arch_lib.Node
) -> tuple[list[tuple[np.ndarray, ...]], list[slice]]:
    """Index pairs (padded positions, member slices) of a conv/linear kernel."""
    out_idx = layout.channels[node.name]
    in_idx = layout.channels[node.inputs[0]]
    if node.op == "linear":
        return [np.ix_(in_idx, out_idx)], [np.s_[:, :]]
    if node.attr("groups") == arch_lib.DEPTHWISE:
        return [np.ix_(np.arange(1), out_idx)], [np.s_[:, :]]
    k = layout.groups.get(node.name, 1)
    cin_g, cout_g = len(in_idx) // k, len(out_idx) // k
    padded_ix, member_ix = [], []
    for g in range(k):
        ins = in_idx[g * cin_g : (g + 1) * cin_g]
        outs = out_idx[g * cout_g : (g + 1) * cout_g]
        padded_ix.append(np.ix_(ins, outs))
        member_ix.append(np.s_[:, g * cout_g : (g + 1) * cout_g])
    return padded_ix, member_ix


def embed(bucket: Bucket, index: int, variables: Variables) -> tuple[Variables, Any]:
    """Places member `index`'s variables into zero-filled padded ones.

    Args:
      bucket: the bucket.
      index: which member.
      variables: the member's own {"params", "batch_stats"} (from `nn.init` of
        its own architecture).

    Returns:
      (padded variables as numpy arrays, grad_mask: a params-shaped pytree with
      1.0 on the member's real entries and 0.0 elsewhere).
    """
    arch, layout = bucket.members[index], bucket.layouts[index]
    padded_shapes = nn.variable_shapes(bucket.padded)
    params, stats, mask = {}, {}, {}
    for node in arch.nodes:
        name = node.name
        if node.op not in ("conv", "linear", "batchnorm"):
            continue
        src = jax.tree.map(np.asarray, variables["params"][name])
        shapes = padded_shapes["params"][name]
        dst = {k: np.zeros(shapes[k], src[k].dtype) for k in shapes}
        msk = {k: np.zeros(shapes[k], np.float32) for k in shapes}
        if node.op == "batchnorm":
            idx = layout.channels[name]
            for k in dst:
                dst[k][idx], msk[k][idx] = src[k], 1.0
            run = jax.tree.map(np.asarray, variables["batch_stats"][name])
            width = padded_shapes["batch_stats"][name]["mean"]
            stats[name] = {
                "mean": np.zeros(width, run["mean"].dtype),
                "var": np.ones(width, run["var"].dtype),  # padded: a harmless 1
            }
            stats[name]["mean"][idx] = run["mean"]
            stats[name]["var"][idx] = run["var"]
        else:
            for pix, mix in zip(*_kernel_index(arch, layout, node), strict=True):
                dst["kernel"][(Ellipsis, *pix)] = src["kernel"][(Ellipsis, *mix)]
                msk["kernel"][(Ellipsis, *pix)] = 1.0
            if "bias" in src:
                dst["bias"][layout.channels[name]] = src["bias"]
                msk["bias"][layout.channels[name]] = 1.0
        params[name], mask[name] = dst, msk
    return {"params": params, "batch_stats": stats}, mask


def extract(bucket: Bucket, index: int, padded: Variables) -> Variables:
    """Reads member `index`'s own variables back out of padded ones.

    Args:
      bucket: the bucket.
      index: which member.
      padded: padded {"params", "batch_stats"} of this member (no candidate axis).

    Returns:
      Variables shaped like `nn.init` of the member's own architecture.
    """
    arch, layout = bucket.members[index], bucket.layouts[index]
    params, stats = {}, {}
    for node in arch.nodes:
        name = node.name
        if node.op in ("conv", "linear"):
            src = jax.tree.map(np.asarray, padded["params"][name])
            pad_ix, mem_ix = _kernel_index(arch, layout, node)
            blocks = [src["kernel"][(Ellipsis, *pix)] for pix in pad_ix]
            out = {"kernel": np.concatenate(blocks, axis=-1)}
            if "bias" in src:
                out["bias"] = src["bias"][layout.channels[name]]
            params[name] = out
        elif node.op == "batchnorm":
            idx = layout.channels[name]
            params[name] = {
                k: np.asarray(v)[idx] for k, v in padded["params"][name].items()
            }
            stats[name] = {
                k: np.asarray(v)[idx] for k, v in padded["batch_stats"][name].items()
            }
    return {"params": params, "batch_stats": stats}
