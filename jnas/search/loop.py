"""The constrained search loop (the paper's workflow), resumable.

`run` reads as the workflow, one round after another:

1. sample candidates from the configured (space, law) pairs (`sampling`;
   in "narrow" mode rounds after the first sample inside the box of
   arguments where feasible, accurate candidates were found);
2. cost them and predict their latency (`constraints.costs`);
3. filter by the constraints and deduplicate by arch hash;
4. plan buckets of candidates that share one program (`population.plan`);
5. train each bucket with the population engine;
6. run the format search: float32, half and the per-model format
   (`formats.evaluate_formats`);
7. checkpoint and append one record per candidate (`jnas.results`).

Resume. Everything a round does is a function of the config and of the
records of earlier rounds: sample indices, the bucket plan, seeds and batch
order. A rerun skips buckets whose members are all recorded and retrains a
bucket that was interrupted, recording only its missing members, so its
results equal those of an uninterrupted run (XLA:CPU is deterministic).

Several processes (`jnas.distributed`): each takes the next bucket from a
queue shared by all (`distributed.take`, longest estimated cost first) when it
is free, and appends to its own shard; any shard's records count as done;
process 0 merges.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
from absl import logging

from jnas import arch as arch_lib
from jnas import distributed, population, results, storage
from jnas.population import engine, sharding
from jnas.search import config as config_lib
from jnas.search import constraints, formats, replay, sampling
from jnas.search import progress as progress_lib

Candidate = tuple[arch_lib.Arch, dict[str, Any]]  # (arch, its costs)


def run(
    config: Any, workdir: str | Path, *, adopt_records: bool = False
) -> list[dict[str, Any]]:
    """Runs (or resumes) a search; returns all records of the workdir.

    `adopt_records`: continue in a workdir that holds results but no
    config.json, declaring that this config made them (`results.write_config`).

    Raises:
      constraints.NoFeasibleCandidatesError: nothing sampled meets the
        constraints.
      results.ConfigMismatchError: the workdir belongs to another config.
      ValueError: a bad config value (naming the key).
      data.DatasetNotFoundError: the config's dataset is not available.
    """
    pairs = config_lib.validate(config)
    config_lib.check_data(config)  # before anything is written
    explicit = _explicit_candidates(config)  # also before: names a bad item
    limits = constraints.from_config(config)
    workdir = storage.path(workdir)
    pid, nproc = distributed.process_index(), distributed.process_count()
    _write_config(config, workdir, pid, adopt_records)
    store = results.Store(workdir, results.shard_name(pid, nproc))
    if config.checkpoints and pid == 0:
        _report_bad_checkpoints(workdir)
    dist = config.get("distributed")
    mesh = sharding.mesh_from_config(dist) if dist is not None else None
    engine.enable_compilation_cache(
        config_lib.compilation_cache_dir(config.compilation_cache)
    )
    predictor = constraints.load_predictor(config.latency.predictor)
    recipe = config_lib.make_recipe(config)
    datasets = None
    progress = progress_lib.Progress(workdir)
    for round_index in range(config.search.rounds):
        known = {r["hash"]: r for r in results.load(workdir)}  # every shard
        archs = explicit or _sample(config, pairs, round_index, known.values())
        all_costs = [constraints.costs(a, predictor) for a in archs]
        keep = _filter(limits, archs, all_costs, known, round_index)
        if not keep:
            if round_index == 0 and not known:
                raise constraints.NoFeasibleCandidatesError(
                    constraints.infeasible_message(limits, archs, all_costs)
                )
            logging.warning("round %d: no new feasible candidate", round_index)
            continue
        plan = _plan(config, [a for a, _ in keep])
        logging.info(
            "round %d: %d sampled, %d satisfy the constraints, %d buckets",
            round_index,
            len(archs),
            len(keep),
            len(plan),
        )
        # Every process builds the same queue from the config; each bucket
        # then goes to whichever process is free first (one per process
        # with static shares left a worker idle for minutes when the cost
        # estimate was off).
        costs = [_bucket_cost(config, b) for b, _ in plan]
        rule = dist.get("queue_order", "longest_first") if dist else "longest_first"
        order = distributed.queue_order(costs, rule)
        queue = distributed.WorkQueue(
            order, f"round{round_index}", lease_s=distributed.lease_seconds(dist)
        )
        for b in queue:
            bucket, indices = plan[b]
            if queue.taken_over:  # what its dead taker recorded counts
                known = {r["hash"]: r for r in results.load(workdir)}
            todo = [i for i in indices if keep[i][0].hash not in known]
            if not todo:
                continue  # finished by an earlier run
            if datasets is None:
                device = None if mesh is None else sharding.replicated(mesh)
                datasets, _ = config_lib.load_data(config, device)
            seed = _seed_of(bucket.members[0].hash, config.seed + round_index)
            meta = dict(bucket.members[0].meta)
            label = (
                f"round {round_index} bucket {b} "
                f"({meta.get('space')}:{meta.get('law')} x{bucket.size})"
            )
            snapshot_id = _snapshot_id(bucket, seed)
            trainer, train_info = _train(
                config,
                bucket,
                recipe,
                datasets,
                seed,
                mesh,
                label,
                workdir,
                snapshot_id,
            )
            evaluated = formats.evaluate_formats(
                trainer,
                datasets,
                batch_size=config.eval_batch_size,
                tolerance=config.formats.tolerance,
            )
            trained = trainer.all_variables() if config.checkpoints else None
            for j, i in enumerate(indices):
                arch, costs = keep[i]
                if arch.hash in store or arch.hash in known:
                    continue
                record = make_record(
                    arch, costs, evaluated[j], train_info[j], round_index, b, limits
                )
                if config.checkpoints:
                    results.save_checkpoint(workdir, arch.hash, trained[j])
                store.append(record)
            results.drop_snapshot(workdir, snapshot_id)
            del trainer
            engine.clear_caches()  # a bucket's programs are not reused
            progress.log(round_index, len(keep))
        if nproc > 1:  # the next round (and the merge) needs every record
            _check_round_recorded(workdir, round_index, [a for a, _ in keep])
    final = results.load(workdir)
    if pid == 0:
        if nproc > 1:
            results.merge_shards(workdir, final)
        # Every bucket is recorded (with several processes, checked above):
        # a snapshot still here was left by a kill between a bucket's last
        # record and its snapshot's deletion.
        if stale := results.drop_all_snapshots(workdir):
            logging.info("dropped %d stale bucket snapshot(s)", stale)
    return final


def make_record(
    arch: arch_lib.Arch,
    costs: dict[str, Any],
    evaluated: dict[str, Any],
    train_info: dict[str, Any],
    round_index: int,
    bucket_index: int,
    limits: constraints.Constraints,
) -> dict[str, Any]:
    """One candidate's record (fields: `jnas.results`)."""
    meta = dict(arch.meta)
    record = {
        "hash": arch.hash,
        "space": meta["space"],
        "law": meta["law"],
        "index": meta["index"],
        "arch": arch.to_dict(meta=False),
        "round": round_index,
        **costs,
        "memory_bytes": {
            **costs["memory_bytes"],
            "custom": evaluated["memory_custom"],
        },
        "accuracy": evaluated["accuracy"],
        "custom_format": evaluated["custom_format"],
        "format_grid": evaluated["format_grid"],
        "train": train_info,
        "bucket": bucket_index,
    }
    record["feasible"] = constraints.feasible(limits, record)
    return record


