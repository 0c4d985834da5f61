"""Checking a search config before anything is written, and turning its groups
into the plain values the library takes (`make_recipe`, `load_data`).

`validate` names the bad key and what is allowed; `jnas.search.defaults`
documents every key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jnas import data, distributed, precision, spaces
from jnas.data import pipeline
from jnas.population import engine
from jnas.population import step as train
from jnas.search import sampling

MODES = ("random", "narrow")
MEMORY_FORMATS = ("float32", "half", "custom")
STRATEGY_CHOICES = ("rule", "autotune", *engine.STRATEGIES)
LATENCY_SOURCES = ("raspi3b", "none")  # or a path to a saved predictor
LAST_BATCH = ("drop", "keep")  # an epoch's partial last batch (pipeline.batch_shapes)


def _allowed(key: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ValueError(
            f"config.{key}={value!r} is not allowed; use one of "
            f"{', '.join(map(repr, allowed))}"
        )


def _positive(key: str, value: Any, *, integer: bool = False, zero: bool = False):
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(
        value, bool
    )
    if not ok or not (value >= 0 if zero else value > 0) or not math.isfinite(value):
        kind = "an integer" if integer else "a number"
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"config.{key}={value!r} must be {kind} {bound}")


def validate(config: Any) -> list[tuple[str, str]]:
    """Checks a search config; returns its (space, law) pairs.

    Raises:
      ValueError: naming the bad key and what is allowed.
    """
    pairs = []
    candidates = tuple(config.search.get("candidates", ()))
    if candidates:
        pairs = _validate_candidates(config, candidates)
    elif not config.search.spaces:
        raise ValueError("config.search.spaces is empty; give 'space:law' items")
    for item in () if candidates else config.search.spaces:
        if not isinstance(item, str) or item.count(":") != 1:
            raise ValueError(
                f"config.search.spaces item {item!r} must be 'space:law', "
                f"e.g. 'resnext:s3'; spaces: {', '.join(spaces.names())}"
            )
        space, law = item.split(":")
        try:
            space = spaces.canonical(space)
        except ValueError as e:
            raise ValueError(f"config.search.spaces: {e}") from None
        _allowed("search.spaces law of " + space, law, spaces.laws(space))
        pairs.append((space, law))
    _allowed("search.mode", config.search.mode, MODES)
    _positive("search.rounds", config.search.rounds, integer=True)
    _positive(
        "search.candidates_per_round", config.search.candidates_per_round, integer=True
    )
    _allowed(
        "constraints.memory_format", config.constraints.memory_format, MEMORY_FORMATS
    )
    for key in ("memory_bytes", "latency_ms", "flops"):  # 0 = no bound
        _positive(f"constraints.{key}", config.constraints[key], zero=True)
    _positive("train.steps", config.train.steps, integer=True)
    _positive("train.batch_size", config.train.batch_size, integer=True)
    _positive("train.lr", config.train.lr)
    _positive("train.log_every", config.train.log_every, integer=True)
    _positive("train.snapshot_every_s", config.train.snapshot_every_s, zero=True)
    _allowed("train.schedule", config.train.schedule, train.SCHEDULES)
    _allowed("train.augment", config.train.augment, (True, False))
    _allowed("train.strategy", config.train.strategy, STRATEGY_CHOICES)
    _allowed("train.conv_impl", config.train.conv_impl, ("auto", *engine.CONV_IMPLS))
    _positive("train.max_waste", config.train.max_waste, zero=True)
    _positive("formats.tolerance", config.formats.tolerance, zero=True)
    _positive("eval_batch_size", config.eval_batch_size, integer=True)
    _positive("train.weight_decay", config.train.weight_decay, zero=True)
    momentum = config.train.momentum
    _positive("train.momentum", momentum, zero=True)
    if momentum >= 1:
        raise ValueError(f"config.train.momentum={momentum!r} must be in [0, 1)")
    if config.train.qat_format:
        try:
            precision.as_format(config.train.qat_format)
        except ValueError as e:
            raise ValueError(
                f"config.train.qat_format={config.train.qat_format!r}: {e}; "
                "'' turns quantisation-aware training off"
            ) from None
    _validate_data(config.data)
    _allowed("train.last_batch", config.train.get("last_batch", "drop"), LAST_BATCH)
    if config.data.num_val == 0:
        # Without a validation split nothing can be selected on it.
        if config.constraints.memory_format == "custom":
            raise ValueError(
                "config.data.num_val=0 (no validation split) cannot choose the "
                "per-model format that constraints.memory_format='custom' needs; "
                "use 'float32' or 'half', or carve a validation split"
            )
        if config.search.mode == "narrow":
            raise ValueError(
                "config.data.num_val=0 (no validation split): search.mode="
                "'narrow' ranks candidates on validation accuracy; use 'random'"
            )
    _validate_distributed(config.get("distributed"))
    bits = config.formats.min_bits_for_memory
    if not isinstance(bits, int) or not 3 <= bits <= 32:
        raise ValueError(
            f"config.formats.min_bits_for_memory={bits!r} must be an int in 3..32"
        )
    source = config.latency.predictor
    if source not in LATENCY_SOURCES and not Path(source).is_file():
        raise ValueError(
            f"config.latency.predictor={source!r} is neither one of "
            f"{', '.join(LATENCY_SOURCES)} nor an existing predictor file"
        )
    if config.constraints.latency_ms and source == "none":
        raise ValueError(
            "config.constraints.latency_ms is set but config.latency.predictor is "
            "'none'; give a predictor ('raspi3b' or a file) or set it to None"
        )
    return pairs


def _validate_candidates(config: Any, items: Sequence[Any]) -> list[tuple[str, str]]:
    """Checks an explicit candidates list; returns its (space, law) pairs."""
    split = [sampling.split_item(item) for item in items]
    if any(which == "*" for _, _, which in split) and not config.search.netconfigs:
        raise ValueError(
            "config.search.candidates has 'space:law:*' items (every released "
            "index): set config.search.netconfigs to the release's NetConfigs.json"
        )
    if config.search.mode != "random" or config.search.rounds != 1:
        raise ValueError(
            f"config.search.candidates is a fixed list: it needs search.mode="
            f"'random' and search.rounds=1 (got {config.search.mode!r}, "
            f"{config.search.rounds!r}); narrowing samples new candidates"
        )
    return list(dict.fromkeys((space, law) for space, law, _ in split))


def _validate_data(cfg: Any) -> None:
    # Before the workdir is touched: a missing dataset or a bad fit would
    # otherwise fail after config.json is written.
    name = cfg.name
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"config.data.name={name!r} must be a dataset name, e.g. 'digits' or "
            "'cifar10' (or any label for an image folder)"
        )
    _allowed("data.source", cfg.source, ("", *data.SOURCES))
    _allowed("data.fit", cfg.fit, data.FIT_METHODS)
    _positive("data.num_val", cfg.num_val, integer=True, zero=True)
    mean, std = tuple(cfg.get("mean", ())), tuple(cfg.get("std", ()))
    channels = cfg.image_shape[-1] if len(tuple(cfg.image_shape)) == 3 else None
    if mean or std:
        ok = all(
            len(v) == channels
            and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)
            for v in (mean, std)
        )
        if not ok or not all(x > 0 for x in std):
            raise ValueError(
                f"config.data.mean={mean!r} / config.data.std={std!r}: give both, "
                f"{channels} finite numbers each (pixel/255 units, std > 0), or "
                "both () for the train split's own statistics"
            )
    _positive("data.max_train", cfg.max_train, integer=True, zero=True)
    shape = tuple(cfg.image_shape)
    if len(shape) != 3 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape
    ):
        raise ValueError(
            f"config.data.image_shape={cfg.image_shape!r} must be (H, W, C) of "
            "positive integers, e.g. (32, 32, 3)"
        )


def check_data(config: Any) -> None:
    """Checks that config.data's dataset is available (file-system checks only).

    Separate from `validate`, which checks values on any machine (a config
    for CIFAR-10 is valid where CIFAR-10 is not installed); `search.run` and
    the launcher call both before anything is written.

    Raises:
      data.DatasetNotFoundError: naming the key, where jnas looked and how to
        get the data.
    """
    cfg = config.data
    try:
        data.locate(
            cfg.name, source=cfg.source or "auto", data_dir=cfg.data_dir or None
        )
    except data.DatasetNotFoundError as e:
        raise data.DatasetNotFoundError(f"config.data.name={cfg.name!r}: {e}") from None


def _validate_distributed(dist: Any) -> None:
    # jnas.distributed keys; device counts are checked by make_mesh at run time.
    if dist is None:
        return
    _allowed("distributed.initialize", dist.initialize, distributed.INIT_MODES)
    cand = dist.mesh_candidates
    if (
        not isinstance(cand, int)
        or isinstance(cand, bool)
        or not (cand == -1 or cand >= 1)
    ):
        raise ValueError(
            f"config.distributed.mesh_candidates={cand!r} must be -1 (every "
            "local device the data axis leaves) or an integer >= 1"
        )
    _positive("distributed.mesh_data", dist.mesh_data, integer=True)
    _positive("distributed.num_processes", dist.num_processes, integer=True, zero=True)
    if "local_workers" in dist:
        _positive(
            "distributed.local_workers", dist.local_workers, integer=True, zero=True
        )
    if "heartbeat_timeout_s" in dist:
        _positive(
            "distributed.heartbeat_timeout_s", dist.heartbeat_timeout_s, integer=True
        )
    if "balance" in dist:
        _positive("distributed.balance", dist.balance, zero=True)
    if "queue_order" in dist:
        _allowed("distributed.queue_order", dist.queue_order, distributed.QUEUE_ORDERS)
    pid = dist.process_id
    if not isinstance(pid, int) or pid < -1:
        raise ValueError(
            f"config.distributed.process_id={pid!r} must be -1 (from the "
            "environment) or an integer >= 0"
        )
    address = dist.coordinator_address
    if address and (not isinstance(address, str) or address.count(":") < 1):
        raise ValueError(
            f"config.distributed.coordinator_address={address!r} must be "
            "'host:port' or '' (from the environment)"
        )


def compilation_cache_dir(value: str) -> Path | None:
    """The folder of JAX's persistent compilation cache for `config.compilation_cache`.

    "auto" (the default) is ``<jnas cache>/xla`` ($JNAS_CACHE_DIR, else
    ~/.cache/jnas), so a second run of the same search, or a resumed one,
    loads its compiled programs instead of compiling them; "" turns the cache
    off; anything else is a folder.
    """
    if value == "auto":
        return data.default_cache_dir() / "xla"
    return Path(value).expanduser() if value else None


def make_recipe(config: Any) -> engine.Recipe:
    """The training recipe of the config (optimiser, schedule, QAT formats)."""
    opts = {}
    if config.train.qat_format:
        opts["weight_format"] = config.train.qat_format
    return engine.Recipe(
        tx=train.make_optimizer(
            momentum=config.train.momentum, weight_decay=config.train.weight_decay
        ),
        schedule=train.make_schedule(config.train.schedule, config.train.steps),
        model_options=tuple(sorted(opts.items())),
    )


def load_data(
    config: Any, device: Any = None
) -> tuple[dict[str, pipeline.DeviceDataset], Any]:
    """The train/val/test splits of config.data, on the device.

    `device`: a device or sharding (replicated over a mesh); default device.
    """
    cfg = config.data
    kwargs = {"image_shape": tuple(cfg.image_shape), "fit": cfg.fit}
    if cfg.data_dir:
        kwargs["data_dir"] = cfg.data_dir
    if cfg.source:
        kwargs["source"] = cfg.source
    splits, meta = data.load_train_val_test(
        cfg.name, num_val=cfg.num_val, seed=config.seed, **kwargs
    )
    if cfg.max_train and cfg.max_train < len(splits["train"][1]):
        # A seeded, class-stratified subset in the original order: the first
        # N of an image folder (sorted by class) would be one or two classes.
        # seed + 1: not the same draw as the validation split's.
        x, y = splits["train"]
        _, _, x, y = data.split_validation(x, y, cfg.max_train, config.seed + 1)
        splits["train"] = (x, y)
    if cfg.get("mean"):  # fixed normalisation constants (e.g. a paper's)
        meta = meta._replace(
            mean=tuple(map(float, cfg.mean)), std=tuple(map(float, cfg.std))
        )
    ds = {
        k: pipeline.put_on_device(x, y, meta, device=device)
        for k, (x, y) in splits.items()
    }
    return ds, meta
