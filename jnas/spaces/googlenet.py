"""GoogLeNet space (``random_net_googlenet``; search-spaces.md section 7).

The kuangliu CIFAR GoogLeNet with sampled stem width and six widths for each
of its nine Inception modules. Every conv has a bias and every ReLU and pool is
a layer object (counted in FLOPs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jnas import arch
from jnas.spaces import builder

NAME = "googlenet"
NUM_MODULES = 9
# Shared stride-2 max pool after these modules (called twice in the release).
POOL_AFTER = {1: "pool1", 6: "pool2"}
# law -> [low, high) of C_stem and l1..l6, and the discarded draw's range
LAWS = {
    "s1": {
        "C_stem": (16, 256),
        "l": ((16, 384), (16, 192), (16, 384), (16, 48), (16, 128), (16, 128)),
        "discard": (16, 512),
    },
    "s2": {
        "C_stem": (16, 256),
        "l": ((16, 64), (16, 64), (16, 64), (16, 32), (16, 32), (16, 32)),
        "discard": (16, 512),
    },
    "s3": {
        "C_stem": (16, 256),
        "l": ((16, 32), (8, 16), (16, 32), (4, 8), (4, 8), (4, 8)),
        "discard": (16, 256),
    },
    "s4": {"C_stem": (16, 128), "l": ((4, 8),) * 6, "discard": (16, 256)},
    "s5": {"C_stem": (8, 16), "l": ((4, 6),) * 6, "discard": (16, 256)},
    "s6": {"C_stem": (8, 16), "l": ((2, 6),) * 6, "discard": (16, 256)},
}
REFERENCES = {
    "GoogLeNet": {
        "C_stem": 192,
        "modules": [
            [64, 96, 128, 16, 32, 32],
            [128, 128, 192, 32, 96, 64],
            [192, 96, 208, 16, 48, 64],
            [160, 112, 224, 24, 64, 64],
            [128, 128, 256, 24, 64, 64],
            [112, 144, 288, 32, 64, 64],
            [256, 160, 320, 32, 128, 128],
            [256, 160, 320, 32, 128, 128],
            [384, 192, 384, 48, 128, 128],
        ],
    },
}


def sample_args(rng: np.random.RandomState, law: str) -> dict[str, Any]:
    """Draws the arguments of one network (draw order of section 7.1).

    Args:
      rng: a fresh ``numpy.random.RandomState(index)``.
      law: a key of ``LAWS``.

    Returns:
      {"C_stem": int, "modules": 9 lists [l1, ..., l6]}.
    """
    lw = LAWS[law]
    c_stem = int(rng.randint(*lw["C_stem"], 1)[0])
    modules = []
    for _ in range(NUM_MODULES):
        rng.randint(*lw["discard"], 7)  # the release draws and drops these
        modules.append([int(rng.randint(*lim, 1)[0]) for lim in lw["l"]])
    return {"C_stem": c_stem, "modules": modules}


def build(args: dict[str, Any]) -> arch.Arch:
    """Builds the network of section 7.3 from its arguments.

    Args:
      args: as returned by ``sample_args`` (or ``REFERENCES``).

    Returns:
      The validated Arch.
    """
    c_stem = builder.int_arg(args, "C_stem", NAME)
    modules = builder.require(args, "modules", NAME)
    if not isinstance(modules, (list, tuple)) or len(modules) != NUM_MODULES:
        raise ValueError(f"{NAME}: argument 'modules' must list {NUM_MODULES} modules")
    widths = [builder.int_list({"modules": m}, "modules", 6, NAME) for m in modules]
    b = builder.Builder()
    x = b.conv_bn("stem", b.input, c_stem, 3, padding=1, bias=True)
    x = b.relu("stem.relu", x, counted=True)
    for m, w in enumerate(widths):
        x = _inception(b, f"module{m}", x, w)
        if m in POOL_AFTER:
            x = b.maxpool(POOL_AFTER[m], x, 3, stride=2, padding=1, counted=True)
    b.classifier(x, 8, counted=True, stride=1)
    return b.finish({"space": NAME})


def _conv_bn_relu(b: builder.Builder, p: str, x: str, c: int, k: int, tag: str):
    y = b.conv_bn(p, x, c, k, tag, padding=k // 2, bias=True)
    return b.relu(f"{p}.relu{tag}", y, counted=True)


def _inception(b: builder.Builder, p: str, x: str, w: list[int]) -> str:
    l1, l2, l3, l4, l5, l6 = w
    y1 = _conv_bn_relu(b, f"{p}.branch1", x, l1, 1, "1")
    y2 = _conv_bn_relu(b, f"{p}.branch2", x, l2, 1, "1")
    y2 = _conv_bn_relu(b, f"{p}.branch2", y2, l3, 3, "2")
    y3 = _conv_bn_relu(b, f"{p}.branch3", x, l4, 1, "1")
    y3 = _conv_bn_relu(b, f"{p}.branch3", y3, l5, 3, "2")  # "5x5" as two 3x3
    y3 = _conv_bn_relu(b, f"{p}.branch3", y3, l5, 3, "3")
    y4 = b.maxpool(f"{p}.branch4.pool", x, 3, stride=1, padding=1, counted=True)
    y4 = _conv_bn_relu(b, f"{p}.branch4", y4, l6, 1, "1")
    return b.concat(f"{p}.concat", y1, y2, y3, y4)
