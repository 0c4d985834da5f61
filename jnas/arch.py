"""The architecture IR: a DAG of typed nodes in execution (topological) order.

Every consumer (cost model, latency predictor, flax builder, population bucketing,
results) reads this one representation; search spaces only emit it. The module
knows no search space and no framework (no JAX import).

Tensors are HWC at batch 1: a feature map has shape ``(H, W, C)``, a vector
``(N,)``. Ops and their attributes (all stored explicitly after defaults fill):

| op        | inputs | attributes                                                 |
|-----------|--------|------------------------------------------------------------|
| input     | 0      | -  (shape is ``Arch.input_shape``)                         |
| conv      | 1      | out_channels, kernel (kh, kw), stride (sh, sw),            |
|           |        | padding (ph, pw), groups (int or "depthwise"), bias        |
| batchnorm | 1      | eps (1e-5), momentum (0.1, PyTorch sense)                  |
| relu      | 1      | counted                                                    |
| maxpool   | 1      | kernel, stride (default kernel), padding (pads -inf),      |
|           |        | counted                                                    |
| avgpool   | 1      | kernel, stride (default kernel), counted  (never pads)     |
| add       | >= 2   | -                                                          |
| concat    | >= 2   | -  (channel order = input order)                           |
| flatten   | 1      | order ("chw": the release flattens NCHW as C, H, W)        |
| linear    | 1      | out_features, bias                                         |

``groups="depthwise"`` means one group per input channel (groups = C_in, C_out a
multiple of C_in). It is a rule rather than a number so that it follows the
widths: two networks differing only in widths keep equal skeletons.

``counted`` marks ReLU/pool nodes that the release's FLOP counter sees (a layer
object, not a functional call; search-spaces.md section 10.2). Keeping it in the
IR lets the cost model apply one rule to every family.

The schema itself (attribute tables, checks, shape inference) lives in
``jnas.arch_schema``; this module holds the ``Node``/``Arch`` types, canonical
JSON and the content hashes.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from jnas import arch_schema

VERSION = 1
OPS = arch_schema.OPS
# Attributes that are channel widths. Skeletons drop them; the population engine
# pads exactly these. Input widths of convs/linears are inferred, never stored.
WIDTH_ATTRS = {"conv": ("out_channels",), "linear": ("out_features",)}
DEPTHWISE = arch_schema.DEPTHWISE
Shape = tuple[int, ...]


def _freeze(mapping: Mapping[str, Any] | tuple) -> tuple[tuple[str, Any], ...]:
    if type(mapping) is dict or isinstance(mapping, Mapping):
        mapping = mapping.items()
    return tuple(sorted(mapping))


@dataclasses.dataclass(frozen=True)
class Node:
    """One operation of the graph.

    Attributes:
      name: unique, readable and stable node name, e.g. "stage2.block0.conv1".
      op: one of ``OPS``.
      inputs: names of the producing nodes, in order (order matters for concat).
      attrs: attributes as sorted ``(key, value)`` pairs; a mapping is accepted
        and normalised (defaults filled, ints widened to pairs, lists to tuples).
    """

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    attrs: tuple[tuple[str, Any], ...] = ()
    _attr_map: dict = dataclasses.field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"node name must be a non-empty string; got {self.name!r}")
        inputs = self.inputs
        if isinstance(inputs, str) or not all(type(i) is str for i in inputs):
            raise ValueError(f"node '{self.name}': inputs must be a sequence of names")
        raw = self.attrs
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raw = dict(raw)  # (key, value) pairs
        attrs = arch_schema.normalize_attrs(self.name, self.op, raw)
        arch_schema.check_arity(self.name, self.op, len(inputs))
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "attrs", _freeze(attrs))
        object.__setattr__(self, "_attr_map", attrs)

    def attr(self, key: str) -> Any:
        """Returns attribute ``key`` (KeyError if the op has no such attribute)."""
        return self._attr_map[key]

    def to_dict(self) -> dict[str, Any]:
        """Returns the JSON-ready dict of this node (tuples become lists)."""
        attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in self.attrs}
        return {
            "name": self.name,
            "op": self.op,
            "inputs": list(self.inputs),
            "attrs": attrs,
        }


@dataclasses.dataclass(frozen=True)
class Arch:
    """A network: nodes in execution order, the first being the single input.

    The last node is the output and must have shape ``(num_classes,)``. Every
    other node must be consumed. Construction validates the whole graph and
    infers all shapes; an inconsistent graph raises ValueError.

    Attributes:
      nodes: the nodes, topologically ordered (this order is also the schedule
        used for peak-activation accounting).
      input_shape: (H, W, C) of the input image.
      num_classes: width of the classifier output.
      meta: provenance as sorted ``(key, value)`` pairs (e.g. space, law,
        index); a mapping is accepted. Excluded from both hashes.
    """

    nodes: tuple[Node, ...]
    input_shape: tuple[int, int, int] = (32, 32, 3)
    num_classes: int = 10
    meta: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(
            self, "input_shape", arch_schema.check_input_shape(self.input_shape)
        )
        num_classes = self.num_classes
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise ValueError(f"num_classes must be an int; got {num_classes!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1; got {num_classes}")
        object.__setattr__(self, "meta", _freeze(arch_schema.check_meta(self.meta)))
        for node in self.nodes:
            if not isinstance(node, Node):
                raise ValueError(f"nodes must be Node objects; got {node!r}")
        shapes = arch_schema.infer_shapes(self.nodes, self.input_shape)
        out = self.nodes[-1]
        if shapes[out.name] != (num_classes,):
            raise ValueError(
                f"output node '{out.name}' has shape {shapes[out.name]}; "
                f"expected ({num_classes},) for num_classes={num_classes}"
            )
        self.__dict__["shapes"] = shapes  # seeds the cached_property below

    def with_meta(self, meta: Mapping[str, Any]) -> Arch:
        """Returns a copy with ``meta`` replaced (no re-validation; hashes kept)."""
        new = copy.copy(self)  # shares the cached shapes and hashes
        meta = _freeze(arch_schema.check_meta(meta))
        object.__setattr__(new, "meta", meta)
        return new

    @functools.cached_property
    def shapes(self) -> dict[str, Shape]:
        """Output shape of every node, by name ((H, W, C) or (N,))."""
        return arch_schema.infer_shapes(self.nodes, self.input_shape)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Position of every node in ``nodes``, by name."""
        return {node.name: i for i, node in enumerate(self.nodes)}

    def node(self, name: str) -> Node:
        """Returns the node called ``name``."""
        return self.nodes[self.index[name]]

    def in_shapes(self, node: Node) -> list[Shape]:
        """Returns the shapes of ``node``'s inputs, in input order."""
        shapes = self.shapes
        return [shapes[i] for i in node.inputs]

    def groups(self, node: Node) -> int:
        """Returns the resolved group count of conv ``node`` ("depthwise" -> C_in)."""
        return arch_schema.resolve_groups(node, self.shapes[node.inputs[0]][-1])

    def to_dict(self, *, meta: bool = True) -> dict[str, Any]:
        """Returns the JSON-ready dict (``meta=False`` drops the provenance)."""
        out = {
            "version": VERSION,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "nodes": [node.to_dict() for node in self.nodes],
        }
        if meta:
            out["meta"] = dict(self.meta)
        return out

    def to_json(self) -> str:
        """Returns the canonical JSON: sorted keys, no whitespace, exact floats."""
        return _dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Arch:
        """Parses and validates canonical (or any equivalent) JSON.

        Args:
          text: a JSON document as written by ``to_json``.

        Returns:
          The Arch; ``Arch.from_json(a.to_json()) == a`` for every Arch.

        Raises:
          ValueError: naming the offending field when the JSON is malformed or
            describes an invalid graph.
        """
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"arch JSON does not parse: {err}") from None
        return from_dict(data)

    @functools.cached_property
    def hash(self) -> str:
        """sha256 hex digest of the canonical topology JSON (meta excluded).

        Node names are part of the topology: they key parameters in the flax
        module and in checkpoints, so equal hashes mean interchangeable weights.
        """
        return _sha256(self.to_dict(meta=False))

    @functools.cached_property
    def skeleton_hash(self) -> str:
        """sha256 of the topology with every width removed.

        Drops ``WIDTH_ATTRS`` (conv out_channels, linear out_features); input
        widths are never stored. Integer conv groups (a cardinality) stay; a
        "depthwise" conv additionally records its channel multiplier
        C_out / C_in, since padding cannot reconcile different multipliers.
        Candidates with equal skeletons differ only in widths and can share one
        padded program.
        """
        data = self.skeleton()
        data["skeleton"] = True
        return _sha256(data)

    def skeleton(self, *, cardinality: bool = True) -> dict[str, Any]:
        """The dict form of the topology with every width removed.

        Args:
          cardinality: keep integer conv group counts (True, as in
            ``skeleton_hash``); False replaces them by "int", for consumers that
            run grouped convolutions densely (``jnas.population``).

        Returns:
          ``to_dict(meta=False)`` without ``WIDTH_ATTRS``; depthwise convs gain
          their channel ``multiplier``.
        """
        data = self.to_dict(meta=False)
        for node, entry in zip(self.nodes, data["nodes"], strict=True):
            attrs = entry["attrs"]
            for key in WIDTH_ATTRS.get(node.op, ()):
                del attrs[key]
            if node.op != "conv":
                continue
            if node.attr("groups") == DEPTHWISE:
                c_in = self.shapes[node.inputs[0]][-1]
                attrs["multiplier"] = node.attr("out_channels") // c_in
            elif not cardinality:
                attrs["groups"] = "int"
        return data


