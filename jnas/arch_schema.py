"""Schema of the architecture IR: per-op attributes, validation, shape inference.

``jnas.arch`` documents the ops; this module checks them. Every error is a
ValueError that names the node, the attribute and the allowed values.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

DEPTHWISE = "depthwise"
_REQUIRED = object()
Shape = tuple[int, ...]


def _int(where: str, value: Any, minimum: int) -> int:
    if type(value) is not int:  # fast path first: builders make ~10^5 nodes/s
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{where} must be an int; got {value!r}")
        value = int(value)
    if value < minimum:
        raise ValueError(f"{where} must be >= {minimum}; got {value}")
    return value


def _pair(minimum: int) -> Callable[[str, Any], tuple[int, int]]:
    def check(where: str, value: Any) -> tuple[int, int]:
        if type(value) is tuple or isinstance(value, list):
            if len(value) != 2:
                raise ValueError(f"{where} must be an int or a pair; got {value!r}")
            return (_int(where, value[0], minimum), _int(where, value[1], minimum))
        v = _int(where, value, minimum)
        return (v, v)

    return check


def _positive_int(where: str, value: Any) -> int:
    return _int(where, value, 1)


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false; got {value!r}")
    return value


def _float_in(low: float, high: float) -> Callable[[str, Any], float]:
    def check(where: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{where} must be a number; got {value!r}")
        if not low < value < high:
            raise ValueError(f"{where} must lie in ({low}, {high}); got {value!r}")
        return float(value)

    return check


def _groups(where: str, value: Any) -> int | str:
    if isinstance(value, str):
        if value == DEPTHWISE:
            return DEPTHWISE
        raise ValueError(
            f"{where} must be a positive int or {DEPTHWISE!r}; got {value!r}"
        )
    return _int(where, value, 1)


def _order(where: str, value: Any) -> str:
    if value != "chw":
        raise ValueError(f"{where} must be 'chw'; got {value!r}")
    return value


# op -> {attribute: (check, default)}; _REQUIRED marks attributes without default.
# A pool's stride default None means "equal to the kernel".
SCHEMA: dict[str, dict[str, tuple[Callable, Any]]] = {
    "input": {},
    "conv": {
        "out_channels": (_positive_int, _REQUIRED),
        "kernel": (_pair(1), _REQUIRED),
        "stride": (_pair(1), 1),
        "padding": (_pair(0), 0),
        "groups": (_groups, 1),
        "bias": (_bool, False),
    },
    "batchnorm": {
        "eps": (_float_in(0.0, 1.0), 1e-5),
        "momentum": (_float_in(0.0, 1.0), 0.1),
    },
    "relu": {"counted": (_bool, False)},
    "maxpool": {
        "kernel": (_pair(1), _REQUIRED),
        "stride": (_pair(1), None),
        "padding": (_pair(0), 0),
        "counted": (_bool, False),
    },
    "avgpool": {
        "kernel": (_pair(1), _REQUIRED),
        "stride": (_pair(1), None),
        "counted": (_bool, False),
    },
    "add": {},
    "concat": {},
    "flatten": {"order": (_order, "chw")},
    "linear": {"out_features": (_positive_int, _REQUIRED), "bias": (_bool, True)},
}
OPS = tuple(SCHEMA)
# op -> (min inputs, max inputs or None for unbounded)
_ARITY = {"input": (0, 0), "add": (2, None), "concat": (2, None)}


def normalize_attrs(name: str, op: Any, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Checks ``attrs`` of one node and returns them with defaults filled.

    Args:
      name: the node name (for messages).
      op: the op, one of ``OPS``.
      attrs: the given attributes.

    Returns:
      A new dict with every attribute of the op, normalised (pairs as tuples).
    """
    if not isinstance(op, str) or op not in SCHEMA:
        raise ValueError(f"node '{name}': unknown op {op!r}; allowed: {', '.join(OPS)}")
    schema = SCHEMA[op]
    for key in attrs:
        if key not in schema:
            allowed = ", ".join(schema) or "none"
            raise ValueError(
                f"node '{name}' ({op}): unknown attribute {key!r}; allowed: {allowed}"
            )
    out = {}
    for key, (check, default) in schema.items():
        where = f"node '{name}' ({op}): attribute '{key}'"
        if key in attrs and attrs[key] is not None:
            out[key] = check(where, attrs[key])
        elif default is _REQUIRED:
            raise ValueError(f"{where} is required")
        elif default is None:  # pool stride defaults to the kernel
            out[key] = out["kernel"]
        else:
            out[key] = check(where, default)
    return out


def check_arity(name: str, op: str, count: int) -> None:
    """Raises ValueError unless ``op`` accepts ``count`` inputs."""
    low, high = _ARITY.get(op, (1, 1))
    if count < low or (high is not None and count > high):
        want = f"{low}" if low == high else f"at least {low}"
        raise ValueError(f"node '{name}' ({op}): takes {want} input(s); got {count}")


def check_input_shape(shape: Any) -> tuple[int, int, int]:
    """Returns ``shape`` as an (H, W, C) tuple of positive ints or raises."""
    if not isinstance(shape, (list, tuple)) or len(shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C); got {shape!r}")
    return tuple(_int("input_shape entry", v, 1) for v in shape)


