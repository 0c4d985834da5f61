"""Numeric primitives of ``jnas.nn``: pure functions on NHWC arrays.

Each function does the maths of one IR op (``jnas.arch``) with the release's
(PyTorch's) semantics, so that weights interchange with the PyTorch networks:

- conv kernels are HWIO, ``(kh, kw, C_in / groups, C_out)``: a PyTorch weight
  ``(C_out, C_in / groups, kh, kw)`` maps to it by ``transpose(2, 3, 1, 0)``;
- linear kernels are ``(n_in, n_out)``, the transpose of PyTorch's;
- flatten reads (C, H, W) order, as PyTorch's NCHW ``view(N, -1)``;
- max pooling pads with -inf, every pooling floors the output size;
- batch norm normalises with the biased batch variance but updates the running
  variance with the unbiased one (PyTorch ``BatchNorm2d``).

Nothing here owns parameters; ``jnas.nn`` declares them and calls these
(``round_to`` adapts ``precision.quantize`` to any carrier and shape).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnas import arch as arch_lib
from jnas import precision

_CONV_DIMS = ("NHWC", "HWIO", "NHWC")


def fan_in(arch: arch_lib.Arch, node: arch_lib.Node) -> int:
    """Returns the true fan-in of a conv or linear node of ``arch``.

    The initialisation scale depends on it, so a population engine that pads
    widths must initialise with this value of the unpadded candidate.

    Args:
      arch: the architecture holding ``node``.
      node: a conv or linear node.

    Returns:
      ``(C_in / groups) * kh * kw`` for a conv, ``n_in`` for a linear.
    """
    in_shape = arch.shapes[node.inputs[0]]
    if node.op == "conv":
        kh, kw = node.attr("kernel")
        return in_shape[-1] // arch.groups(node) * kh * kw
    if node.op == "linear":
        return in_shape[0]
    raise ValueError(f"node '{node.name}' ({node.op}) has no fan-in; conv or linear")


def weight_shapes(arch: arch_lib.Arch) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Returns {node name: (kernel shape, has bias)} of every conv and linear.

    Args:
      arch: the architecture.

    Returns:
      Conv kernels are (kh, kw, C_in / groups, C_out), linear ones (n_in, n_out),
      in node order.
    """
    out = {}
    for node in arch.nodes:
        if node.op == "conv":
            c_in = arch.shapes[node.inputs[0]][-1]
            kh, kw = node.attr("kernel")
            groups = arch.groups(node)
            out[node.name] = (
                (kh, kw, c_in // groups, node.attr("out_channels")),
                node.attr("bias"),
            )
        elif node.op == "linear":
            n_in = arch.shapes[node.inputs[0]][0]
            out[node.name] = ((n_in, node.attr("out_features")), node.attr("bias"))
    return out


def torch_bound(fan: int) -> float:
    """Returns the half-width of PyTorch's default conv/linear initialisation.

    ``kaiming_uniform_(a=sqrt(5))`` on a weight and PyTorch's bias rule both
    reduce to U(-b, b) with b = 1/sqrt(fan_in).

    Args:
      fan: the fan-in (see ``fan_in``).

    Returns:
      b = 1 / sqrt(fan).
    """
    return 1.0 / math.sqrt(fan)


CONV_IMPLS = ("xla", "im2col")


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None,
    *,
    stride: tuple[int, int],
    padding: tuple[int, int],
    groups: int,
    impl: str = "xla",
) -> jax.Array:
    """2-D cross-correlation with symmetric zero padding (PyTorch ``Conv2d``).

    Args:
      x: (N, H, W, C_in).
      kernel: (kh, kw, C_in / groups, C_out).
      bias: (C_out,) or None.
      stride: (sh, sw).
      padding: (ph, pw), applied on both sides.
      groups: resolved group count (C_in for depthwise).
      impl: "xla" (``lax.conv_general_dilated``) or "im2col" (``conv2d_im2col``:
        the same maths as slices and matmuls, which XLA:CPU runs much faster
        inside ``lax.map`` and differentiates without grouped convolutions).

    Returns:
      (N, H_out, W_out, C_out) with floor output sizes.
    """
    if impl == "im2col":
        y = conv2d_im2col(x, kernel, stride=stride, padding=padding, groups=groups)
        return y if bias is None else y + bias
    if impl != "xla":
        raise ValueError(f"conv impl {impl!r} is not one of {', '.join(CONV_IMPLS)}")
    (ph, pw) = padding
    y = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=stride,
        padding=((ph, ph), (pw, pw)),
        dimension_numbers=_CONV_DIMS,
        feature_group_count=groups,
    )
    return y if bias is None else y + bias


