"""Every key of a search config: its default value and its documentation.

One table, `_KEYS`, declares each dotted key with its default and one line of
documentation; `get_config` builds the defaults from it, `DOCS` holds the
lines, and `describe` prints a config with them (``launch.search
--show_config``). Experiment files (``experiments/*.py``) start from
`get_config` and override what their run needs; `search.config.validate`
checks the values.

The defaults are a small search that runs offline on a CPU in minutes: three
small laws, the bundled digits, 300 SGD steps per candidate, and no budget
(the quickstart adds one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import ml_collections

# Dotted key -> (default, its documentation in one line). The order is the
# config's key order. Sequences are tuples: ml_collections' flags can set a
# tuple from the command line (--config.KEY), not a list.
_KEYS: dict[str, tuple[Any, str]] = {
    "seed": (0, "sampling, initialisation and data order"),
    "checkpoints": (True, "orbax checkpoint per candidate (workdir/checkpoints)"),
    "compilation_cache": (
        "auto",
        'JAX\'s persistent compilation cache: "auto" (~/.cache/jnas/xla, or '
        '$JNAS_CACHE_DIR/xla), a folder, or "" (off); a rerun skips compiling',
    ),
    "eval_batch_size": (500, "images per evaluation batch"),
    # search: what is sampled.
    "search.spaces": (
        ("resnext:s3", "mobilenetv2:s6", "pnasnet:s3"),
        "space:law pairs to sample from",
    ),
    "search.mode": ("random", '"random" | "narrow" (the automatic workflow)'),
    "search.rounds": (1, "rounds (narrow mode: each narrows the laws)"),
    "search.candidates_per_round": (24, "sampled, before the constraints"),
    "search.candidates": (
        (),
        "an explicit list instead of sampling (then spaces, mode and "
        'candidates_per_round are not used): "space:law:index", "space:law:A-B" '
        '(indices A..B) or "space:law:*" (every released index of the law)',
    ),
    "search.netconfigs": ("", 'the release\'s NetConfigs.json, for ":*" items'),
    "narrow.top_fraction": (0.5, "best feasible share spanning the next box"),
    "narrow.margin": (0.25, "box widening, in box widths (at least 1 unit)"),
    "narrow.max_tries": (50, "law draws per wanted candidate"),
    # Bounds are numbers, 0 meaning none, so --config overrides stay numbers.
    "constraints.memory_bytes": (
        0,
        "bound on the params' storage in memory_format [bytes] (0 = none)",
    ),
    "constraints.memory_format": (
        "float32",
        'what memory_bytes counts in: "float32" | "half" | "custom" (each '
        "model's own format from the format search)",
    ),
    "constraints.latency_ms": (
        0.0,
        "bound on the predicted Pi 3B+ latency [ms] (0 = none)",
    ),
    "constraints.flops": (0, "FLOPs bound (0 = none)"),
    "latency.predictor": (
        "raspi3b",
        '"raspi3b" (shipped Pi 3B+ predictor), "none", or a predictor file '
        "made by `python -m launch.calibrate` for this host",
    ),
    "formats.tolerance": (0.01, "allowed val-accuracy drop of the custom format"),
    "formats.min_bits_for_memory": (
        8,
        'bits per value the "custom" memory filter assumes before training',
    ),
    "data.name": (
        "digits",
        '"digits" | "cifar10" | "fashion_mnist" | a label (an image folder)',
    ),
    "data.source": ("", '"" (auto) | "tfds" | "folder" | "bundled"'),
    "data.data_dir": ("", 'image folder/archive or tfds dir ("" = default)'),
    "data.image_shape": ((32, 32, 3), "(H, W, C) the networks take"),
    "data.fit": ("resize", '"pad" | "resize" (to image_shape)'),
    "data.num_val": (
        300,
        "validation examples carved from train (0: train on all of it; nothing "
        "is then selected on validation: no per-model format, no narrowing)",
    ),
    "data.max_train": (
        0,
        "cap on training examples, a stratified subset (0 = all)",
    ),
    "data.mean": (
        (),
        "normalisation mean per channel (pixel/255 units); () = the train "
        "split's own mean and std",
    ),
    "data.std": ((), "normalisation std per channel, with data.mean"),
    "train.steps": (300, "SGD steps per candidate"),
    "train.batch_size": (32, "images per step (shared by a bucket)"),
    "train.lr": (0.05, "peak learning rate"),
    "train.momentum": (0.9, "SGD momentum, in [0, 1)"),
    "train.weight_decay": (5e-4, "L2 added to the gradient (PyTorch SGD)"),
    "train.schedule": ("cosine", '"constant" | "step" | "cosine"'),
    "train.augment": (False, "random crop + flip (CIFAR); flips change digits"),
    "train.last_batch": (
        "drop",
        'an epoch\'s partial last batch: "drop" (floor(N/B) steps per epoch) or '
        '"keep" (ceil(N/B), PyTorch\'s default; one more compiled step program)',
    ),
    "train.log_every": (50, "metrics leave the device every N steps"),
    "train.snapshot_every_s": (
        600.0,
        "seconds between snapshots of a bucket's training state in "
        "workdir/snapshots/ (a killed search resumes the bucket from it, "
        "bit-identically; 0 = none; not in config.json: it changes no number)",
    ),
    "train.strategy": (
        "rule",
        '"rule" | "autotune" | "vmap" | "map" | "sequential"',
    ),
    "train.conv_impl": ("auto", '"auto" | "xla" | "im2col"'),
    # 1.0 splits the quickstart's ResNeXt bucket of 6 (waste 1.76) into two of 3.
    "train.max_waste": (
        1.0,
        "padding waste bound of a bucket (on a CPU a bucket's candidates run "
        "one after another, so padding is pure extra work)",
    ),
    "train.max_bucket": (8, "candidates per bucket (0 = no bound)"),
    "train.device_memory_bytes": (
        0,
        "bucket memory bound (0 = 70% of the device's)",
    ),
    "train.qat_format": ("", 'quantisation-aware training format ("" = off)'),
    # distributed: how the search runs (jnas.distributed, docs/scale-out.md),
    # never what it computes, so config.json leaves it out. The defaults: one
    # process, every local device.
    "distributed.initialize": ("auto", '"auto" | "always" | "never"'),
    "distributed.coordinator_address": (
        "",
        '"host:port" of process 0 ("" = from the environment)',
    ),
    "distributed.num_processes": (0, "0 = from the environment / one process"),
    "distributed.process_id": (-1, "-1 = from the environment"),
    "distributed.heartbeat_timeout_s": (
        100,
        "seconds without heartbeats after which a process counts as dead and "
        "its unfinished bucket goes to another (JAX's default, 100)",
    ),
    "distributed.mesh_candidates": (
        -1,
        "devices on the candidates axis (-1: all)",
    ),
    "distributed.mesh_data": (1, "devices splitting each batch (1: replicated)"),
    "distributed.local_workers": (
        0,
        "worker processes on this host: 0 = one pinned to each core on a "
        "CPU-only host (the fastest way to use a CPU), 1 = this process",
    ),
    "distributed.queue_order": (
        "longest_first",
        'bucket queue: "longest_first" (shortest run) or "shortest_first" '
        "(finished candidates soonest, e.g. for a long run done in sittings)",
    ),
    "distributed.balance": (
        0.0,
        "pods: split any bucket costing more than the round's total over "
        "(processes x balance), so no one bucket decides when the round ends "
        "(docs/scale-out.md; benchmarks/pod_simulation.py measures 4); 0 = off: "
        "the plan does not depend on the process count",
    ),
}

#: Dotted key -> its documentation, one line (`--show_config`).
DOCS: dict[str, str] = {key: doc for key, (_, doc) in _KEYS.items()}


def get_config() -> ml_collections.ConfigDict:
    """A new config holding every key at its default (groups nested by dots)."""
    config = ml_collections.ConfigDict()
    for key, (value, _) in _KEYS.items():
        *groups, name = key.split(".")
        node = config
        for group in groups:
            if group not in node:
                node[group] = ml_collections.ConfigDict()
            node = node[group]
        node[name] = value
    return config


def leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a nested config, in sorted order."""
    for key in sorted(config.keys()):
        value = config[key]
        if hasattr(value, "keys"):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def describe(config: Any, docs: Mapping[str, str] = DOCS) -> str:
    """Every key of `config`, its value and its documentation, one per line.

    A key without documentation (one an experiment file added) is listed
    with its value alone.
    """
    lines = []
    for key, value in leaves(config):
        doc = docs.get(key)
        lines.append(f"{key} = {value!r}" + (f"  # {doc}" if doc else ""))
    return "\n".join(lines)