# ----------------------------------------------------------- the steps


# Config keys that say how a search runs, not what it computes: left out of
# config.json, so they may differ between sittings of one workdir.
EXECUTION_ONLY = (
    "distributed",  # where it runs: processes, queue order, balance
    # how often training is snapshotted (a resumed bucket is bit-identical)
    "train.snapshot_every_s",
)


def _write_config(config: Any, workdir: Path, pid: int, adopt: bool) -> None:
    saved = config.to_dict()
    for dotted in EXECUTION_ONLY:
        *parents, key = dotted.split(".")
        group = saved
        for name in parents:
            group = group.get(name, {})
        group.pop(key, None)
    if pid == 0:
        results.write_config(workdir, saved, adopt=adopt)
    distributed.barrier("jnas_config")
    if pid != 0:
        results.write_config(workdir, saved)  # checks it is the same


class _Watchers:
    """Several `engine.train_bucket` on_log hooks as one."""

    def __init__(self, *hooks):
        self.hooks = hooks

    def __call__(self, step, record):
        for hook in self.hooks:
            hook(step, record)


class _CurveWriter:
    """Appends each fetch's per-candidate metrics to the workdir's curves file.

    Rows: {"hash", "step", "loss" (mean over the window), "train_accuracy"
    (over the window), "lr" (the learning rate of the window's last step)};
    a diverged candidate's NaN loss is written as null.
    """

    def __init__(self, workdir, bucket, recipe, lr: float):
        self.path_name = results.shard_name(
            distributed.process_index(), distributed.process_count(), results.CURVES
        )
        self.workdir, self.lr, self.schedule = workdir, lr, recipe.schedule
        self.hashes = [a.hash for a in bucket.members]

    def __call__(self, step, record):
        lr = self.lr * float(self.schedule(step - 1))  # optax counts from 0
        rows = []
        for i, h in enumerate(self.hashes):
            loss, acc = float(record["loss"][i]), float(record["accuracy"][i])
            rows.append(
                {
                    "hash": h,
                    "step": int(step),
                    "loss": loss if math.isfinite(loss) else None,
                    "train_accuracy": acc if math.isfinite(acc) else None,
                    "lr": lr,
                }
            )
        results.append_curves(self.workdir, self.path_name, rows)


