"""The folded network as an ONNX model (float32, or float16 weights).

For users who deploy through onnxruntime or a converter (TFLite, vendor
toolchains). The graph is the folded inference network (`fold`) in ONNX's
NCHW layout: Conv (with group, pads, strides), MaxPool, AveragePool, Relu,
Sum, Concat, Flatten, Gemm, and the BatchNorms that cannot fold as Mul + Add.
``dtype="float16"`` stores every weight as float16 (half the file) and casts
it to float32 in the graph, so the arithmetic is float32 as in the C runtime:
the model equals jnas's forward with the weights rounded to half.

Needs the ``onnx`` package (``pip install -e ".[export]"``); it is imported
only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jnas.export import fold as fold_lib

DTYPES = ("float32", "float16")
OPSET = 17


def build(folded: fold_lib.Folded, dtype: str = "float32") -> Any:
    """The ``onnx.ModelProto`` of a folded network (input "image", NCHW).

    Raises:
      ValueError: an unknown ``dtype``.
      ImportError: the onnx package is missing (says how to install it).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {', '.join(DTYPES)}")
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as e:
        raise ImportError(
            "ONNX export needs the onnx package: pip install -e '.[export]'"
        ) from e
    arch = folded.arch
    params = folded.variables["params"]
    nodes, inits = [], []

    def weight(name: str, value: np.ndarray) -> str:
        """An initializer (cast to float32 in the graph when stored as half)."""
        value = np.asarray(value, np.float32)
        if dtype == "float32":
            inits.append(numpy_helper.from_array(value, name))
            return name
        inits.append(numpy_helper.from_array(value.astype(np.float16), name + "_h"))
        nodes.append(
            helper.make_node("Cast", [name + "_h"], [name], to=TensorProto.FLOAT)
        )
        return name

    for node in arch.nodes:
        ins, out, op = list(node.inputs), node.name, node.op
        if op == "input":
            continue
        if op == "conv":
            p = params[node.name]
            kernel = np.transpose(p["kernel"], (3, 2, 0, 1))  # (O, I/g, kh, kw)
            args = [ins[0], weight(out + ".W", kernel)]
            if "bias" in p:
                args.append(weight(out + ".B", p["bias"]))
            ph, pw = node.attr("padding")
            nodes.append(
                helper.make_node(
                    "Conv",
                    args,
                    [out],
                    group=arch.groups(node),
                    kernel_shape=list(node.attr("kernel")),
                    strides=list(node.attr("stride")),
                    pads=[ph, pw, ph, pw],
                )
            )
        elif op == "linear":
            p = params[node.name]
            args = [ins[0], weight(out + ".W", p["kernel"])]
            if "bias" in p:
                args.append(weight(out + ".B", p["bias"]))
            nodes.append(helper.make_node("Gemm", args, [out]))
        elif op == "batchnorm":  # an affine that could not fold
            p = params[node.name]
            scale = weight(out + ".s", p["scale"].reshape(1, -1, 1, 1))
            shift = weight(out + ".t", p["bias"].reshape(1, -1, 1, 1))
            nodes.append(helper.make_node("Mul", [ins[0], scale], [out + ".x"]))
            nodes.append(helper.make_node("Add", [out + ".x", shift], [out]))
        elif op == "relu":
            nodes.append(helper.make_node("Relu", ins, [out]))
        elif op in ("maxpool", "avgpool"):  # jnas never pads an average pool
            window = {
                "kernel_shape": list(node.attr("kernel")),
                "strides": list(node.attr("stride")),
            }
            if op == "maxpool":
                ph, pw = node.attr("padding")
                window["pads"] = [ph, pw, ph, pw]
            kind = "MaxPool" if op == "maxpool" else "AveragePool"
            nodes.append(helper.make_node(kind, ins, [out], **window))
        elif op == "add":
            nodes.append(helper.make_node("Sum", ins, [out]))
        elif op == "concat":
            nodes.append(helper.make_node("Concat", ins, [out], axis=1))
        elif op == "flatten":  # NCHW flatten: (C, H, W) order, as jnas's
            nodes.append(helper.make_node("Flatten", ins, [out], axis=1))
        else:  # arch_schema admits no other op
            raise AssertionError(f"unhandled op {op!r}")
    h, w, c = arch.input_shape
    first = arch.nodes[0].name
    graph = helper.make_graph(
        nodes,
        f"jnas_{arch.hash[:12]}",
        [helper.make_tensor_value_info(first, TensorProto.FLOAT, ["N", c, h, w])],
        [
            helper.make_tensor_value_info(
                arch.nodes[-1].name, TensorProto.FLOAT, ["N", arch.num_classes]
            )
        ],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="jnas",
    )
    onnx.checker.check_model(model)
    return model


def save(folded: fold_lib.Folded, path: str | Path, dtype: str = "float32") -> Path:
    """Writes the ONNX model of `build` to ``path``."""
    model = build(folded, dtype)
    path = Path(path)
    path.write_bytes(model.SerializeToString())
    return path
