"""DenseNet space (``random_net_densenet``; search-spaces.md section 6).

The kuangliu DenseNet-BC with sampled layers per dense block D, growth rate g
and transition compression r.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from jnas import arch
from jnas.spaces import builder

NAME = "densenet"
# law -> [low, high) of "D" (layers per block), "g" (growth rate) and
# "reduction" (percent; r = reduction / 100.0)
LAWS = {
    "s1": {"D": (1, 32), "g": (1, 32), "reduction": (20, 80)},
    "s2": {"D": (1, 16), "g": (1, 16), "reduction": (20, 80)},
    "s3": {"D": (1, 8), "g": (1, 8), "reduction": (50, 80)},
}
REFERENCES = {
    "DenseNet121": {"D": [6, 12, 24, 16], "g": 32, "r": 0.5},
    "DenseNet169": {"D": [6, 12, 32, 32], "g": 32, "r": 0.5},
    "DenseNet201": {"D": [6, 12, 48, 32], "g": 32, "r": 0.5},
    "DenseNet161": {"D": [6, 12, 36, 24], "g": 48, "r": 0.5},
    "densenet_cifar": {"D": [6, 12, 24, 16], "g": 12, "r": 0.5},
}


def sample_args(rng: np.random.RandomState, law: str) -> dict[str, Any]:
    """Draws the arguments of one network (draw order of section 6.1).

    Args:
      rng: a fresh ``numpy.random.RandomState(index)``.
      law: a key of ``LAWS``.

    Returns:
      {"D": 4 ints, "g": int, "r": float}.
    """
    lw = LAWS[law]
    d = rng.randint(*lw["D"], 4).tolist()
    g = int(rng.randint(*lw["g"], 1)[0])
    r = int(rng.randint(*lw["reduction"], 1)[0]) / 100.0
    return {"D": d, "g": g, "r": r}


def transition_width(c: int, r: float) -> int:
    """floor of the float64 product c * r, as the release (not (c * k) // 100)."""
    return math.floor(c * r)


def build(args: dict[str, Any]) -> arch.Arch:
    """Builds the network of section 6.3 from its arguments.

    Args:
      args: as returned by ``sample_args`` (or ``REFERENCES``).

    Returns:
      The validated Arch.

    Raises:
      ValueError: if a transition floors to zero channels (e.g. s2 index 41),
        which the spec calls invalid.
    """
    d = builder.int_list(args, "D", 4, NAME)
    g = builder.int_arg(args, "g", NAME)
    r = builder.require(args, "r", NAME)
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
        raise ValueError(f"{NAME}: argument 'r' must be a float in (0, 1]; got {r!r}")
    b = builder.Builder()
    x = b.conv("stem.conv", b.input, 2 * g, 3, padding=1)  # no BN, no ReLU
    c = 2 * g
    for k in range(4):
        for j in range(d[k]):
            p = f"block{k}.layer{j}"
            y = b.relu(f"{p}.relu1", b.batchnorm(f"{p}.bn1", x))
            y = b.conv(f"{p}.conv1", y, 4 * g, 1)
            y = b.relu(f"{p}.relu2", b.batchnorm(f"{p}.bn2", y))
            y = b.conv(f"{p}.conv2", y, g, 3, padding=1)
            x = b.concat(f"{p}.concat", y, x)  # new features first
            c += g
        if k < 3:
            c_out = transition_width(c, r)
            if c_out < 1:
                raise ValueError(
                    f"{NAME}: transition {k} floors to {c_out} channels "
                    f"(floor({c} * {r})); this sample is invalid"
                )
            p = f"trans{k}"
            y = b.relu(f"{p}.relu", b.batchnorm(f"{p}.bn", x))
            y = b.conv(f"{p}.conv", y, c_out, 1)
            x = b.avgpool(f"{p}.pool", y, 2)
            c = c_out
    x = b.relu("head.relu", b.batchnorm("head.bn", x))
    b.classifier(x, 4, counted=False)
    return b.finish({"space": NAME})