def check_meta(meta: Any) -> dict[str, Any]:
    """Returns ``meta`` as a dict of str -> JSON scalar or raises."""
    items = meta.items() if isinstance(meta, Mapping) else meta
    out = {}
    for key, value in items:
        if not isinstance(key, str):
            raise ValueError(f"meta keys must be strings; got {key!r}")
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"meta field '{key}' must be a JSON scalar; got {value!r}")
        out[key] = value
    return out


def resolve_groups(node: Any, in_channels: int) -> int:
    """Returns the group count of a conv node ("depthwise" -> ``in_channels``)."""
    groups = node.attr("groups")
    return in_channels if groups == DEPTHWISE else groups


def _spatial(node: Any, h: int, w: int, pad: tuple[int, int]) -> tuple[int, int]:
    (kh, kw), (sh, sw) = node.attr("kernel"), node.attr("stride")
    if h + 2 * pad[0] < kh or w + 2 * pad[1] < kw:
        raise ValueError(
            f"node '{node.name}' ({node.op}): kernel {(kh, kw)} larger than the "
            f"padded input {(h + 2 * pad[0], w + 2 * pad[1])}"
        )
    # floor rounding, as every pooling/conv of the spaces
    return ((h + 2 * pad[0] - kh) // sh + 1, (w + 2 * pad[1] - kw) // sw + 1)


def _feature_map(node: Any, shape: Shape) -> Shape:
    if len(shape) != 3:
        raise ValueError(
            f"node '{node.name}' ({node.op}): needs an (H, W, C) input; got {shape}"
        )
    return shape


def _infer(node: Any, ins: Sequence[Shape]) -> Shape:
    op = node.op
    if op == "relu":
        return ins[0]
    if op == "batchnorm":
        return _feature_map(node, ins[0])
    if op == "conv":
        h, w, c = _feature_map(node, ins[0])
        out, groups = node.attr("out_channels"), resolve_groups(node, c)
        if c % groups or out % groups:
            raise ValueError(
                f"node '{node.name}' (conv): in_channels {c} and out_channels {out} "
                f"must both be divisible by groups {groups}"
            )
        return (*_spatial(node, h, w, node.attr("padding")), out)
    if op == "maxpool":
        h, w, c = _feature_map(node, ins[0])
        (kh, kw), (ph, pw) = node.attr("kernel"), node.attr("padding")
        if 2 * ph > kh or 2 * pw > kw:  # PyTorch's limit: padding <= kernel / 2
            raise ValueError(
                f"node '{node.name}' (maxpool): padding {(ph, pw)} exceeds half the "
                f"kernel {(kh, kw)}"
            )
        return (*_spatial(node, h, w, (ph, pw)), c)
    if op == "avgpool":
        h, w, c = _feature_map(node, ins[0])
        return (*_spatial(node, h, w, (0, 0)), c)
    if op == "add":
        if any(s != ins[0] for s in ins[1:]):
            raise ValueError(
                f"node '{node.name}' (add): inputs {list(node.inputs)} have different "
                f"shapes {list(ins)}"
            )
        return ins[0]
    if op == "concat":
        maps = [_feature_map(node, s) for s in ins]
        if any(s[:2] != maps[0][:2] for s in maps[1:]):
            raise ValueError(
                f"node '{node.name}' (concat): inputs {list(node.inputs)} differ in "
                f"spatial size {list(ins)}"
            )
        return (*maps[0][:2], sum(s[2] for s in maps))
    if op == "flatten":
        h, w, c = _feature_map(node, ins[0])
        return (h * w * c,)
    if op == "linear":
        if len(ins[0]) != 1:
            raise ValueError(
                f"node '{node.name}' (linear): needs a flat (N,) input; got {ins[0]}"
            )
        return (node.attr("out_features"),)
    raise AssertionError(op)  # normalize_attrs already rejected unknown ops


def infer_shapes(nodes: Sequence[Any], input_shape: Shape) -> dict[str, Shape]:
    """Checks the graph and returns every node's output shape.

    Args:
      nodes: the nodes in topological order; the first must be the only input.
      input_shape: (H, W, C) of the input.

    Returns:
      Node name -> output shape.

    Raises:
      ValueError: on duplicate names, references to unknown or later nodes, a
        misplaced input node, unconsumed nodes, or inconsistent shapes.
    """
    if not nodes or nodes[0].op != "input":
        raise ValueError("the first node must be the input node (op 'input')")
    shapes: dict[str, Shape] = {}
    used: set[str] = set()
    for node in nodes:
        if node.name in shapes:
            raise ValueError(f"duplicate node name '{node.name}'")
        if node.op == "input" and shapes:
            raise ValueError(f"node '{node.name}': only the first node may be 'input'")
        for src in node.inputs:
            if src not in shapes:
                raise ValueError(
                    f"node '{node.name}': input '{src}' is not an earlier node "
                    "(nodes must be in topological order)"
                )
        used.update(node.inputs)
        shape = (
            input_shape
            if node.op == "input"
            else _infer(node, [shapes[src] for src in node.inputs])
        )
        shapes[node.name] = shape
    dangling = [n.name for n in nodes[:-1] if n.name not in used]
    if dangling:
        raise ValueError(
            f"nodes {dangling} are never consumed (only the last node may be an output)"
        )
    return shapes
