"""The constrained search loop (the paper's workflow), resumable.

One round:

1. sample candidates from the configured (space, law) pairs, by seeded sample
   indices (`jnas.spaces.sample`); in "narrow" mode, rounds after the first
   keep only samples inside the box of arguments where feasible, accurate
   candidates were found (the paper's automatic workflow);
2. cost them (`jnas.cost`) and predict their latency (`jnas.latency`);
3. filter by the constraints: memory of the params in the constraint's number
   format, predicted latency, FLOPs; deduplicate by arch hash;
4. plan buckets (`jnas.population.plan`) and train each bucket with the
   population engine;
5. evaluate validation and test accuracy in float32, half and the per-model
   format (`format_search`), write a checkpoint and append one record per
   candidate to the results store (`jnas.results`).

Resume. Everything a round does is a function of the config and of the
records of earlier rounds: sample indices, the bucket plan, seeds and batch
order. A rerun skips buckets whose members are all recorded and retrains a
bucket that was interrupted, recording only its missing members, so its
results equal those of an uninterrupted run (XLA:CPU is deterministic).

Config: `experiments/quickstart.py` documents every key; `validate` checks them
and names the bad key and the allowed values.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.flatten_util import ravel_pytree

from jnas import arch as arch_lib
from jnas import (
    cost,
    data,
    distributed,
    latency,
    population,
    precision,
    results,
    spaces,
)
from jnas.data import pipeline
from jnas.population import engine, sharding
from jnas.population import step as train

MODES = ("random", "narrow")
MEMORY_FORMATS = ("float32", "half", "custom")
STRATEGY_CHOICES = ("rule", "autotune", "vmap", "map", "sequential")
LATENCY_SOURCES = ("raspi3b", "none")  # or a path to a saved predictor
E_GRID = range(2, 9)
M_GRID = range(0, 24)


class NoFeasibleCandidatesError(RuntimeError):
    """No sampled candidate satisfies the constraints."""


# --------------------------------------------------------------------- config


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
    if not config.search.spaces:
        raise ValueError("config.search.spaces is empty; give 'space:law' items")
    for item in config.search.spaces:
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
    _allowed("train.schedule", config.train.schedule, train.SCHEDULES)
    _allowed("train.augment", config.train.augment, (True, False))
    _allowed("train.strategy", config.train.strategy, STRATEGY_CHOICES)
    _allowed("train.conv_impl", config.train.conv_impl, ("auto", *engine.CONV_IMPLS))
    _positive("train.max_waste", config.train.max_waste, zero=True)
    _positive("formats.tolerance", config.formats.tolerance, zero=True)
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


# ------------------------------------------------------------------ sampling


def _sample_indices(seed: int, round_index: int, count: int) -> np.ndarray:
    rng = np.random.default_rng([seed, round_index, 0x5EA2C4])
    return rng.integers(0, 2**31, size=count)


def _flat_args(args: dict[str, Any]) -> dict[str, float]:
    """Numeric sampled arguments as scalars: lists become key[i] entries."""
    flat = {}
    for key, value in args.items():
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if isinstance(v, (int, float)):
                    flat[f"{key}[{i}]"] = float(v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = float(value)
    return flat


def narrowed_box(
    records: Sequence[dict[str, Any]], top_fraction: float, margin: float
) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """The sampling box per (space, law) for the next round of "narrow" mode.

    Among the feasible records of a (space, law), the best `top_fraction` by
    validation accuracy (float32) span, per numeric sampled argument, a range
    [lo, hi]; it is widened by `margin` times its width (and by at least 1,
    so integer arguments keep a neighbour). Pairs without feasible records get
    no box (their sampling stays the law's).
    """
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r.get("feasible"):
            by_pair.setdefault((r["space"], r["law"]), []).append(r)
    boxes = {}
    for (space, law), rs in by_pair.items():
        rs = sorted(rs, key=lambda r: -r["accuracy"]["float32"]["val"])
        top = rs[: max(1, math.ceil(top_fraction * len(rs)))]
        flats = [_flat_args(spaces.sampled_args(space, law, r["index"])) for r in top]
        keys = set.intersection(*(set(f) for f in flats))
        box = {}
        for key in keys:
            lo = min(f[key] for f in flats)
            hi = max(f[key] for f in flats)
            pad = max(1.0, margin * (hi - lo))
            box[key] = (lo - pad, hi + pad)
        boxes[(space, law)] = box
    return boxes


def _in_box(args: dict[str, Any], box: dict[str, tuple[float, float]]) -> bool:
    flat = _flat_args(args)
    return all(lo <= flat[k] <= hi for k, (lo, hi) in box.items() if k in flat)


def sample_round(
    config: Any,
    pairs: Sequence[tuple[str, str]],
    round_index: int,
    boxes: dict[tuple[str, str], dict[str, tuple[float, float]]] | None = None,
) -> list[arch_lib.Arch]:
    """The round's candidates, spread evenly over the (space, law) pairs.

    Deterministic in (config.seed, round): sample indices come from a seeded
    generator; an index whose network cannot be built (e.g. a DenseNet
    transition of zero width) is skipped, as are, in "narrow" mode, samples
    outside the pair's box (at most `narrow.max_tries` draws per candidate).
    """
    n = config.search.candidates_per_round
    want = [n // len(pairs) + (i < n % len(pairs)) for i in range(len(pairs))]
    out = []
    tries = max(1, config.narrow.max_tries if boxes else 4)
    for p, ((space, law), count) in enumerate(zip(pairs, want, strict=True)):
        indices = _sample_indices(config.seed, round_index * 1000 + p, count * tries)
        box = (boxes or {}).get((space, law))
        got = 0
        for index in indices:
            if got == count:
                break
            index = int(index)
            if box and not _in_box(spaces.sampled_args(space, law, index), box):
                continue
            try:
                out.append(spaces.sample(space, law, index))
            except ValueError:
                continue  # an invalid sample of the law: draw the next one
            got += 1
    return out


# ---------------------------------------------------------------- constraints


def memory_format(config: Any) -> precision.FloatFormat:
    """The number format the memory constraint is checked in before training.

    "custom" formats are known only after training; the filter then assumes
    `formats.min_bits_for_memory` bits (and the record says whether the chosen
    format kept the candidate within the budget).
    """
    kind = config.constraints.memory_format
    if kind == "float32":
        return precision.FLOAT32
    if kind == "half":
        return precision.HALF
    bits = config.formats.min_bits_for_memory  # only the width matters here
    exponent = min(8, bits - 2)
    return precision.FloatFormat(exponent, bits - 1 - exponent)


def load_predictor(config: Any) -> Any:
    """The latency predictor named by config.latency.predictor (or None)."""
    source = config.latency.predictor
    if source == "none":
        return None
    if source == "raspi3b":
        return latency.raspi3b_predictor()
    return latency.load(source)


def costs(arch: arch_lib.Arch, predictor: Any) -> dict[str, Any]:
    """Counts, memory per format and predicted latency of one candidate."""
    return {
        "params": cost.params(arch),
        "flops": cost.flops(arch),
        "macs": cost.macs(arch),
        "memory_bytes": {
            "float32": cost.memory_bytes(arch, precision.FLOAT32),
            "half": cost.memory_bytes(arch, precision.HALF),
        },
        "latency_ms": {
            "predicted": None if predictor is None else float(predictor.predict(arch)),
            "measured": None,
        },
    }


def satisfies(config: Any, arch: arch_lib.Arch, c: dict[str, Any]) -> bool:
    """Whether a candidate's costs meet the constraints (before training)."""
    limits = config.constraints
    if limits.memory_bytes:
        if cost.memory_bytes(arch, memory_format(config)) > limits.memory_bytes:
            return False
    if limits.latency_ms:
        if c["latency_ms"]["predicted"] > limits.latency_ms:
            return False
    return not limits.flops or c["flops"] <= limits.flops


def _infeasible_message(config, archs, all_costs) -> str:
    fmt = memory_format(config)
    mem = min(cost.memory_bytes(a, fmt) for a in archs)
    lat = [c["latency_ms"]["predicted"] for c in all_costs]
    lat_text = "n/a" if lat[0] is None else f"{min(lat):.2f} ms"
    flops = min(c["flops"] for c in all_costs)
    return (
        f"no candidate of {len(archs)} sampled satisfies the constraints "
        f"(memory <= {config.constraints.memory_bytes} B in {fmt}, latency <= "
        f"{config.constraints.latency_ms} ms, FLOPs <= {config.constraints.flops}); "
        f"smallest seen: memory {mem} B, latency {lat_text}, FLOPs {flops}. "
        "Relax the budgets or sample smaller laws."
    )


# -------------------------------------------------------------- format search


@functools.cache
def _vector_quantizer(fmt: precision.FloatFormat) -> Callable:
    return jax.jit(functools.partial(precision.quantize, fmt=fmt))


def quantize_variables(variables: Any, fmt: precision.FloatFormat | None) -> Any:
    """Every stored value (params and BN statistics) rounded to `fmt`.

    The values are flattened into one float32 vector padded to a power of two,
    so one compiled rounding per format serves every network of a search
    (the format search evaluates dozens of formats per bucket).
    """
    if fmt is None:
        return variables
    flat, unravel = ravel_pytree(variables)
    n = flat.shape[0]
    size = 1 << max(10, (n - 1).bit_length())
    padded = jnp.zeros(size, jnp.float32).at[:n].set(flat.astype(jnp.float32))
    rounded = _vector_quantizer(fmt)(padded)[:n].astype(flat.dtype)
    return unravel(rounded)


def format_grid_by_bits() -> list[list[precision.FloatFormat]]:
    """The grid E in 2..8, M in 0..23, grouped by total bits (increasing)."""
    by_bits: dict[int, list[precision.FloatFormat]] = {}
    for e in E_GRID:
        for m in M_GRID:
            fmt = precision.FloatFormat(e, m)
            by_bits.setdefault(fmt.bits, []).append(fmt)
    return [by_bits[b] for b in sorted(by_bits)]


def format_search(
    evaluate: Callable[[precision.FloatFormat | None], np.ndarray],
    reference: np.ndarray,
    tolerance: float,
) -> tuple[list[precision.FloatFormat], list[list[dict[str, Any]]]]:
    """Per candidate, the format with the fewest bits within `tolerance`.

    Walks the grid in increasing total bits and stops once every candidate has
    a format, so the answer is exactly the grid's minimum without assuming that
    accuracy grows with bits. Among passing formats of the same width the one
    with the best validation accuracy wins (then more exponent bits).

    Args:
      evaluate: format -> validation accuracy of every candidate (weights and
        statistics rounded to it).
      reference: float32 validation accuracy per candidate.
      tolerance: allowed accuracy drop (absolute, e.g. 0.01 = one point).

    Returns:
      (chosen format per candidate, per candidate the list of evaluations
      {"format", "bits", "val"} made on the way).
    """
    n = len(reference)
    chosen: list[precision.FloatFormat | None] = [None] * n
    grid: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for formats in format_grid_by_bits():
        best: list[tuple[float, int] | None] = [None] * n
        for fmt in formats:
            accs = evaluate(fmt)
            for i in range(n):
                if chosen[i] is not None:
                    continue
                grid[i].append(
                    {"format": str(fmt), "bits": fmt.bits, "val": float(accs[i])}
                )
                if accs[i] >= reference[i] - tolerance - 1e-12:
                    score = (float(accs[i]), fmt.exponent_bits)
                    if best[i] is None or score > best[i][0]:
                        best[i] = (score, fmt)
        for i in range(n):
            if chosen[i] is None and best[i] is not None:
                chosen[i] = best[i][1]
        if all(c is not None for c in chosen):
            break
    return chosen, grid


# ------------------------------------------------------------------- training


def _seed_of(arch_hash: str, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{arch_hash}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


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


def _choose(config, bucket, recipe, input_shape) -> tuple[str, str]:
    choice = config.train.strategy
    if choice == "rule" or (choice == "autotune" and bucket.size == 1):
        strategy, impl = engine.default_plan(bucket)
    elif choice == "autotune":
        (strategy, impl), _ = engine.autotune(
            bucket, recipe, batch_size=config.train.batch_size, input_shape=input_shape
        )
    else:
        strategy, impl = choice, engine.default_plan(bucket)[1]
    if config.train.conv_impl != "auto":
        impl = config.train.conv_impl
    return strategy, impl


def _state_variables(trainer: engine.BucketTrainer) -> Any:
    if trainer.strategy == "sequential":
        return [
            {"params": s.params, "batch_stats": s.batch_stats} for s in trainer.states
        ]
    return {"params": trainer.states.params, "batch_stats": trainer.states.batch_stats}


def train_and_evaluate_bucket(
    config: Any,
    bucket: population.Bucket,
    recipe: engine.Recipe,
    datasets: dict[str, pipeline.DeviceDataset],
    bucket_seed: int,
    mesh: Any = None,
) -> tuple[engine.BucketTrainer, list[dict[str, Any]]]:
    """Trains one bucket and runs the format search; returns per-member fields.

    `mesh` (`jnas.distributed.mesh_from_config`): shard the candidates.
    """
    input_shape = tuple(bucket.padded.input_shape)
    strategy, impl = _choose(config, bucket, recipe, input_shape)
    keys = [jax.random.key(_seed_of(a.hash, config.seed)) for a in bucket.members]
    lrs = [config.train.lr] * bucket.size
    start = time.perf_counter()
    trainer = engine.BucketTrainer(
        bucket,
        recipe,
        keys=keys,
        lrs=lrs,
        strategy=strategy,
        conv_impl=impl,
        mesh=mesh,
    )
    history = engine.train_bucket(
        trainer,
        datasets["train"],
        steps=config.train.steps,
        batch_size=config.train.batch_size,
        data_key=jax.random.key(bucket_seed),
        log_every=config.train.log_every,
        augment=config.train.augment,
    )
    seconds = time.perf_counter() - start
    diverged = trainer.diverged()
    trained = _state_variables(trainer)

    def accuracy(split: str, fmt: precision.FloatFormat | None) -> np.ndarray:
        if trainer.strategy == "sequential":
            variables = [quantize_variables(v, fmt) for v in trained]
        else:
            variables = quantize_variables(trained, fmt)
        return engine.evaluate(
            trainer,
            datasets[split],
            batch_size=config.eval_batch_size,
            variables=variables,
        )

    val32 = accuracy("val", None)
    chosen, grids = format_search(
        lambda fmt: accuracy("val", fmt), val32, config.formats.tolerance
    )
    out = []
    per_format = {
        "float32": {"val": val32, "test": accuracy("test", None)},
        "half": {
            "val": accuracy("val", precision.HALF),
            "test": accuracy("test", precision.HALF),
        },
    }
    custom_test = {}
    for fmt in set(chosen):
        custom_test[fmt] = accuracy("test", fmt)
    for i, arch in enumerate(bucket.members):
        fmt = chosen[i]
        acc = {k: {s: float(v[s][i]) for s in v} for k, v in per_format.items()}
        val_custom = next(g["val"] for g in grids[i] if g["format"] == str(fmt))
        acc["custom"] = {"val": val_custom, "test": float(custom_test[fmt][i])}
        loss = float(history[-1]["loss"][i]) if history else math.nan
        loss = loss if math.isfinite(loss) else None
        out.append(
            {
                "accuracy": acc,
                "custom_format": str(fmt),
                "format_grid": grids[i],
                "memory_custom": cost.memory_bytes(arch, fmt),
                "train": {
                    "steps": config.train.steps,
                    "lr": config.train.lr,
                    "seed": _seed_of(arch.hash, config.seed),
                    "final_loss": loss,
                    "final_train_accuracy": float(history[-1]["accuracy"][i]),
                    "diverged": bool(diverged[i]),
                    "seconds": seconds / bucket.size,
                    "strategy": strategy,
                    "conv_impl": impl,
                    "bucket_size": bucket.size,
                },
            }
        )
    return trainer, out


save_checkpoint = results.save_checkpoint
load_checkpoint = results.load_checkpoint


# ------------------------------------------------------------------------ run


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
    if cfg.max_train:
        x, y = splits["train"]
        splits["train"] = (x[: cfg.max_train], y[: cfg.max_train])
    ds = {
        k: pipeline.put_on_device(x, y, meta, device=device)
        for k, (x, y) in splits.items()
    }
    return ds, meta


def feasible(config: Any, record: dict[str, Any]) -> bool:
    """Whether a finished candidate meets every constraint in its format."""
    limits = config.constraints
    kind = limits.memory_format
    if limits.memory_bytes and record["memory_bytes"][kind] > limits.memory_bytes:
        return False
    lat = record["latency_ms"]["predicted"]
    if limits.latency_ms and (lat is None or lat > limits.latency_ms):
        return False
    if limits.flops and record["flops"] > limits.flops:
        return False
    return not record["train"]["diverged"]


def run(config: Any, workdir: str | Path) -> list[dict[str, Any]]:
    """Runs (or resumes) a search; returns all records of the workdir.

    Raises:
      NoFeasibleCandidatesError: nothing sampled meets the constraints.
      results.ConfigMismatchError: the workdir belongs to another config.
      ValueError: a bad config value (naming the key).
    """
    pairs = validate(config)
    workdir = Path(workdir)
    # jnas.distributed: each process trains the buckets it owns on its own
    # devices and appends to its own shard; any shard's records count as done.
    pid, nproc = jax.process_index(), jax.process_count()
    saved = config.to_dict()
    saved.pop("distributed", None)  # where it runs, not what it computes
    if pid == 0:
        results.write_config(workdir, saved)
    distributed.barrier("jnas_config")
    if pid != 0:
        results.write_config(workdir, saved)  # checks it is the same
    store = results.Store(workdir, results.shard_name(pid, nproc))
    dist = config.get("distributed")
    mesh = sharding.mesh_from_config(dist) if dist is not None else None
    engine.enable_compilation_cache(config.compilation_cache or None)
    predictor = load_predictor(config)
    recipe = make_recipe(config)
    datasets = None
    started, done_at_start = time.perf_counter(), len(store)
    for round_index in range(config.search.rounds):
        known = {r["hash"]: r for r in results.load(workdir)}  # every shard
        boxes = None
        if config.search.mode == "narrow" and round_index > 0:
            prior = [r for r in known.values() if r["round"] < round_index]
            boxes = narrowed_box(
                prior, config.narrow.top_fraction, config.narrow.margin
            )
        archs = sample_round(config, pairs, round_index, boxes)
        all_costs = [costs(a, predictor) for a in archs]
        seen, keep = set(), []
        for a, c in zip(archs, all_costs, strict=True):
            if a.hash in seen or not satisfies(config, a, c):
                continue
            if a.hash in known and known[a.hash]["round"] != round_index:
                continue  # found in an earlier round
            seen.add(a.hash)
            keep.append((a, c))
        if not keep:
            if round_index == 0 and not known:
                raise NoFeasibleCandidatesError(
                    _infeasible_message(config, archs, all_costs)
                )
            logging.warning("round %d: no new feasible candidate", round_index)
            continue
        plan = population.plan(
            [a for a, _ in keep],
            max_waste=config.train.max_waste,
            max_size=config.train.max_bucket or None,
            # The IR's estimate of each bucket's step memory is kept under
            # this, so a bucket too big for the device is split, not run.
            memory_budget=config.train.device_memory_bytes
            or engine.device_memory_budget(),
            batch_size=config.train.batch_size,
        )
        total = len(keep)
        logging.info(
            "round %d: %d sampled, %d satisfy the constraints, %d buckets",
            round_index,
            len(archs),
            total,
            len(plan),
        )
        for b, (bucket, indices) in enumerate(plan):
            if distributed.owner(b, nproc) != pid:
                continue  # another process's bucket
            todo = [i for i in indices if keep[i][0].hash not in known]
            if not todo:
                continue
            if datasets is None:
                device = None if mesh is None else sharding.replicated(mesh)
                datasets, _ = load_data(config, device)
            bucket_seed = _seed_of(bucket.members[0].hash, config.seed + round_index)
            trainer, fields = train_and_evaluate_bucket(
                config, bucket, recipe, datasets, bucket_seed, mesh
            )
            for j, i in enumerate(indices):
                arch, c = keep[i]
                if arch.hash in store or arch.hash in known:
                    continue
                meta = dict(arch.meta)
                f = fields[j]
                record = {
                    "hash": arch.hash,
                    "space": meta["space"],
                    "law": meta["law"],
                    "index": meta["index"],
                    "arch": arch.to_dict(meta=False),
                    "round": round_index,
                    **c,
                    "memory_bytes": {**c["memory_bytes"], "custom": f["memory_custom"]},
                    "accuracy": f["accuracy"],
                    "custom_format": f["custom_format"],
                    "format_grid": f["format_grid"],
                    "train": f["train"],
                    "bucket": b,
                }
                record["feasible"] = feasible(config, record)
                if config.checkpoints:
                    save_checkpoint(workdir, arch.hash, trainer.variables(j))
                store.append(record)
            del trainer
            engine.clear_caches()  # a bucket's programs are not reused
            _log_progress(config, store, round_index, started, done_at_start, total)
        if nproc > 1:  # the next round (and the merge) needs every record
            distributed.barrier(f"jnas_round_{round_index}")
            recorded = {r["hash"] for r in results.load(workdir)}
            missing = [a.hash for a, _ in keep if a.hash not in recorded]
            if missing:
                raise RuntimeError(
                    f"process {pid}: round {round_index}'s candidates "
                    f"{', '.join(missing[:4])} are not in {workdir}'s result "
                    "shards after every process finished the round; a "
                    "multi-process search needs a workdir every host shares"
                )
    final = results.load(workdir)
    if nproc > 1:
        if pid == 0:
            results.merge_shards(workdir, final)
        distributed.barrier("jnas_merged")
    return final


def _log_progress(
    config, store, round_index, started, done_at_start, round_total=None
) -> None:
    # The ETA covers this round's feasible candidates (later rounds' counts
    # are unknown until they are sampled and filtered).
    done = len(store)
    rate = (time.perf_counter() - started) / max(1, done - done_at_start)
    in_round = sum(1 for r in store.records() if r["round"] == round_index)
    total = round_total if round_total is not None else in_round
    eta = rate * max(0, total - in_round)
    feasible_records = [r for r in store.records() if r.get("feasible")]
    best = max(
        feasible_records,
        key=lambda r: r["accuracy"]["float32"]["val"],
        default=None,
    )
    best_text = "none yet"
    if best is not None:
        best_text = (
            f"{best['space']}:{best['law']}#{best['index']} val "
            f"{best['accuracy']['float32']['val']:.3f} ({best['custom_format']}, "
            f"{best['memory_bytes']['custom']} B)"
        )
    logging.info(
        "round %d: %d/%d feasible candidates trained (%d in the store), "
        "ETA of the round %.0f s; best feasible: %s",
        round_index,
        in_round,
        total,
        done,
        eta,
        best_text,
    )
