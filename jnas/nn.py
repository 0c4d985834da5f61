"""A flax module that runs any ``jnas.arch.Arch`` by walking its nodes.

There is no per-family code: ``Net`` executes the IR's nodes in their
(topological) order with the primitives of ``jnas.nn_ops``. Inputs are NHWC
float arrays ``(batch, H, W, C)`` with ``(H, W, C) == arch.input_shape``.

Why flax linen (not nnx): ``Net.init`` / ``Net.apply`` are pure functions of
plain pytrees ``{"params", "batch_stats"}``, which the population engine can
stack and ``jax.vmap`` / ``jax.lax.map`` over without any split/merge step.

Variables, keyed by node name (stable and readable, e.g.
``params["stage1.block0.conv1"]["kernel"]``):

| op        | params                                  | batch_stats          |
|-----------|-----------------------------------------|----------------------|
| conv      | kernel (kh, kw, C_in/groups, C_out), bias | -                  |
| linear    | kernel (n_in, n_out), bias              | -                    |
| batchnorm | scale (C), bias (C)                     | mean (C), var (C)    |

Element counts: params + batch_stats == ``cost.params(arch) - n_BN`` (flax has
no BN batch counter) and params == ``cost.trainable_params(arch)``.

Initialisation (``init``) is PyTorch's default, so candidates train as in the
release: conv/linear weights and biases U(+-1/sqrt(fan_in)) (``nn_ops.torch_bound``
of the true fan-in ``nn_ops.fan_in``), BN scale 1, shift 0, running mean 0,
running variance 1. A population engine that pads widths must initialise each
candidate from its own unpadded arch to keep these scales. ``init`` builds the
variables from the IR without tracing the forward pass: one U(-1, 1) draw for
all weights, sliced and scaled on the host, so initialising a candidate is not
a compilation (a jitted flax ``Net.init`` compiled the whole forward pass,
1-2.5 s per candidate on a 2-core CPU). Flax's own ``Net.init`` gives the same
structure with zero conv/linear weights (use it for shapes only).

BatchNorm follows PyTorch exactly: train mode normalises with the batch mean
and biased variance, and updates the running statistics with the node's
momentum m (0.1): mean <- (1-m) mean + m batch_mean, var <- (1-m) var + m
unbiased_batch_var. Eval mode uses the running statistics. Statistics are
at least float32 whatever ``dtype`` is (float64 with float64 params, which the
population engine's exactness tests use).

Quantisation (``precision.quantize``, straight-through gradient):
- ``weight_format``: every stored value that the forward pass reads is rounded
  before use: conv/linear kernels and biases, BN scale and shift, and in eval
  mode also the BN running mean and variance (they are stored values in the
  release's memory measure). The stored params stay full precision (the
  optimiser's master copy); train-mode batch statistics are not rounded.
- ``activation_format``: the output of every node that creates new values is
  rounded: the input image, conv (after its bias), batchnorm, avgpool, add and
  linear (the logits). relu, maxpool, concat and flatten only select or move
  values that are already in the format, so rounding them would be a no-op.
- ``rounding="stochastic"`` draws from the flax RNG stream "quantize".

All node outputs are also ``sow``-n, as one dict by node name, into
``intermediates["node_outputs"]`` (free unless the "intermediates" collection is
made mutable), for tests and debugging.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jnas import arch as arch_lib
from jnas import nn_ops, precision

Format = precision.FloatFormat | str | None
Variables = dict[str, Any]
# Ops whose outputs are new values; the others select or move existing ones.
QUANTIZED_OUTPUTS = ("input", "conv", "batchnorm", "avgpool", "add", "linear")
COLLECTIONS = ("params", "batch_stats")


class _Weights(nn.Module):
    """Declares the kernel (and bias) of one conv or linear node.

    Flax initialises them to zeros: the values come from ``init``, which
    draws them without tracing the network.
    """

    kernel_shape: tuple[int, ...]
    use_bias: bool
    param_dtype: Any

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array | None]:
        """Returns (kernel, bias or None)."""
        shape = self.kernel_shape
        kernel = self.param("kernel", nn.initializers.zeros, shape, self.param_dtype)
        bias = None
        if self.use_bias:
            bias = self.param(
                "bias", nn.initializers.zeros, shape[-1:], self.param_dtype
            )
        return kernel, bias


class _BatchNormVars(nn.Module):
    """Declares the affine params and running statistics of one BN node."""

    features: int
    param_dtype: Any

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array, nn.Variable, nn.Variable]:
        shape = (self.features,)
        scale = self.param("scale", nn.initializers.ones, shape, self.param_dtype)
        shift = self.param("bias", nn.initializers.zeros, shape, self.param_dtype)
        # Running statistics are accumulators: at least float32 whatever
        # param_dtype (float64 when the params are, for exactness tests).
        stats = nn_ops.stats_dtype(self.param_dtype)
        mean = self.variable("batch_stats", "mean", jnp.zeros, shape, stats)
        var = self.variable("batch_stats", "var", jnp.ones, shape, stats)
        return scale, shift, mean, var


class Net(nn.Module):
    """Runs ``arch`` on an NHWC batch; returns (batch, num_classes) logits.

    Attributes:
      arch: the architecture.
      weight_format: format of the stored values read by the forward pass, or
        None for full precision (see the module docstring).
      activation_format: format of node outputs, or None.
      rounding: one of ``precision.ROUNDINGS``.
      dtype: computation dtype of activations (params are cast to it).
      param_dtype: storage dtype of params.
      conv_impl: convolution lowering, one of ``nn_ops.CONV_IMPLS``.
    """

    arch: arch_lib.Arch
    weight_format: Format = None
    activation_format: Format = None
    rounding: str = "nearest_even"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Forward pass; ``train`` selects batch statistics and updates them."""
        want = tuple(self.arch.input_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"Net expects inputs of shape (batch, {', '.join(map(str, want))}) "
                f"(NHWC); got {tuple(x.shape)}"
            )
        shapes = nn_ops.weight_shapes(self.arch)
        values: dict[str, jax.Array] = {}
        for node in self.arch.nodes:
            if node.op == "input":
                y = jnp.asarray(x, self.dtype)
            elif node.name in shapes:
                y = self._weighted(node, values[node.inputs[0]], shapes[node.name])
            else:
                y = self._node(node, [values[name] for name in node.inputs], train)
            if self.activation_format is not None and node.op in QUANTIZED_OUTPUTS:
                y = self._round(y, self.activation_format)
            values[node.name] = y
        # One entry, not one per node: node names are taken by the submodules.
        self.sow("intermediates", "node_outputs", values)
        return y

    def _round(self, x: jax.Array, fmt: Format) -> jax.Array:
        if fmt is None:
            return x
        stochastic = self.rounding == "stochastic"
        key = self.make_rng("quantize") if stochastic else None
        return nn_ops.round_to(x, precision.as_format(fmt), self.rounding, key)

    def _weight(self, w: jax.Array | None) -> jax.Array | None:
        if w is None:
            return None
        return self._round(w, self.weight_format).astype(self.dtype)

    def _weighted(
        self,
        node: arch_lib.Node,
        x: jax.Array,
        shape: tuple[tuple[int, ...], bool],
    ) -> jax.Array:
        kernel_shape, has_bias = shape
        weights = _Weights(kernel_shape, has_bias, self.param_dtype, name=node.name)
        kernel, bias = (self._weight(w) for w in weights())
        if node.op == "linear":
            return nn_ops.linear(x, kernel, bias)
        stride, padding = node.attr("stride"), node.attr("padding")
        groups = self.arch.groups(node)
        return nn_ops.conv2d(
            x,
            kernel,
            bias,
            stride=stride,
            padding=padding,
            groups=groups,
            impl=self.conv_impl,
        )

    def _node(
        self, node: arch_lib.Node, ins: list[jax.Array], train: bool
    ) -> jax.Array:
        op, x = node.op, ins[0]
        if op == "batchnorm":
            return self._batchnorm(node, x, train)
        if op == "relu":
            return jax.nn.relu(x)
        if op == "maxpool":
            return nn_ops.max_pool(
                x, node.attr("kernel"), node.attr("stride"), node.attr("padding")
            )
        if op == "avgpool":
            return nn_ops.avg_pool(x, node.attr("kernel"), node.attr("stride"))
        if op == "add":
            return functools.reduce(operator.add, ins)
        if op == "concat":
            return jnp.concatenate(ins, axis=-1)
        if op == "flatten":
            return nn_ops.flatten_chw(x)
        raise AssertionError(f"unhandled op {op!r}")  # arch_schema rejects others

    def _batchnorm(self, node: arch_lib.Node, x: jax.Array, train: bool) -> jax.Array:
        bn = _BatchNormVars(x.shape[-1], self.param_dtype, name=node.name)
        scale, shift, run_mean, run_var = bn()
        scale, shift = self._weight(scale), self._weight(shift)
        if train:
            mean, var, unbiased = nn_ops.batch_moments(x)
            if not self.is_initializing():  # as flax: init leaves the stats alone
                m = node.attr("momentum")
                run_mean.value = nn_ops.ema(run_mean.value, mean, m)
                run_var.value = nn_ops.ema(run_var.value, unbiased, m)
        else:
            mean = self._round(run_mean.value, self.weight_format)
            var = self._round(run_var.value, self.weight_format)
        return nn_ops.batch_norm(x, mean, var, scale, shift, node.attr("eps"))


