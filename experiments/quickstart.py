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

Every key below is documented; `jnas.search.validate` names bad values.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the quickstart config (``arg``: "tiny" for the tests' version)."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # sampling, initialisation and data order
    c.checkpoints = True  # orbax checkpoint per candidate (workdir/checkpoints)
    # JAX's persistent compilation cache: "auto" (~/.cache/jnas/xla, or
    # $JNAS_CACHE_DIR/xla), a folder, or "" (off). A rerun skips compiling.
    c.compilation_cache = "auto"
    c.eval_batch_size = 500  # images per evaluation batch

    c.search = ml_collections.ConfigDict()
    c.search.spaces = ("resnext:s3", "mobilenetv2:s6", "pnasnet:s3")  # space:law
    c.search.mode = "random"  # "random" | "narrow" (the automatic workflow)
    c.search.rounds = 1  # rounds (narrow mode: each narrows the laws)
    c.search.candidates_per_round = 24  # sampled, before the constraints
    # An explicit list instead of sampling (then spaces, mode and
    # candidates_per_round are not used): "space:law:index", "space:law:A-B"
    # (indices A..B) or "space:law:*" (every released index of the law).
    c.search.candidates = ()
    c.search.netconfigs = ""  # the release's NetConfigs.json, for ":*" items

    c.narrow = ml_collections.ConfigDict()
    c.narrow.top_fraction = 0.5  # best feasible share spanning the next box
    c.narrow.margin = 0.25  # box widening, in box widths (at least 1 unit)
    c.narrow.max_tries = 50  # law draws per wanted candidate

    c.constraints = ml_collections.ConfigDict()
    # Bounds; 0 means no bound (a number, so --config overrides stay numbers).
    c.constraints.memory_bytes = 24 * 1024  # params' storage in memory_format
    c.constraints.memory_format = "half"  # "float32" | "half" | "custom"
    c.constraints.latency_ms = 20.0  # predicted Pi 3B+ latency bound [ms]
    c.constraints.flops = 0  # FLOPs bound

    c.latency = ml_collections.ConfigDict()
    # "raspi3b" (shipped Pi 3B+ predictor), "none", or a predictor file made
    # by `python -m launch.calibrate` for this host.
    c.latency.predictor = "raspi3b"

    c.formats = ml_collections.ConfigDict()
    c.formats.tolerance = 0.01  # allowed val-accuracy drop of the custom format
    c.formats.min_bits_for_memory = 8  # "custom" memory filter before training

    c.data = ml_collections.ConfigDict()
    c.data.name = "digits"  # "digits" | "cifar10" | "fashion_mnist" | a label
    c.data.source = ""  # "" (auto) | "tfds" | "folder" | "bundled"
    c.data.data_dir = ""  # image folder/archive or tfds dir ("" = default)
    c.data.image_shape = (32, 32, 3)  # (H, W, C) the networks take
    c.data.fit = "resize"  # "pad" | "resize" (to image_shape)
    # Validation examples carved from train (0: train on all of it; nothing
    # is then selected on validation: no per-model format, no narrowing).
    c.data.num_val = 300
    c.data.max_train = 0  # cap on training examples, a stratified subset (0 = all)
    # Normalisation constants per channel (pixel/255 units); () = the train
    # split's own mean and std.
    c.data.mean = ()
    c.data.std = ()  # per channel, with data.mean; () = the train split's

    c.train = ml_collections.ConfigDict()
    c.train.steps = 300  # SGD steps per candidate
    c.train.batch_size = 32  # images per step (shared by a bucket)
    c.train.lr = 0.05  # peak learning rate
    c.train.momentum = 0.9  # SGD momentum, in [0, 1)
    c.train.weight_decay = 5e-4  # L2 added to the gradient (PyTorch SGD)
    c.train.schedule = "cosine"  # "constant" | "step" | "cosine"
    c.train.augment = False  # random crop + flip (CIFAR); flips change digits
    # An epoch's partial last batch: "drop" (floor(N/B) steps per epoch) or
    # "keep" (ceil(N/B), PyTorch's default; one more compiled step program).
    c.train.last_batch = "drop"
    c.train.log_every = 50  # metrics leave the device every N steps
    # Seconds between snapshots of a bucket's whole training state (at a
    # metrics fetch) in workdir/snapshots/: a killed search resumes a bucket
    # from its snapshot, bit-identically, instead of from step 0. 0: none.
    # Not part of config.json (it changes no number).
    c.train.snapshot_every_s = 600.0
    c.train.strategy = "rule"  # "rule" | "autotune" | "vmap" | "map" | "sequential"
    c.train.conv_impl = "auto"  # "auto" | "xla" | "im2col"
    # Padding waste bound of a bucket. On a CPU the candidates of a bucket run
    # one after another (lax.map), so padding is pure extra work: 1.0 splits
    # the ResNeXt bucket of 6 (waste 1.76) into two of 3.
    c.train.max_waste = 1.0
    c.train.max_bucket = 8  # candidates per bucket (0 = no bound)
    c.train.device_memory_bytes = 0  # bucket memory bound (0 = 70% of the device's)
    c.train.qat_format = ""  # quantisation-aware training format ("" = off)

    # Scale-out (jnas.distributed). Defaults: one process, every local device.
    # Multi-host: see docs/scale-out.md for pod and SLURM commands.
    c.distributed = ml_collections.ConfigDict()
    c.distributed.initialize = "auto"  # "auto" | "always" | "never"
    c.distributed.coordinator_address = ""  # "host:port" of process 0 ("" = env)
    c.distributed.num_processes = 0  # 0 = from the environment / one process
    c.distributed.process_id = -1  # -1 = from the environment
    # Seconds without heartbeats after which a process counts as dead and its
    # unfinished bucket goes to another (JAX's default, 100).
    c.distributed.heartbeat_timeout_s = 100
    c.distributed.mesh_candidates = -1  # devices on the candidates axis (-1: all)
    c.distributed.mesh_data = 1  # devices splitting each batch (1: replicated)
    # Worker processes on this host: 0 = one worker pinned to each core
    # on a CPU-only host (the fastest way to use a CPU), 1 = this process.
    c.distributed.local_workers = 0
    # Bucket queue: "longest_first" (shortest run) or "shortest_first"
    # (finished candidates soonest, e.g. for a long run done in sittings).
    c.distributed.queue_order = "longest_first"
    # Pods: split any bucket costing more than the round's total over
    # (processes x balance), so no one bucket decides when the round ends
    # (docs/scale-out.md; 4 is what benchmarks/pod_simulation.py measures).
    # 0 = off: the plan does not depend on the process count.
    c.distributed.balance = 0.0

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
