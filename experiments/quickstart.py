"""Quickstart: a complete constrained search on a 2-core CPU, offline.

Runbook (from the repository root; the README's main command):

    python -m launch.search --config=experiments/quickstart.py --workdir=runs/quickstart

Data: scikit-learn's bundled 8x8 handwritten digits, resized to the spaces'
32x32x3 input (no download). ``--config.data.name=cifar10`` (from tfds, or
``--config.data.data_dir=PATH`` to an image folder/archive) switches data.

What it does: samples 24 candidates from small laws (ResNeXt s3, MobileNetV2
s6, PNASNet s3), keeps those whose params fit 24 KiB in half precision and
whose predicted Raspberry Pi 3B+ latency (the predictor shipped with jnas,
fitted to the release's Pi table) is under 20 ms (the paper's 10 ms admits
only MobileNetV2 s6 among these laws: the released untrained-PyTorch Pi
timings are slow), trains the survivors together with the population engine
(300 steps, batch 32), runs the format search (fewest bits within 1 point of
float32 validation accuracy), writes one JSON line per candidate,
checkpoints, and the figures (``figures/``).

On a CPU-only host the launcher runs one worker process per core
(``distributed.local_workers``), and compiled programs are cached in
~/.cache/jnas/xla (``compilation_cache``), so a second run compiles less.

Expected (measured on the quiet 2-core dev VM, 2026-11-30): 5 min 44 s (4 min
9 s on a second run); 15 of the 24 meet the budgets; best feasible test
accuracy 97.2% (a PNASNet s3, whose e4m5 custom format keeps it at 4.1 KiB);
figures in ``figures/`` (docs/results.md has the runs).
Killing it and rerunning the same command resumes (finished candidates are
kept; an interrupted bucket is retrained).

The other keys keep their defaults: ``jnas/search/defaults.py`` declares and
documents every key (``--show_config`` lists them); `jnas.search.validate`
names bad values.
"""

import ml_collections

from jnas.search import defaults


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the quickstart config (``arg``: "tiny" for the tests' version)."""
    c = defaults.get_config()
    # The budget. 20 ms, not the paper's 10: 10 ms admits only MobileNetV2 s6
    # among these laws.
    c.constraints.memory_bytes = 24 * 1024
    c.constraints.memory_format = "half"
    c.constraints.latency_ms = 20.0
    if arg == "tiny":  # the tests' version: seconds, not minutes
        c.distributed.local_workers = 1  # tests start their processes themselves
        c.search.spaces = ("resnext:s3",)
        c.search.candidates_per_round = 4
        c.train.max_bucket = 2  # two buckets: the resume test kills in between
        c.train.max_waste = 10.0
        c.constraints.memory_bytes = 0
        c.constraints.latency_ms = 0.0
        c.latency.predictor = "none"
        c.train.steps = 30  # enough to leave chance level (the tests compare)
        c.train.batch_size = 16
        c.train.log_every = 10
        c.data.num_val = 100
        c.eval_batch_size = 100
    elif arg:
        raise ValueError(f"unknown quickstart variant {arg!r}; allowed: tiny")
    return c