def create_model(
    arch: arch_lib.Arch,
    *,
    weight_format: Format = None,
    activation_format: Format = None,
    rounding: str = "nearest_even",
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    conv_impl: str = "xla",
) -> Net:
    """Returns the ``Net`` of ``arch``, checking the options early.

    Args:
      arch: the architecture.
      weight_format: a ``precision.FloatFormat``, its text form ("e4m3") or None.
      activation_format: likewise, for node outputs.
      rounding: one of ``precision.ROUNDINGS``; "stochastic" needs a "quantize"
        RNG (``apply(..., key=...)``).
      dtype: computation dtype (float32, bfloat16 or float16).
      param_dtype: storage dtype of the params.
      conv_impl: convolution lowering, one of ``nn_ops.CONV_IMPLS`` (same
        maths; which is faster depends on the backend and the strategy).

    Returns:
      The module (formats parsed to ``FloatFormat``).
    """
    if rounding not in precision.ROUNDINGS:
        raise ValueError(
            f"rounding={rounding!r} is not one of {', '.join(precision.ROUNDINGS)}"
        )
    if conv_impl not in nn_ops.CONV_IMPLS:
        raise ValueError(
            f"conv_impl={conv_impl!r} is not one of {', '.join(nn_ops.CONV_IMPLS)}"
        )
    fmts = [
        None if f is None else precision.as_format(f)
        for f in (weight_format, activation_format)
    ]
    return Net(arch, fmts[0], fmts[1], rounding, dtype, param_dtype, conv_impl)


