"""Registry of the seven iotnets search spaces (search-spaces.md).

A space is a module with ``NAME``, ``LAWS``, ``REFERENCES``,
``sample_args(rng, law)`` and ``build(args) -> arch.Arch``. Sample ``index`` of
law ``law`` draws from a fresh legacy ``numpy.random.RandomState(index)``, in
the space's exact draw order, so the release's networks are reproduced bit for
bit. Space names may also be given in the release spelling
(``random_net_mobilenetv2``).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from jnas import arch
from jnas.spaces import (
    densenet,
    googlenet,
    mobilenetv2,
    pnasnet,
    probenet_s,
    resnet,
    resnext,
)

RELEASE_PREFIX = "random_net_"
_MODULES = {
    m.NAME: m
    for m in (mobilenetv2, resnet, resnext, densenet, googlenet, pnasnet, probenet_s)
}
# reference model name -> space name
_REFERENCES = {ref: name for name, m in _MODULES.items() for ref in m.REFERENCES}
_MAX_INDEX = 2**32  # RandomState accepts integer seeds in [0, 2**32)


def names() -> tuple[str, ...]:
    """Returns the space names (short spelling, e.g. "mobilenetv2")."""
    return tuple(_MODULES)


def canonical(space: str) -> str:
    """Returns the short name of ``space``, accepting the release spelling.

    Raises:
      ValueError: if the space is unknown (the message lists the known ones).
    """
    name = space
    if isinstance(space, str) and space.startswith(RELEASE_PREFIX):
        name = space[len(RELEASE_PREFIX) :]
    if not isinstance(name, str) or name not in _MODULES:
        raise ValueError(f"unknown space {space!r}; allowed: {', '.join(_MODULES)}")
    return name


def module(space: str) -> Any:
    """Returns the module implementing ``space``."""
    return _MODULES[canonical(space)]


def laws(space: str) -> tuple[str, ...]:
    """Returns the sampling laws of ``space`` (e.g. ("s1", ..., "s6"))."""
    return tuple(module(space).LAWS)


def sampled_args(space: str, law: str, index: int) -> dict[str, Any]:
    """Returns the raw sampled arguments of sample ``index`` of ``law``.

    Args:
      space: a space name (short or release spelling).
      law: one of ``laws(space)``.
      index: the sample index, an int in [0, 2**32); it seeds the generator.

    Returns:
      The space's argument dict (plain Python ints; DenseNet's "r" is a float),
      e.g. {"E", "O", "N", "S", "C_stem", "C_head"} for MobileNetV2.

    Raises:
      ValueError: naming the bad value and the allowed ones for an unknown
        space or law, or an index that is not an int in [0, 2**32).
    """
    mod = module(space)
    if not isinstance(law, str) or law not in mod.LAWS:
        raise ValueError(
            f"unknown law {law!r} for space {mod.NAME!r}; allowed: "
            f"{', '.join(mod.LAWS)}"
        )
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise ValueError(f"index must be an int in [0, 2**32); got {index!r}")
    if not 0 <= index < _MAX_INDEX:
        raise ValueError(f"index must be an int in [0, 2**32); got {index}")
    # The legacy generator, never default_rng: its stream is frozen by NumPy.
    rng = np.random.RandomState(int(index))
    return mod.sample_args(rng, law)


def sample(space: str, law: str, index: int) -> arch.Arch:
    """Returns the network of sample ``index`` of ``law`` of ``space``.

    Args:
      space: a space name (short or release spelling).
      law: one of ``laws(space)``.
      index: the sample index, an int in [0, 2**32).

    Returns:
      The Arch, with meta {"space", "law", "index"} (not part of its hashes).

    Raises:
      ValueError: as ``sampled_args``, or if the sample is invalid (e.g. a
        DenseNet transition that floors to zero channels).
    """
    name = canonical(space)
    args = sampled_args(name, law, index)
    try:
        net = _MODULES[name].build(args)
    except ValueError as err:
        raise ValueError(f"{name} {law} index {index}: {err}") from None
    return net.with_meta({"space": name, "law": law, "index": int(index)})


def build(space: str, args: dict[str, Any]) -> arch.Arch:
    """Builds a network of ``space`` from explicit arguments.

    Args:
      space: a space name (short or release spelling).
      args: the argument dict, in the form ``sampled_args`` returns.

    Returns:
      The Arch, with meta {"space"}.
    """
    return module(space).build(args)


def references() -> tuple[str, ...]:
    """Returns the names of the full-size reference models (section 12.3)."""
    return tuple(_REFERENCES)


def reference_args(name: str) -> tuple[str, dict[str, Any]]:
    """Returns (space, arguments) of reference model ``name`` (case-insensitive)."""
    name = _reference_name(name)
    space = _REFERENCES[name]
    return space, dict(_MODULES[space].REFERENCES[name])


def reference(name: str) -> arch.Arch:
    """Returns reference model ``name`` (e.g. "ResNet18"; case-insensitive).

    Args:
      name: one of ``references()``.

    Returns:
      The Arch, with meta {"space", "reference"}.

    Raises:
      ValueError: for an unknown name (the message lists the known ones).
    """
    name = _reference_name(name)
    space, args = reference_args(name)
    return _MODULES[space].build(args).with_meta({"space": space, "reference": name})


def _reference_name(name: Any) -> str:
    lowered = {ref.lower(): ref for ref in _REFERENCES}
    if not isinstance(name, str) or name.lower() not in lowered:
        raise ValueError(
            f"unknown reference model {name!r}; allowed: {', '.join(_REFERENCES)}"
        )
    return lowered[name.lower()]
