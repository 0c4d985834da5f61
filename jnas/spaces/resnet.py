"""ResNet space (``random_net_resnet``; search-spaces.md section 4).

Four stages; per stage the block type (basic or bottleneck), the planes and the
block count are sampled, plus the stem width. No trained configurations of this
space are released.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jnas import arch
from jnas.spaces import builder

NAME = "resnet"
BASIC, BOTTLENECK = 0, 1
EXPANSION = {BASIC: 1, BOTTLENECK: 4}
STRIDES = (1, 2, 2, 2)
# law -> {"F": [low, high) of the widths, "N": [low, high) of the block counts};
# the block types are always a uniform choice of {0, 1}.
LAWS = {
    "s1": {"F": (16, 1024), "N": (1, 4)},
    "s2": {"F": (16, 512), "N": (1, 3)},
    "s3": {"F": (16, 128), "N": (1, 3)},
    "s4": {"F": (4, 32), "N": (1, 3)},
    "s5": {"F": (2, 8), "N": (1, 3)},
}
_F = [64, 64, 128, 256, 512]
REFERENCES = {
    "ResNet18": {"T": [0, 0, 0, 0], "F": _F, "N": [2, 2, 2, 2]},
    "ResNet34": {"T": [0, 0, 0, 0], "F": _F, "N": [3, 4, 6, 3]},
    "ResNet50": {"T": [1, 1, 1, 1], "F": _F, "N": [3, 4, 6, 3]},
    "ResNet101": {"T": [1, 1, 1, 1], "F": _F, "N": [3, 4, 23, 3]},
    "ResNet152": {"T": [1, 1, 1, 1], "F": _F, "N": [3, 8, 36, 3]},
}


def sample_args(rng: np.random.RandomState, law: str) -> dict[str, Any]:
    """Draws the arguments of one network (draw order of section 4.1).

    Args:
      rng: a fresh ``numpy.random.RandomState(index)``.
      law: a key of ``LAWS``.

    Returns:
      {"T": 4 block types, "F": 5 widths (stem, then planes), "N": 4 counts}.
    """
    lw = LAWS[law]
    t = rng.choice([BASIC, BOTTLENECK], 4).tolist()
    f = rng.randint(*lw["F"], 5).tolist()
    n = rng.randint(*lw["N"], 4).tolist()
    return {"T": t, "F": f, "N": n}


def build(args: dict[str, Any]) -> arch.Arch:
    """Builds the network of section 4.3 from its arguments.

    Args:
      args: as returned by ``sample_args`` (or ``REFERENCES``).

    Returns:
      The validated Arch.
    """
    t = builder.int_list(args, "T", 4, NAME)
    f = builder.int_list(args, "F", 5, NAME)
    n = builder.int_list(args, "N", 4, NAME)
    for kind in t:
        if kind not in EXPANSION:
            raise ValueError(f"{NAME}: block type {kind} not in {sorted(EXPANSION)}")
    b = builder.Builder()
    x = b.relu("stem.relu", b.conv_bn("stem", b.input, f[0], 3, padding=1))
    c = f[0]
    for j in range(4):
        block = _basic if t[j] == BASIC else _bottleneck
        for k in range(n[j]):
            stride = STRIDES[j] if k == 0 else 1
            x = block(b, f"stage{j}.block{k}", x, c, f[j + 1], stride)
            c = f[j + 1] * EXPANSION[t[j]]
    b.classifier(x, 4, counted=False)
    return b.finish({"space": NAME})


def _residual(
    b: builder.Builder, p: str, x: str, y: str, c_in: int, c_out: int, stride: int
) -> str:
    """Adds the (projection or identity) shortcut, then the post-add ReLU."""
    if stride != 1 or c_in != c_out:
        x = b.conv_bn(f"{p}.shortcut", x, c_out, 1, stride=stride)
    return b.relu(f"{p}.relu", b.add(f"{p}.add", y, x))


def _basic(b: builder.Builder, p: str, x: str, c_in: int, planes: int, stride: int):
    y = b.conv_bn(p, x, planes, 3, "1", stride=stride, padding=1)
    y = b.relu(f"{p}.relu1", y)
    y = b.conv_bn(p, y, planes, 3, "2", padding=1)
    return _residual(b, p, x, y, c_in, planes, stride)


def _bottleneck(
    b: builder.Builder, p: str, x: str, c_in: int, planes: int, stride: int
) -> str:
    y = b.relu(f"{p}.relu1", b.conv_bn(p, x, planes, 1, "1"))
    y = b.conv_bn(p, y, planes, 3, "2", stride=stride, padding=1)
    y = b.relu(f"{p}.relu2", y)
    y = b.conv_bn(p, y, 4 * planes, 1, "3")
    return _residual(b, p, x, y, c_in, 4 * planes, stride)