def variable_shapes(
    arch: arch_lib.Arch,
) -> dict[str, dict[str, dict[str, tuple[int, ...]]]]:
    """The shapes of ``init``'s variables, from the IR alone.

    Returns:
      {"params": {node: {"kernel"|"bias"|"scale": shape}}, "batch_stats":
      {node: {"mean"|"var": shape}}}, conv/linear nodes in node order, then
      BatchNorm nodes.
    """
    params, stats = {}, {}
    for name, (kernel, bias) in nn_ops.weight_shapes(arch).items():
        params[name] = {"kernel": kernel, **({"bias": kernel[-1:]} if bias else {})}
    for node in arch.nodes:
        if node.op == "batchnorm":
            c = arch.shapes[node.name][-1]
            params[node.name] = {"scale": (c,), "bias": (c,)}
            stats[node.name] = {"mean": (c,), "var": (c,)}
    return {"params": params, "batch_stats": stats}


class _RootKey(nn.Module):
    """Returns the root scope's first "params" key (see `_noise_key`)."""

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.make_rng("params")


def _noise_key(key: jax.Array) -> jax.Array:
    """The key of the weights' draw: what flax's ``Net.init`` with
    ``{"params": split(key)[0]}`` drew it from before ``init`` stopped tracing
    the network, so the values (and every search result) stay the same."""
    params_key, _ = jax.random.split(key)
    noise_key, _ = _RootKey().init_with_output({"params": params_key})
    return noise_key


