"""ProbeNet-s space (``random_net_probenet_s``; search-spaces.md section 9).

Three conv-BN-ReLU-maxpool layers with sampled filter counts and rectangular
kernels, then a classifier on the flattened 4x4 map. No trained
configurations of this space are released.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jnas import arch
from jnas.spaces import builder

NAME = "probenet_s"
# law -> {"F": [low, high) of the filter counts, "kops": kernel extents}; the
# order of kops matters for choice().
LAWS = {
    "s0": {"F": (1, 128), "kops": (1, 3, 5, 7)},
    "s1": {"F": (4, 32), "kops": (1, 3, 5, 7)},
    "s2": {"F": (2, 8), "kops": (1, 3, 5)},
    "s3": {"F": (16, 128), "kops": (1, 3, 5, 7)},
}
REFERENCES = {"ProbeNet_s": {"F": [8, 16, 32], "Kr": [3] * 6}}


def sample_args(rng: np.random.RandomState, law: str) -> dict[str, Any]:
    """Draws the arguments of one network (draw order of section 9.1).

    Args:
      rng: a fresh ``numpy.random.RandomState(index)``.
      law: a key of ``LAWS``.

    Returns:
      {"F": 3 filter counts, "Kr": 6 kernel extents (kh, kw per layer)}.
    """
    lw = LAWS[law]
    f = rng.randint(*lw["F"], 3).tolist()
    kr = rng.choice(list(lw["kops"]), 6).tolist()
    return {"F": f, "Kr": kr}


def build(args: dict[str, Any]) -> arch.Arch:
    """Builds the network of section 9.3 from its arguments.

    Args:
      args: as returned by ``sample_args`` (or ``REFERENCES``).

    Returns:
      The validated Arch.
    """
    f = builder.int_list(args, "F", 3, NAME)
    kr = builder.int_list(args, "Kr", 6, NAME)
    if any(k % 2 == 0 for k in kr):
        raise ValueError(f"{NAME}: kernel extents Kr {kr} must be odd ('same' size)")
    b = builder.Builder()
    x = b.input
    for i in range(3):
        kh, kw = kr[2 * i], kr[2 * i + 1]
        p = f"layer{i}"
        x = b.conv_bn(p, x, f[i], (kh, kw), padding=((kh - 1) // 2, (kw - 1) // 2))
        x = b.relu(f"{p}.relu", x)
        x = b.maxpool(f"{p}.pool", x, 2, counted=True)
    x = b.node("head.flatten", "flatten", (x,), order="chw")
    b.node("head.linear", "linear", (x,), out_features=10)
    return b.finish({"space": NAME})