def _report_bad_checkpoints(workdir: Path) -> list[str]:
    """Warns, by name, of recorded candidates whose checkpoint is gone or bad.

    A rerun restores every recorded candidate's checkpoint once (these
    networks are small). Their records stand (the store is append-only);
    the warning says how to get the checkpoints back.
    """
    problems = []
    for record in results.load(workdir):
        problem = results.checkpoint_problem(workdir, record["hash"])
        if problem:
            problems.append(f"{results.model_name(record)}: {problem}")
    if problems:
        logging.warning(
            "%d recorded candidate(s) have no readable checkpoint (their records "
            "stand; the format sweep skips them; retrain them in a new workdir):\n  %s",
            len(problems),
            "\n  ".join(problems),
        )
    return problems


def _explicit_candidates(config: Any) -> list[arch_lib.Arch]:
    """The networks of ``config.search.candidates`` ([] when sampling)."""
    items = tuple(config.search.get("candidates", ()))
    if not items:
        return []
    table = None
    if config.search.netconfigs:
        table = replay.load_table(config.search.netconfigs, "search.netconfigs")
    triples = sampling.parse_candidates(items, table)
    archs = sampling.build_candidates(triples)
    first: dict[str, str] = {}
    for (space, law, index), a in zip(triples, archs, strict=True):
        name = f"{space}:{law}:{index}"
        if a.hash in first:  # the same network under another index
            logging.info("%s is the network of %s: trained once", name, first[a.hash])
        first.setdefault(a.hash, name)
    return archs


def _sample(config, pairs, round_index, known) -> list[arch_lib.Arch]:
    boxes = None
    if config.search.mode == "narrow" and round_index > 0:
        prior = [r for r in known if r["round"] < round_index]
        boxes = sampling.narrowed_box(
            prior, config.narrow.top_fraction, config.narrow.margin
        )
    return sampling.sample_round(
        pairs,
        config.search.candidates_per_round,
        seed=config.seed,
        round_index=round_index,
        boxes=boxes,
        max_tries=config.narrow.max_tries,
    )


def _filter(
    limits: constraints.Constraints,
    archs: Sequence[arch_lib.Arch],
    all_costs: Sequence[dict[str, Any]],
    known: dict[str, dict[str, Any]],
    round_index: int,
) -> list[Candidate]:
    """Candidates within the constraints, new to this search, each once."""
    seen, keep = set(), []
    for a, c in zip(archs, all_costs, strict=True):
        if a.hash in seen or not constraints.satisfies(limits, a, c):
            continue
        if a.hash in known and known[a.hash]["round"] != round_index:
            continue  # found in an earlier round
        seen.add(a.hash)
        keep.append((a, c))
    return keep


def _plan(
    config: Any,
    archs: list[arch_lib.Arch],
    processes: int | None = None,
    memory_budget: int | None = None,
):
    """The round's buckets; with several processes, costly ones split.

    `config.distributed.balance` = k > 0 splits every bucket whose estimated
    cost (`_bucket_cost`) exceeds the round's total over (processes x k) into
    that many smaller buckets (each re-planned from its members), so that no
    single bucket decides when a pod's round ends. It depends on the
    process count (`processes`, default JAX's); 0 (the default) leaves
    the plan as one process makes it.
    """
    kwargs = dict(
        max_waste=config.train.max_waste,
        # The IR's estimate of each bucket's step memory is kept under this,
        # so a bucket too big for the device is split, not run.
        memory_budget=memory_budget
        or config.train.device_memory_bytes
        or engine.device_memory_budget(),
        batch_size=config.train.batch_size,
    )
    plan = population.plan(archs, max_size=config.train.max_bucket or None, **kwargs)
    dist = config.get("distributed")
    balance = dist.get("balance", 0) if dist is not None else 0
    nproc = processes or distributed.process_count()
    if not balance or nproc == 1:
        return plan
    bound = sum(_bucket_cost(config, b) for b, _ in plan) / (nproc * balance)

    def split(bucket, indices):
        c = _bucket_cost(config, bucket)
        if c <= bound or bucket.size == 1:
            return [(bucket, indices)]
        # Smaller parts until each fits (a part holding the costliest
        # members can still exceed the bound: split it again).
        size = min(bucket.size - 1, math.ceil(bucket.size / math.ceil(c / bound)))
        parts = population.plan([archs[i] for i in indices], max_size=size, **kwargs)
        return [
            piece
            for part, sub in parts
            for piece in split(part, [indices[j] for j in sub])
        ]

    return [piece for bucket, indices in plan for piece in split(bucket, indices)]