def init(model: Net, key: jax.Array) -> Variables:
    """Initialises the variables of ``model`` (PyTorch's defaults, see above).

    Every conv/linear kernel and bias, in node order, takes its slice of one
    U(-1, 1) draw of all of them (one threefry program per network size:
    XLA compiles each threefry call separately), times its bound
    1/sqrt(fan_in). Outside a trace the slicing runs in numpy, so nothing
    else is compiled; under ``jax.vmap`` or ``jax.eval_shape`` it is traced.

    Args:
      model: a ``Net`` (its arch and param_dtype matter).
      key: PRNG key. Values are deterministic given the key and the arch.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` (batch_stats is {} without BN).
    """
    arch, dtype = model.arch, model.param_dtype
    shapes = variable_shapes(arch)
    weights = nn_ops.weight_shapes(arch)
    total = sum(math.prod(k) + (k[-1] if bias else 0) for k, bias in weights.values())
    noise = jax.random.uniform(_noise_key(key), (total,), jnp.float32, -1.0, 1.0)
    traced = isinstance(noise, jax.core.Tracer)
    xp = jnp if traced else np
    noise = noise if traced else np.asarray(noise)
    stats_dtype = nn_ops.stats_dtype(dtype)
    params, stats, offset = {}, {}, 0
    nodes = {node.name: node for node in arch.nodes}
    for name, leaves in shapes["params"].items():
        node = nodes[name]
        if name in weights:
            bound = nn_ops.torch_bound(nn_ops.fan_in(arch, node))
            params[name] = {}
            for leaf in ("kernel", "bias"):
                if leaf not in leaves:
                    continue
                size = math.prod(leaves[leaf])
                values = noise[offset : offset + size] * xp.float32(bound)
                params[name][leaf] = values.reshape(leaves[leaf]).astype(dtype)
                offset += size
        else:  # batchnorm
            c = leaves["scale"]
            params[name] = {"scale": xp.ones(c, dtype), "bias": xp.zeros(c, dtype)}
            stats[name] = {
                "mean": xp.zeros(c, stats_dtype),
                "var": xp.ones(c, stats_dtype),
            }
    variables = {"params": params, "batch_stats": stats}
    return variables if traced else jax.device_put(variables)


def apply(
    model: Net,
    variables: Variables,
    x: jax.Array,
    *,
    train: bool = False,
    key: jax.Array | None = None,
) -> jax.Array | tuple[jax.Array, Any]:
    """Runs the forward pass (not jitted: wrap the call in ``jax.jit``).

    Args:
      model: a ``Net``.
      variables: ``{"params", "batch_stats"}`` as returned by ``init``.
      x: (batch, H, W, C) inputs.
      train: use batch statistics and update the running ones.
      key: PRNG key for stochastic rounding (required then, else unused).

    Returns:
      Eval: the logits (batch, num_classes). Train: (logits, new batch_stats).
    """
    variables = {name: variables[name] for name in COLLECTIONS if name in variables}
    if model.rounding == "stochastic" and key is None:
        raise ValueError('a model with rounding="stochastic" needs apply(..., key=...)')
    rngs = None if key is None else {"quantize": key}
    if not train:
        return model.apply(variables, x, train=False, rngs=rngs)
    logits, updates = model.apply(
        variables, x, train=True, rngs=rngs, mutable=["batch_stats"]
    )
    return logits, updates.get("batch_stats", {})


def param_count(variables: Variables) -> dict[str, int]:
    """Counts scalar elements per collection (arrays or ``jax.eval_shape`` output).

    Args:
      variables: ``{"params", "batch_stats"}`` (other collections are ignored).

    Returns:
      {"params": trainable elements, "batch_stats": running statistics,
      "total": their sum}.
    """
    counts = {}
    for name in COLLECTIONS:
        leaves = jax.tree.leaves(variables.get(name, {}))
        counts[name] = sum(math.prod(leaf.shape) for leaf in leaves)
    counts["total"] = counts["params"] + counts["batch_stats"]
    return counts
