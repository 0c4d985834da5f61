"""MobileNetV2 space (``random_net_mobilenetv2``; search-spaces.md section 3).

Seven stages of inverted-residual blocks; per stage the expansion E, output
width O, block count N and first-block stride S are sampled, plus the stem and
head widths.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jnas import arch
from jnas.spaces import builder

NAME = "mobilenetv2"
# law -> [low, high) ranges of randint: expansions, out_planes, num_blocks,
# io_in (C_stem), io_out (C_head)
LAWS = {
    "s1": {
        "E": (1, 8),
        "O": (16, 256),
        "N": (1, 4),
        "C_stem": (16, 128),
        "C_head": (128, 1280),
    },
    "s2": {
        "E": (1, 6),
        "O": (16, 128),
        "N": (1, 3),
        "C_stem": (16, 64),
        "C_head": (128, 512),
    },
    "s3": {
        "E": (1, 4),
        "O": (16, 64),
        "N": (1, 2),
        "C_stem": (16, 32),
        "C_head": (128, 256),
    },
    "s4": {
        "E": (1, 4),
        "O": (4, 32),
        "N": (1, 2),
        "C_stem": (16, 32),
        "C_head": (64, 128),
    },
    "s5": {
        "E": (1, 4),
        "O": (2, 8),
        "N": (1, 2),
        "C_stem": (16, 32),
        "C_head": (16, 64),
    },
    "s6": {"E": (1, 2), "O": (2, 8), "N": (1, 2), "C_stem": (4, 8), "C_head": (12, 16)},
}
REFERENCES = {
    "MobileNetV2": {
        "E": [1, 6, 6, 6, 6, 6, 6],
        "O": [16, 24, 32, 64, 96, 160, 320],
        "N": [1, 2, 3, 4, 3, 3, 1],
        "S": [1, 1, 2, 2, 1, 2, 1],
        "C_stem": 32,
        "C_head": 1280,
    },
}


def sample_args(rng: np.random.RandomState, law: str) -> dict[str, Any]:
    """Draws the arguments of one network (draw order of section 3.1).

    Args:
      rng: a fresh ``numpy.random.RandomState(index)``.
      law: a key of ``LAWS``.

    Returns:
      {"E", "O", "N", "S": 7 ints each, "C_stem", "C_head": int}.
    """
    lw = LAWS[law]
    e = rng.randint(*lw["E"], 7).tolist()
    o = rng.randint(*lw["O"], 7).tolist()
    n = rng.randint(*lw["N"], 7).tolist()
    s = np.array([2, 2, 2, 1, 1, 1, 1])
    rng.shuffle(s)
    c_stem = int(rng.randint(*lw["C_stem"], 1)[0])
    c_head = int(rng.randint(*lw["C_head"], 1)[0])
    return {"E": e, "O": o, "N": n, "S": s.tolist(), "C_stem": c_stem, "C_head": c_head}


def build(args: dict[str, Any]) -> arch.Arch:
    """Builds the network of section 3.3 from its arguments.

    Args:
      args: as returned by ``sample_args`` (or ``REFERENCES``).

    Returns:
      The validated Arch.
    """
    e, o, n, s = (builder.int_list(args, k, 7, NAME) for k in ("E", "O", "N", "S"))
    c_stem = builder.int_arg(args, "C_stem", NAME)
    c_head = builder.int_arg(args, "C_head", NAME)
    b = builder.Builder()
    x = b.conv_bn("stem", b.input, c_stem, 3, padding=1)
    x = b.relu("stem.relu", x)
    c = c_stem
    for i in range(7):
        for j in range(n[i]):
            stride = s[i] if j == 0 else 1
            x = _block(b, f"stage{i}.block{j}", x, c, o[i], e[i], stride)
            c = o[i]
    x = b.conv_bn("head", x, c_head, 1)
    x = b.relu("head.relu", x)
    b.classifier(x, 4, counted=False)
    return b.finish({"space": NAME})


def _block(
    b: builder.Builder, p: str, x: str, c_in: int, c_out: int, e: int, stride: int
) -> str:
    """Inverted residual; the hidden width is relative to the block input."""
    h = e * c_in
    y = b.relu(f"{p}.relu1", b.conv_bn(p, x, h, 1, "1"))  # expand
    y = b.conv_bn(p, y, h, 3, "2", stride=stride, padding=1, groups=arch.DEPTHWISE)
    y = b.relu(f"{p}.relu2", y)
    y = b.conv_bn(p, y, c_out, 1, "3")  # project, no activation
    if stride != 1:  # stride-2 blocks have no residual at all
        return y
    if c_in != c_out:
        x = b.conv_bn(f"{p}.shortcut", x, c_out, 1)
    return b.add(f"{p}.add", y, x)