def _bucket_cost(config: Any, bucket: population.Bucket) -> float:
    """Estimated seconds of a bucket on a CPU core, to order the work queue.

    A fixed part (compiling the step and evaluation programs: ~20 s per
    bucket on the quickstart) plus its padded training MACs (forward and
    backward, ~3x the forward's) at ~8 GMAC/s (the quickstart's ResNeXt
    bucket). Only the ratios matter.
    """
    steps = config.train.steps * config.train.batch_size
    return 20.0 + 3 * bucket.padded_macs() * steps / 8e9


def _seed_of(arch_hash: str, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{arch_hash}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _snapshot_id(bucket, bucket_seed: int) -> str:
    """Names a bucket's training snapshot: its members and its data seed (the
    workdir's config.json fixes everything else)."""
    text = json.dumps([bucket_seed, [a.hash for a in bucket.members]])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _train(
    config, bucket, recipe, datasets, bucket_seed, mesh, label, workdir, snapshot_id
):
    """Trains one bucket; returns its trainer and each member's "train" field.

    Logs its progress (`progress.BucketProgress`) under `label` and appends
    its training curves to the workdir (`_CurveWriter`). Every
    ``train.snapshot_every_s`` seconds (at a metrics fetch) the whole training
    state goes to ``snapshots/<snapshot_id>.npz``; a bucket that has one
    resumes from it, bit-identically, and its "seconds" add both sittings.
    """
    cfg = config.train
    strategy, impl = engine.choose_plan(
        bucket,
        recipe,
        choice=cfg.strategy,
        conv_impl=cfg.conv_impl,
        batch_size=cfg.batch_size,
        input_shape=tuple(bucket.padded.input_shape),
    )
    seeds = [_seed_of(a.hash, config.seed) for a in bucket.members]
    start, start_step, before = time.perf_counter(), 0, 0.0
    trainer = engine.BucketTrainer(
        bucket,
        recipe,
        keys=[jax.random.key(s) for s in seeds],
        lrs=[cfg.lr] * bucket.size,
        strategy=strategy,
        conv_impl=impl,
        mesh=mesh,
    )
    data = results.load_snapshot(workdir, snapshot_id)
    if data is not None:
        try:
            meta = trainer.restore(data)
            start_step, before = int(meta["step"]), float(meta["seconds"])
            logging.info(
                "%s: resumed from its snapshot at step %d of %d",
                label,
                start_step,
                cfg.steps,
            )
        except ValueError as e:  # another plan (e.g. autotune chose otherwise)
            logging.warning("%s: snapshot not used (%s); from step 0", label, e)
    every = cfg.get("snapshot_every_s", 0)
    last_saved = [time.perf_counter()]

    def snapshot(step: int) -> None:
        now = time.perf_counter()
        if every and now - last_saved[0] >= every:
            meta = {"step": step, "seconds": before + now - start}
            results.save_snapshot(workdir, snapshot_id, trainer.snapshot(meta))
            last_saved[0] = now

    history = engine.train_bucket(
        trainer,
        datasets["train"],
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        data_key=jax.random.key(bucket_seed),
        log_every=cfg.log_every,
        augment=cfg.augment,
        keep_last=cfg.get("last_batch", "drop") == "keep",
        on_log=_Watchers(
            progress_lib.BucketProgress(label, bucket.size, cfg.steps, cfg.batch_size),
            _CurveWriter(workdir, bucket, recipe, cfg.lr),
        ),
        start_step=start_step,
        on_snapshot=snapshot,
    )
    seconds = before + time.perf_counter() - start
    diverged = trainer.diverged()
    info = []
    for i in range(bucket.size):
        loss = float(history[-1]["loss"][i]) if history else math.nan
        info.append(
            {
                "steps": cfg.steps,
                "lr": cfg.lr,
                "seed": seeds[i],
                "final_loss": loss if math.isfinite(loss) else None,
                "final_train_accuracy": float(history[-1]["accuracy"][i]),
                "diverged": bool(diverged[i]),
                "seconds": seconds / bucket.size,
                "strategy": strategy,
                "conv_impl": impl,
                "bucket_size": bucket.size,
            }
        )
    return trainer, info


def _check_round_recorded(workdir: Path, round_index: int, archs) -> None:
    # The round's queue (`distributed.take`) ended when every bucket was
    # done, by whichever process; the records must be where all can see them.
    recorded = {r["hash"] for r in results.load(workdir)}
    missing = [a.hash for a in archs if a.hash not in recorded]
    if missing:
        raise RuntimeError(
            f"process {distributed.process_index()}: round {round_index}'s candidates "
            f"{', '.join(missing[:4])} are not in {workdir}'s result shards "
            "after every process finished the round; a multi-process search "
            "needs a workdir every host shares"
        )
