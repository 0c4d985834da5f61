"""The paper's setup (Scheidegger et al., NeurIPS 2019), for accelerators.

Runbook:

    python -m launch.search --config=experiments/paper.py:float --workdir=runs/paper_float
    python -m launch.search --config=experiments/paper.py:half --workdir=runs/paper_half
    python -m launch.search --config=experiments/paper.py:reduced --workdir=runs/paper_reduced
    python -m launch.figures --workdir=runs/paper_half

Setup: small laws of the seven spaces, a 32 KB memory budget on the stored
params (the paper does not print its exact budget; 32 KiB is where the
release's float32 front reaches the paper's 74.87%: docs/results.md, "The
search"), predicted Raspberry Pi 3B+ latency under 10 ms (the predictor
shipped with jnas), CIFAR-10 (tfds ``cifar10`` prepared, or
``--config.data.data_dir=PATH`` to an image folder / archive such as
shared/datasets/cifar10-jpeg.tar.gz), the release's training recipe (SGD,
momentum 0.9, weight decay 5e-4, batch 128, step schedule).

Variants: ``float`` counts memory in float32, ``half`` in half precision,
``reduced`` in each model's own format found by the format search (the filter
before training assumes 8 bits; the record's ``feasible`` uses the chosen one).
Paper, same budget: float 74.87%, half 82.07%, custom 83.45% (CIFAR-10 test).

Expected cost: 1000 sampled candidates x 60 epochs of CIFAR-10 is GPU/TPU work
(hours on one accelerator with the population engine; not run on the 2-core
CPU dev VM). ``--config.train.steps`` and ``--config.search.candidates_per_round``
scale it down.
"""

from jnas.search import defaults


def get_config(arg: str | None = "half"):
    """Returns the paper config; ``arg`` is "float", "half" or "reduced"."""
    c = defaults.get_config()
    c.search.spaces = (
        "probenet_s:s1",
        "probenet_s:s2",
        "resnet:s5",
        "resnext:s3",
        "mobilenetv2:s5",
        "mobilenetv2:s6",
        "densenet:s3",
        "pnasnet:s3",
        "googlenet:s6",
    )
    c.search.candidates_per_round = 1000
    c.constraints.memory_bytes = 32 * 1024
    c.constraints.latency_ms = 10.0
    c.latency.predictor = "raspi3b"
    c.data.name = "cifar10"
    c.data.fit = "pad"
    c.data.num_val = 5000
    c.train.batch_size = 128
    c.train.steps = 60 * 351  # 60 epochs of the 45k training images
    c.train.lr = 0.1
    c.train.schedule = "step"
    c.train.strategy = "autotune"
    c.train.max_bucket = 64
    variants = {"float": "float32", "half": "half", "reduced": "custom"}
    if arg not in variants:
        raise ValueError(
            f"unknown paper variant {arg!r}; allowed: {', '.join(variants)}"
        )
    c.constraints.memory_format = variants[arg]
    return c