def from_dict(data: Any) -> Arch:
    """Builds an Arch from the dict form of ``Arch.to_dict`` (see from_json)."""
    if not isinstance(data, dict):
        raise ValueError(f"arch JSON must be an object; got {type(data).__name__}")
    required = {"version", "input_shape", "num_classes", "nodes"}
    for key in sorted(required - data.keys()):
        raise ValueError(f"arch JSON: missing field '{key}'")
    for key in sorted(data.keys() - required - {"meta"}):
        raise ValueError(f"arch JSON: unknown field '{key}'")
    if data["version"] != VERSION:
        raise ValueError(
            f"arch JSON: field 'version' is {data['version']!r}; supported: {VERSION}"
        )
    shape = data["input_shape"]
    if not isinstance(shape, list):
        raise ValueError(
            f"arch JSON: field 'input_shape' must be a list; got {shape!r}"
        )
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError(f"arch JSON: field 'meta' must be an object; got {meta!r}")
    if not isinstance(data["nodes"], list) or not data["nodes"]:
        raise ValueError("arch JSON: field 'nodes' must be a non-empty list")
    nodes = [_node_from_dict(i, entry) for i, entry in enumerate(data["nodes"])]
    return Arch(nodes, tuple(shape), data["num_classes"], meta)


def _node_from_dict(i: int, entry: Any) -> Node:
    where = f"arch JSON: nodes[{i}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object; got {entry!r}")
    fields = {"name", "op", "inputs", "attrs"}
    for key in sorted(fields - entry.keys()):
        raise ValueError(f"{where}: missing field '{key}'")
    for key in sorted(entry.keys() - fields):
        raise ValueError(f"{where}: unknown field '{key}'")
    if not isinstance(entry["inputs"], list):
        raise ValueError(f"{where}: field 'inputs' must be a list")
    if not isinstance(entry["attrs"], dict):
        raise ValueError(f"{where}: field 'attrs' must be an object")
    try:
        return Node(entry["name"], entry["op"], tuple(entry["inputs"]), entry["attrs"])
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _sha256(data: dict[str, Any]) -> str:
    return hashlib.sha256(_dumps(data).encode("utf-8")).hexdigest()
