"""A jnas architecture IR (`jnas.arch.Arch`) as a PyTorch module.

Benchmark-only (PyTorch is the `bench` extra, never a jnas dependency). Used by
`benchmarks/vs_pytorch.py` (the baseline a user would otherwise run: the same
networks in PyTorch, trained one after another) and `tests/test_torch_ir.py`.

    module = torch_ir.build(arch)                  # torch.fx.GraphModule
    torch_ir.load_jnas_variables(module, variables)  # jnas.nn's flax variables

`build` emits straight-line code, one statement per IR node, the way a
hand-written `forward` would read (a `torch.fx.GraphModule`), not an
interpreter that walks the nodes at every call. Inputs are NCHW
`(batch, C, H, W)`; `arch.input_shape` is HWC. A channels_last input (and a
module converted with `module.to(memory_format=torch.channels_last)`) runs the
same maths.

Submodules are named after the IR nodes with "." replaced by "_" (e.g.
`stage1_block0_conv1`); `module.layer_names` maps node name -> submodule name.
The state dict is the release's: conv weight (+ bias), linear weight + bias,
BN weight, bias, running_mean, running_var, num_batches_tracked, so its element
count is `jnas.cost.params(arch)`.

Weight interchange with `jnas.nn` (as tests/nn_oracle.py): conv kernels are
HWIO in flax and OIHW in PyTorch, linear kernels (n_in, n_out) in flax and
(n_out, n_in) in PyTorch; BN params scale/bias are weight/bias, batch_stats
mean/var are running_mean/running_var.

This module imports only torch, numpy and `jnas.arch` (no JAX), so the
benchmark's PyTorch worker processes stay free of JAX.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
import torch.fx

from jnas import arch as arch_lib


def _layer(arch: arch_lib.Arch, node: arch_lib.Node) -> torch.nn.Module | None:
    """The stateful (or pooling/activation) module of one node, else None."""
    op = node.op
    ins = arch.in_shapes(node)
    if op == "conv":
        return torch.nn.Conv2d(
            ins[0][-1],
            node.attr("out_channels"),
            node.attr("kernel"),
            stride=node.attr("stride"),
            padding=node.attr("padding"),
            groups=arch.groups(node),
            bias=node.attr("bias"),
        )
    if op == "batchnorm":
        return torch.nn.BatchNorm2d(
            ins[0][-1], eps=node.attr("eps"), momentum=node.attr("momentum")
        )
    if op == "linear":
        return torch.nn.Linear(
            ins[0][0], node.attr("out_features"), bias=node.attr("bias")
        )
    if op == "relu":
        return torch.nn.ReLU()
    if op == "maxpool":  # pads with -inf, floor rounding: as the IR
        return torch.nn.MaxPool2d(
            node.attr("kernel"), node.attr("stride"), node.attr("padding")
        )
    if op == "avgpool":  # never pads
        return torch.nn.AvgPool2d(node.attr("kernel"), node.attr("stride"))
    return None  # input, add, concat, flatten: functional


def _layer_names(arch: arch_lib.Arch) -> dict[str, str]:
    """Node name -> unique attribute name ("." is not allowed in one)."""
    names, taken = {}, set()
    for node in arch.nodes:
        base = node.name.replace(".", "_").replace("-", "_") or "node"
        if not base.isidentifier():
            base = "n_" + "".join(c if c.isalnum() else "_" for c in base)
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        names[node.name] = name
    return names


def build(arch: arch_lib.Arch) -> torch.fx.GraphModule:
    """Returns the PyTorch module of ``arch`` (NCHW in, logits out).

    Weights have PyTorch's default initialisation, which is jnas.nn's
    (U(+-1/sqrt(fan_in)) for conv/linear weights and biases, BN 1/0/0/1).

    Args:
      arch: the architecture.

    Returns:
      A ``torch.fx.GraphModule`` in train mode; ``layer_names`` maps IR node
      names to its submodule names.
    """
    names = _layer_names(arch)
    root = torch.nn.Module()
    graph = torch.fx.Graph()
    values: dict[str, torch.fx.Node] = {}
    for node in arch.nodes:
        ins = [values[i] for i in node.inputs]
        layer = _layer(arch, node)
        if node.op == "input":
            out = graph.placeholder("x")
        elif layer is not None:
            root.add_module(names[node.name], layer)
            out = graph.call_module(names[node.name], (ins[0],))
        elif node.op == "add":
            out = ins[0]
            for other in ins[1:]:
                out = graph.call_function(operator.add, (out, other))
        elif node.op == "concat":  # channel order = input order
            out = graph.call_function(torch.cat, (tuple(ins),), {"dim": 1})
        elif node.op == "flatten":  # NCHW (logical): C, H, W order
            out = graph.call_function(torch.flatten, (ins[0], 1))
        else:  # pragma: no cover - arch_schema rejects unknown ops
            raise AssertionError(node.op)
        values[node.name] = out
    graph.output(values[arch.nodes[-1].name])
    module = torch.fx.GraphModule(root, graph, class_name="IRNet")
    module.layer_names = {
        n.name: names[n.name] for n in arch.nodes if hasattr(module, names[n.name])
    }
    return module


def state_dict_numel(module: torch.nn.Module) -> int:
    """Elements of the state dict (the release's parameter count)."""
    return sum(t.numel() for t in module.state_dict().values())


def _tensor(value: Any, like: torch.Tensor) -> torch.Tensor:
    # A copy: arrays fetched from JAX are read-only, which torch warns about.
    array = np.array(value, dtype=np.float32, order="C", copy=True)
    if tuple(array.shape) != tuple(like.shape):
        raise ValueError(f"shape {array.shape} does not match {tuple(like.shape)}")
    return torch.from_numpy(array).to(like.dtype)


@torch.no_grad()
def load_jnas_variables(
    module: torch.fx.GraphModule, variables: dict[str, Any], arch: arch_lib.Arch
) -> None:
    """Copies jnas.nn's ``{"params", "batch_stats"}`` into ``module`` in place.

    Args:
      module: ``build(arch)``'s module.
      variables: as from ``jnas.nn.init`` (or a trainer's ``variables(i)``);
        JAX or NumPy arrays.
      arch: the architecture both were built from.

    Raises:
      ValueError: naming the node when a shape does not match.
    """
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    for node in arch.nodes:
        if node.op not in ("conv", "linear", "batchnorm"):
            continue
        layer = getattr(module, module.layer_names[node.name])
        p = params[node.name]
        try:
            if node.op == "conv":  # HWIO -> OIHW
                kernel = np.transpose(np.asarray(p["kernel"]), (3, 2, 0, 1))
                layer.weight.copy_(_tensor(kernel, layer.weight))
            elif node.op == "linear":  # (n_in, n_out) -> (n_out, n_in)
                layer.weight.copy_(_tensor(np.asarray(p["kernel"]).T, layer.weight))
            else:
                layer.weight.copy_(_tensor(p["scale"], layer.weight))
                layer.running_mean.copy_(
                    _tensor(stats[node.name]["mean"], layer.running_mean)
                )
                layer.running_var.copy_(
                    _tensor(stats[node.name]["var"], layer.running_var)
                )
            if layer.bias is not None:
                layer.bias.copy_(_tensor(p["bias"], layer.bias))
        except ValueError as err:
            raise ValueError(f"node '{node.name}' ({node.op}): {err}") from None


def jnas_variables(module: torch.fx.GraphModule, arch: arch_lib.Arch) -> dict[str, Any]:
    """The inverse of ``load_jnas_variables``: NumPy ``{"params", "batch_stats"}``."""
    params, stats = {}, {}
    for node in arch.nodes:
        if node.op not in ("conv", "linear", "batchnorm"):
            continue
        layer = getattr(module, module.layer_names[node.name])
        w = layer.weight.detach().cpu().numpy()
        if node.op == "conv":
            entry = {"kernel": np.transpose(w, (2, 3, 1, 0))}  # OIHW -> HWIO
        elif node.op == "linear":
            entry = {"kernel": w.T}
        else:
            entry = {"scale": w}
            stats[node.name] = {
                "mean": layer.running_mean.detach().cpu().numpy(),
                "var": layer.running_var.detach().cpu().numpy(),
            }
        if layer.bias is not None:
            entry["bias"] = layer.bias.detach().cpu().numpy()
        params[node.name] = {k: np.ascontiguousarray(v) for k, v in entry.items()}
    return {"params": params, "batch_stats": stats}
