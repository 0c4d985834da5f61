"""ResNeXt space (``random_net_resnext``; search-spaces.md section 5).

Three stages of grouped bottleneck blocks; per stage the block count N, the
bottleneck width W and the cardinality K (with K * W below a product limit P)
are sampled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jnas import arch
from jnas.spaces import builder

NAME = "resnext"
STRIDES = (1, 2, 2)
STEM_WIDTH = 64
# law -> {"N": [low, high) of block counts, "W": [low, high) of widths,
# "P": the product limit (drawn from the width-zero range [P, P + 1))}
LAWS = {
    "s1": {"N": (1, 3), "W": (4, 64), "P": 512},
    "s2": {"N": (1, 3), "W": (4, 32), "P": 128},
    "s3": {"N": (1, 2), "W": (4, 8), "P": 32},
}
_N3 = [3, 3, 3]
REFERENCES = {
    "ResNeXt29_2x64d": {"N": _N3, "W": [64, 128, 256], "K": [2, 2, 2]},
    "ResNeXt29_4x64d": {"N": _N3, "W": [64, 128, 256], "K": [4, 4, 4]},
    "ResNeXt29_8x64d": {"N": _N3, "W": [64, 128, 256], "K": [8, 8, 8]},
    "ResNeXt29_32x4d": {"N": _N3, "W": [4, 8, 16], "K": [32, 32, 32]},
}


def sample_args(rng: np.random.RandomState, law: str) -> dict[str, Any]:
    """Draws the arguments of one network (draw order of section 5.1).

    Args:
      rng: a fresh ``numpy.random.RandomState(index)``.
      law: a key of ``LAWS``.

    Returns:
      {"N", "W", "K": 3 ints each, "P": the product limit}.
    """
    lw = LAWS[law]
    n = rng.randint(*lw["N"], 3).tolist()
    w = rng.randint(*lw["W"], 3).tolist()
    p = int(rng.randint(lw["P"], lw["P"] + 1, 1)[0])  # consumes nothing
    # int() truncates the float quotient toward zero, as the release does.
    k = [int(rng.randint(1, max(int(p / wi), 2), 1)[0]) for wi in w]
    return {"N": n, "W": w, "P": p, "K": k}


def build(args: dict[str, Any]) -> arch.Arch:
    """Builds the network of section 5.3 from its arguments.

    Args:
      args: "N", "W", "K" (3 ints each); "P" is informative and ignored.

    Returns:
      The validated Arch.
    """
    n, w, k = (builder.int_list(args, key, 3, NAME) for key in ("N", "W", "K"))
    b = builder.Builder()
    x = b.relu("stem.relu", b.conv_bn("stem", b.input, STEM_WIDTH, 1))
    c = STEM_WIDTH
    for i in range(3):
        g = k[i] * w[i]  # group width: K groups of W channels
        for j in range(n[i]):
            stride = STRIDES[i] if j == 0 else 1
            x = _block(b, f"stage{i}.block{j}", x, c, k[i], g, stride)
            c = 2 * g
    b.classifier(x, 8, counted=False)
    return b.finish({"space": NAME})


def _block(
    b: builder.Builder, p: str, x: str, c_in: int, k: int, g: int, stride: int
) -> str:
    y = b.relu(f"{p}.relu1", b.conv_bn(p, x, g, 1, "1"))
    y = b.conv_bn(p, y, g, 3, "2", stride=stride, padding=1, groups=k)
    y = b.relu(f"{p}.relu2", y)
    y = b.conv_bn(p, y, 2 * g, 1, "3")
    if stride != 1 or c_in != 2 * g:
        x = b.conv_bn(f"{p}.shortcut", x, 2 * g, 1, stride=stride)
    return b.relu(f"{p}.relu", b.add(f"{p}.add", y, x))
