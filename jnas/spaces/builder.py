"""A small helper that appends IR nodes in execution order (used by the spaces).

Each method adds one node and returns its name, so a space reads like the
structure listings of search-spaces.md: ``x = b.conv("stem.conv", x, 32, 3)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from jnas import arch


class Builder:
    """Collects nodes; ``finish`` validates them into an ``arch.Arch``."""

    def __init__(self):
        self.nodes: list[arch.Node] = [arch.Node("input", "input")]
        self.input = "input"

    def node(self, name: str, op: str, inputs: Sequence[str], **attrs: Any) -> str:
        """Appends a node of any op and returns its name."""
        self.nodes.append(arch.Node(name, op, tuple(inputs), attrs))
        return name

    def conv(
        self,
        name: str,
        x: str,
        out_channels: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
        groups: int | str = 1,
        bias: bool = False,
    ) -> str:
        """Appends a 2-D convolution (see ``jnas.arch`` for the attributes)."""
        return self.node(
            name,
            "conv",
            (x,),
            out_channels=out_channels,
            kernel=kernel,
            stride=stride,
            padding=padding,
            groups=groups,
            bias=bias,
        )

    def batchnorm(self, name: str, x: str) -> str:
        """Appends a BatchNorm with the PyTorch-2018 defaults."""
        return self.node(name, "batchnorm", (x,))

    def relu(self, name: str, x: str, counted: bool = False) -> str:
        """Appends a ReLU; ``counted`` for layer objects of the release."""
        return self.node(name, "relu", (x,), counted=counted)

    def maxpool(
        self,
        name: str,
        x: str,
        kernel: int,
        stride: int | None = None,
        padding: int = 0,
        counted: bool = False,
    ) -> str:
        """Appends a max pool (stride defaults to the kernel; pads with -inf)."""
        return self.node(
            name,
            "maxpool",
            (x,),
            kernel=kernel,
            stride=stride,
            padding=padding,
            counted=counted,
        )

    def avgpool(
        self,
        name: str,
        x: str,
        kernel: int,
        stride: int | None = None,
        counted: bool = False,
    ) -> str:
        """Appends an average pool without padding."""
        return self.node(
            name, "avgpool", (x,), kernel=kernel, stride=stride, counted=counted
        )

    def add(self, name: str, *xs: str) -> str:
        """Appends an element-wise sum of ``xs``."""
        return self.node(name, "add", xs)

    def concat(self, name: str, *xs: str) -> str:
        """Appends a channel concatenation in the order of ``xs``."""
        return self.node(name, "concat", xs)

    def conv_bn(
        self, prefix: str, x: str, out_channels: int, kernel: int, tag: str = "", **kw
    ) -> str:
        """Appends ``{prefix}.conv{tag}`` then ``{prefix}.bn{tag}``.

        The kuangliu-style names (conv1/bn1, ...) keep weight ports readable.
        Returns the BN's name; ``kw`` goes to ``conv``.
        """
        x = self.conv(f"{prefix}.conv{tag}", x, out_channels, kernel, **kw)
        return self.batchnorm(f"{prefix}.bn{tag}", x)

    def classifier(
        self, x: str, pool: int, counted: bool, stride: int | None = None
    ) -> str:
        """Appends the usual head: avgpool, flatten (C, H, W), linear 10 (+bias)."""
        x = self.avgpool("head.pool", x, pool, stride, counted=counted)
        x = self.node("head.flatten", "flatten", (x,), order="chw")
        return self.node("head.linear", "linear", (x,), out_features=10)

    def finish(self, meta: Mapping[str, Any]) -> arch.Arch:
        """Returns the validated Arch (3x32x32 input, 10 classes, as every space)."""
        return arch.Arch(tuple(self.nodes), (32, 32, 3), 10, meta)


def int_list(args: Mapping[str, Any], key: str, length: int, space: str) -> list[int]:
    """Returns ``args[key]`` as a list of ``length`` ints, or raises ValueError.

    Args:
      args: the sampled (or hand-written) arguments of a space.
      key: the argument name.
      length: the required length.
      space: the space name, for the message.

    Returns:
      The values as plain Python ints.
    """
    value = require(args, key, space)
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or len(value) != length
        or not all(_is_int(v) for v in value)
    ):
        raise ValueError(
            f"{space}: argument '{key}' must be a list of {length} ints; got {value!r}"
        )
    return [int(v) for v in value]


def int_arg(args: Mapping[str, Any], key: str, space: str) -> int:
    """Returns ``args[key]`` as an int, or raises ValueError naming it."""
    value = require(args, key, space)
    if not _is_int(value):
        raise ValueError(f"{space}: argument '{key}' must be an int; got {value!r}")
    return int(value)


def require(args: Mapping[str, Any], key: str, space: str) -> Any:
    """Returns ``args[key]``; a missing key is a ValueError naming it."""
    if not isinstance(args, Mapping):
        raise ValueError(f"{space}: arguments must be a mapping; got {args!r}")
    if key not in args:
        raise ValueError(
            f"{space}: missing argument '{key}'; given: {', '.join(sorted(args))}"
        )
    return args[key]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
