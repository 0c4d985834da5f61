"""The released networks trained under the authors' recipe, on CIFAR-10 (issue 17).

Runbook (from the repository root; CIFAR-10 from tfds, or a folder/archive:
add ``--config.data.data_dir=PATH``, e.g. shared/datasets/cifar10-jpeg.tar.gz):

    # Phase 1: 24 MobileNetV2 networks (laws s4, s5, s6), 5 epochs, seed 0
    python -m launch.search --config=experiments/reproduce.py:phase1 \\
        --workdir=runs/reproduce_phase1
    # Seed noise: six of them again under seeds 1 and 2
    python -m launch.search --config=experiments/reproduce.py:seeds \\
        --config.seed=1 --workdir=runs/reproduce_seed1
    python -m launch.search --config=experiments/reproduce.py:seeds \\
        --config.seed=2 --workdir=runs/reproduce_seed2
    # Phase 3, QAT: the best phase-1 network of each law trained with its
    # stored values rounded to e4m3 (8 bits) in the forward pass; compare
    # with the same networks' post-training e4m3 (the format sweep)
    python -m launch.search --config=experiments/reproduce.py:qat \
        --workdir=runs/reproduce_qat
    # Phase 2: a longer schedule (30 epochs) on the s5 and s6 networks
    python -m launch.search --config=experiments/reproduce.py:phase2 \\
        --workdir=runs/reproduce_phase2
    # The comparison with the released accuracies (per network, per law)
    python -m launch.compare --workdir=runs/reproduce_phase1 \\
        --netconfigs=PATH/NetConfigs.json

The recipe, exactly (docs/reproduction.md compares it with the authors' code):
- SGD, lr 0.1, momentum 0.9, no Nesterov, weight decay 5e-4 added to the
  gradient of every parameter (BatchNorm scales and shifts and biases too);
  mean cross-entropy;
- batch 128, a fresh permutation every epoch, the last partial batch kept
  (391 steps per epoch of 50,000 images, the last of 80);
- cosine decay per step, lr_t = 0.1 * (1 + cos(pi t / T)) / 2, T = 391 *
  epochs, no warm-up;
- per sample: zero-pad 4, random 32x32 crop, horizontal flip p = 0.5, /255,
  normalise with mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010);
- PyTorch's default initialisation (kaiming-uniform a = sqrt(5): U(+-1 /
  sqrt(fan_in)) for conv and linear weights and biases), BatchNorm momentum
  0.1, eps 1e-5 (the networks' IR), float32;
- all 50,000 training images (no validation split: ``data.num_val = 0``), the
  last epoch evaluated on the 10,000 test images with eval-mode BatchNorm.

No constraints: every listed network is trained. Without a validation split
nothing is selected, so the record has float32 and half test accuracy and no
per-model format; ``python -m launch.formats`` then sweeps every format on
the test split (phase 3).
"""

from jnas.search import defaults

EPOCH_STEPS = 391  # ceil(50,000 / 128): the last partial batch is kept
# Phase 1's networks (random_net_mobilenetv2, law: release indices).
PHASE1 = {
    "s4": (0, 4, 6, 10, 13, 21, 22, 26),
    "s5": (0, 15, 19, 20, 22, 31, 33, 37),
    "s6": (0, 10, 12, 14, 21, 27, 30, 39),
}
# Seed noise: the first four s6 and the first two s5 networks of phase 1.
SEEDS = {"s5": PHASE1["s5"][:2], "s6": PHASE1["s6"][:4]}
# QAT: the best network of each law in phase 1 (seed 0, float32 test accuracy:
# s4:4 67.43%, s5:31 52.59%, s6:30 47.08%; s4 among the networks finished
# when this was chosen, 20 of 24).
QAT = {"s4": (4,), "s5": (31,), "s6": (30,)}
VARIANTS = ("phase1", "seeds", "phase2", "qat", "tiny")


def _items(laws: dict[str, tuple[int, ...]]) -> tuple[str, ...]:
    return tuple(f"mobilenetv2:{law}:{i}" for law, ids in laws.items() for i in ids)


def get_config(arg: str | None = "phase1"):
    """Returns the recipe; ``arg``: one of ``VARIANTS`` ("tiny": the tests')."""
    if arg not in VARIANTS:
        raise ValueError(
            f"unknown reproduce variant {arg!r}; allowed: {', '.join(VARIANTS)}"
        )
    c = defaults.get_config()
    c.search.candidates = _items(PHASE1)
    c.constraints.memory_bytes = 0
    c.constraints.memory_format = "float32"
    c.constraints.latency_ms = 0.0
    c.data.name = "cifar10"
    c.data.fit = "pad"  # CIFAR-10 is 32x32 already: nothing to fit
    c.data.num_val = 0  # train on all 50,000; report the test split
    c.data.mean = (0.4914, 0.4822, 0.4465)
    c.data.std = (0.2023, 0.1994, 0.2010)
    c.train.batch_size = 128
    c.train.last_batch = "keep"
    c.train.lr = 0.1
    c.train.momentum = 0.9
    c.train.weight_decay = 5e-4
    c.train.schedule = "cosine"
    c.train.augment = True
    c.train.steps = 5 * EPOCH_STEPS
    c.train.log_every = EPOCH_STEPS  # one curve point per epoch
    c.eval_batch_size = 500
    if arg == "seeds":
        c.search.candidates = _items(SEEDS)
    elif arg == "phase2":
        c.search.candidates = _items({k: PHASE1[k] for k in ("s5", "s6")})
        c.train.steps = 30 * EPOCH_STEPS
    elif arg == "qat":
        # Quantisation-aware training in an 8-bit format. The model's forward
        # pass rounds every stored value to it, in training and evaluation, so
        # the record's "float32" test accuracy is the network as deployed in
        # e4m3 (the master weights stay float32 for the optimiser).
        c.search.candidates = _items(QAT)
        c.train.qat_format = "e4m3"
    elif arg == "tiny":  # the tests' version: two networks, a few steps
        c.distributed.local_workers = 1
        c.search.candidates = ("mobilenetv2:s6:27", "mobilenetv2:s6:39")
        c.train.steps = 6
        c.train.log_every = 3
        c.eval_batch_size = 100
    return c
