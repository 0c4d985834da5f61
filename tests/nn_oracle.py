"""An independent NumPy oracle for jnas.nn: PyTorch semantics, float64, loops.

Works in NCHW with PyTorch-layout weights (conv (C_out, C_in/G, kh, kw), linear
(n_out, n_in)), converted from jnas.nn's variables, so a match also checks the
documented weight interchange. Eval mode only (running statistics).
"""

import numpy as np

from jnas import arch


def tiny_arch() -> arch.Arch:
    """Every op and the awkward attributes: groups, depthwise with a channel
    multiplier, rectangular kernels and strides, padded max pool with floor,
    concat order, flatten of a 2x2 map."""
    n = arch.Node
    return arch.Arch(
        (
            n("input", "input"),
            # floor((7 + 2 - 3) / 2) + 1 = 4
            n(
                "c1",
                "conv",
                ("input",),
                {
                    "out_channels": 6,
                    "kernel": 3,
                    "stride": 2,
                    "padding": 1,
                    "groups": 2,
                    "bias": True,
                },
            ),
            n(
                "c2",
                "conv",
                ("c1",),
                {
                    "out_channels": 12,
                    "kernel": (3, 1),
                    "padding": (1, 0),
                    "groups": "depthwise",
                },
            ),
            n("bn", "batchnorm", ("c2",)),
            # floor((4 + 2 - 3) / 2) + 1 = 2; negative inputs, so -inf padding matters
            n("mp", "maxpool", ("bn",), {"kernel": 3, "stride": 2, "padding": 1}),
            n("r", "relu", ("c1",)),
            n("ap", "avgpool", ("r",), {"kernel": (2, 3), "stride": (2, 1)}),
            n("c3", "conv", ("ap",), {"out_channels": 12, "kernel": 1}),
            n("sum", "add", ("mp", "c3")),
            n("cat", "concat", ("sum", "ap")),
            n("flat", "flatten", ("cat",)),
            n("fc", "linear", ("flat",), {"out_features": 10}),
        ),
        input_shape=(7, 7, 4),
    )


def conv_bn_arch(momentum: float = 0.1) -> arch.Arch:
    """input 4x4x3 -> conv 3x3 -> BN -> flatten -> linear."""
    n = arch.Node
    return arch.Arch(
        (
            n("input", "input"),
            n(
                "conv",
                "conv",
                ("input",),
                {"out_channels": 5, "kernel": 3, "padding": 1},
            ),
            n("bn", "batchnorm", ("conv",), {"momentum": momentum}),
            n("flat", "flatten", ("bn",)),
            n("fc", "linear", ("flat",), {"out_features": 10}),
        ),
        input_shape=(4, 4, 3),
    )


def random_variables(variables, seed: int):
    """Same structure, random float32 values (variances positive)."""
    rng = np.random.default_rng(seed)

    def draw(collection, leaf_name, shape):
        if collection == "batch_stats" and leaf_name == "var":
            return rng.uniform(0.5, 2.0, shape).astype(np.float32)
        return rng.normal(0.0, 0.5, shape).astype(np.float32)

    return {
        col: {
            node: {k: draw(col, k, np.shape(v)) for k, v in leaves.items()}
            for node, leaves in variables[col].items()
        }
        for col in ("params", "batch_stats")
    }


def _conv(x, w, b, stride, padding, groups):
    n, c_in, h, wd = x.shape
    c_out, c_in_g, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.zeros((n, c_in, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph : ph + h, pw : pw + wd] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n, c_out, ho, wo))
    c_out_g = c_out // groups
    for co in range(c_out):
        g = co // c_out_g
        for i in range(ho):
            for j in range(wo):
                patch = xp[
                    :,
                    g * c_in_g : (g + 1) * c_in_g,
                    i * sh : i * sh + kh,
                    j * sw : j * sw + kw,
                ]
                out[:, co, i, j] = np.sum(patch * w[co], axis=(1, 2, 3))
    return out if b is None else out + b[None, :, None, None]


def _pool(x, kernel, stride, padding, reduce):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), -np.inf)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = reduce(
                xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            )
    return out


def forward(net: arch.Arch, variables, x_nhwc) -> dict:
    """Every node's output (NHWC or (N, F), float64) of the eval forward pass."""
    params, stats = variables["params"], variables["batch_stats"]
    vals = {}
    for node in net.nodes:
        ins = [vals[i] for i in node.inputs]
        p = params.get(node.name, {})
        if node.op == "input":
            y = np.transpose(np.asarray(x_nhwc, np.float64), (0, 3, 1, 2))
        elif node.op == "conv":
            w = np.transpose(p["kernel"], (3, 2, 0, 1)).astype(np.float64)  # HWIO->OIHW
            y = _conv(
                ins[0],
                w,
                p.get("bias"),
                node.attr("stride"),
                node.attr("padding"),
                net.groups(node),
            )
        elif node.op == "batchnorm":
            s = stats[node.name]
            shape = (1, -1, 1, 1)
            y = (ins[0] - s["mean"].reshape(shape)) / np.sqrt(
                s["var"].reshape(shape).astype(np.float64) + node.attr("eps")
            ) * p["scale"].reshape(shape) + p["bias"].reshape(shape)
        elif node.op == "relu":
            y = np.maximum(ins[0], 0.0)
        elif node.op == "maxpool":
            y = _pool(
                ins[0],
                node.attr("kernel"),
                node.attr("stride"),
                node.attr("padding"),
                lambda v: v.max(axis=(2, 3)),
            )
        elif node.op == "avgpool":
            y = _pool(
                ins[0],
                node.attr("kernel"),
                node.attr("stride"),
                (0, 0),
                lambda v: v.mean(axis=(2, 3)),
            )
        elif node.op == "add":
            y = sum(ins)
        elif node.op == "concat":
            y = np.concatenate(ins, axis=1)
        elif node.op == "flatten":
            y = ins[0].reshape(ins[0].shape[0], -1)  # NCHW: (C, H, W) order
        elif node.op == "linear":
            y = ins[0] @ p["kernel"].astype(np.float64) + p["bias"]  # = x W^T + b
        vals[node.name] = y
    return {
        k: np.transpose(v, (0, 2, 3, 1)) if v.ndim == 4 else v for k, v in vals.items()
    }