def conv2d_im2col(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: tuple[int, int],
    padding: tuple[int, int],
    groups: int,
) -> jax.Array:
    """``conv2d`` without bias, lowered to strided slices and matmuls.

    Why: XLA:CPU's convolution gradients are slow for small networks, and
    inside ``lax.map`` (the population engine's per-candidate loop) its
    convolutions lose their fast path; slices, concatenation and dot products
    keep theirs. Dense: the kh*kw shifted windows are concatenated on the
    channel axis (im2col) and multiplied by the (kh*kw*C_in, C_out) kernel;
    1x1 convolutions are a plain matmul. Depthwise: a sum over the kh*kw
    windows of elementwise products (no matmul to gain). Grouped: one batched
    matmul over the groups.
    """
    n, h, w, c = x.shape
    kh, kw, cin_g, cout = kernel.shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ph or pw:
        x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    windows = [
        jax.lax.slice(
            x,
            (0, i, j, 0),
            (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
            (1, sh, sw, 1),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    if groups == c and cin_g == 1 and c > 1:  # depthwise, multiplier cout // c
        mult = cout // c
        taps = kernel.reshape(kh * kw, c, mult)
        y = sum(win[..., None] * taps[t] for t, win in enumerate(windows))
        return y.reshape(n, ho, wo, cout)
    if groups == 1:
        patches = windows[0] if len(windows) == 1 else jnp.concatenate(windows, -1)
        y = patches.reshape(-1, kh * kw * c) @ kernel.reshape(-1, cout)
        return y.reshape(n, ho, wo, cout)
    cout_g = cout // groups
    patches = jnp.stack(windows, axis=3).reshape(n * ho * wo, kh * kw, groups, cin_g)
    k = kernel.reshape(kh * kw, cin_g, groups, cout_g)
    y = jnp.einsum("ptgi,tigo->pgo", patches, k)
    return y.reshape(n, ho, wo, cout)


def max_pool(
    x: jax.Array,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> jax.Array:
    """Max pooling; padded cells are -inf, so they never win (PyTorch)."""
    (ph, pw) = padding
    return jax.lax.reduce_window(
        x,
        -jnp.inf,  # the monoid identity: JAX lowers this to a differentiable max
        jax.lax.max,
        (1, *kernel, 1),
        (1, *stride, 1),
        ((0, 0), (ph, ph), (pw, pw), (0, 0)),
    )


def avg_pool(
    x: jax.Array, kernel: tuple[int, int], stride: tuple[int, int]
) -> jax.Array:
    """Average pooling without padding (the spaces never pad an average pool)."""
    total = jax.lax.reduce_window(
        x, 0.0, jax.lax.add, (1, *kernel, 1), (1, *stride, 1), "VALID"
    )
    return total / np.asarray(kernel[0] * kernel[1], dtype=x.dtype)


def flatten_chw(x: jax.Array) -> jax.Array:
    """Flattens (N, H, W, C) in (C, H, W) order, like PyTorch on NCHW."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def linear(x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
    """``x @ kernel + bias`` with an (n_in, n_out) kernel."""
    y = x @ kernel
    return y if bias is None else y + bias


def batch_moments(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-channel batch statistics of an NHWC tensor, in at least float32.

    Two passes (mean, then mean of squared deviations) rather than
    E[x^2] - E[x]^2, which cancels badly when |mean| >> std.

    Args:
      x: (N, H, W, C).

    Returns:
      (mean, biased variance, unbiased variance), each (C,) in `stats_dtype(x)`
      (float32, or float64 for float64 inputs, which exactness tests use). With a
      single value per channel (N * H * W == 1) the unbiased variance is
      undefined; PyTorch refuses to train then, here it falls back to the
      biased one (0) so that batch-1 smoke runs stay finite.
    """
    x = x.astype(stats_dtype(x.dtype))
    count = x.shape[0] * x.shape[1] * x.shape[2]
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
    unbiased = var * (count / max(count - 1, 1))
    return mean, var, unbiased


def batch_norm(
    x: jax.Array,
    mean: jax.Array,
    var: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    eps: float,
) -> jax.Array:
    """``(x - mean) / sqrt(var + eps) * scale + bias`` per channel (last axis).

    Computed in at least float32 whatever x's dtype (as flax does) and returned
    in it.
    """
    acc = stats_dtype(x.dtype)
    inv = jax.lax.rsqrt(var.astype(acc) + eps) * scale.astype(acc)
    y = (x.astype(acc) - mean.astype(acc)) * inv
    return (y + bias.astype(acc)).astype(x.dtype)


def stats_dtype(dtype: Any) -> Any:
    """The dtype of BatchNorm arithmetic: float32, or wider if `dtype` is."""
    return jnp.promote_types(dtype, jnp.float32)


def ema(old: jax.Array, new: jax.Array, momentum: float) -> jax.Array:
    """Running-statistics update in PyTorch's sense: (1 - m) * old + m * new."""
    return (1.0 - momentum) * old + momentum * new


def round_to(
    x: jax.Array,
    fmt: precision.FloatFormat,
    rounding: str,
    key: jax.Array | None = None,
) -> jax.Array:
    """``precision.quantize`` for any carrier dtype and shape.

    Args:
      x: array of any float dtype.
      fmt: the target format.
      rounding: one of ``precision.ROUNDINGS``.
      key: PRNG key, for (and only for) stochastic rounding.

    Returns:
      x rounded to ``fmt``, in x's dtype and shape. A format wider than a
      half-width carrier (e5m10 on bfloat16) is rounded in float32, and the
      cast back then rounds a second time, to the carrier.
    """
    info = jnp.finfo(x.dtype)
    fits = fmt.exponent_bits <= info.nexp and fmt.mantissa_bits <= info.nmant
    # Flat: stochastic rounding draws x.shape random bits, and XLA compiles a
    # 1-D threefry ~10x faster than a 4-D one.
    flat = x.reshape(-1) if fits else x.reshape(-1).astype(jnp.float32)
    y = precision.quantize(flat, fmt, rounding=rounding, key=key)
    return y.astype(x.dtype).reshape(x.shape)
