"""Automatic narrowing (the paper's automatic workflow) against random sampling.

Runbook (the two runs have the same budget: 3 rounds x 8 sampled candidates):

    python -m launch.search --config=experiments/narrowing.py:random --workdir=runs/narrow_random
    python -m launch.search --config=experiments/narrowing.py:narrow --workdir=runs/narrow_narrow

then compare the two workdirs' ``figures/summary.md`` (or ``results.jsonl``):
feasible candidates trained, their mean and best validation accuracy, per
round. Round 0 is identical in both (same seed); from round 1 on, "narrow"
samples only inside the argument box spanned by the best half of the
feasible candidates found so far (widened by a quarter of its width).
Measured on the 2-core dev VM: docs/results.md.
"""

from jnas.search import defaults


def get_config(arg: str | None = "narrow"):
    """Returns the comparison config; ``arg`` is "random" or "narrow"."""
    if arg not in ("random", "narrow"):
        raise ValueError(f"unknown variant {arg!r}; allowed: random, narrow")
    c = defaults.get_config()
    c.search.spaces = ("resnext:s3",)  # one bucket key: cheap rounds
    c.search.mode = arg
    c.search.rounds = 3
    c.search.candidates_per_round = 8
    # A budget that about half of the law's samples meet, so where to sample
    # matters: half-precision params under 16 KiB, Pi latency under 25 ms.
    c.constraints.memory_bytes = 16 * 1024
    c.constraints.memory_format = "half"
    c.constraints.latency_ms = 25.0
    c.train.steps = 150
    return c
