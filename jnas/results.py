"""The workdir: every file a search or a format sweep keeps is written and read here.

A search's workdir holds:

- ``config.json``: the resolved config (written once; a rerun with a different
  config is refused, so a resumed search cannot silently mix two setups);
- ``results.jsonl``: one record per finished candidate, appended and flushed
  to disk (``os.fsync``) as soon as the candidate is done, so a kill loses at
  most the candidates still training. With several processes each appends to
  its own shard ``results.<process>.jsonl`` and process 0 merges them
  (``merge_shards``);
- ``checkpoints/<hash>/``: the trained variables, an orbax checkpoint (one
  process, local disk) or ``variables.msgpack`` (a multi-process run, where
  each process saves the candidates it trained, or an object-store workdir);
- ``snapshots/<id>.npz``: the whole training state of a bucket in flight,
  replaced every ``train.snapshot_every_s`` seconds and deleted once the
  bucket's records are stored; a killed search resumes the bucket from it,
  bit-identically (``engine.BucketTrainer.snapshot``);
- ``formats.jsonl``: rows of the post-training format sweep;
- ``curves.jsonl``: training curves, one row per candidate every
  ``train.log_every`` steps ({"hash", "step", "loss", "train_accuracy",
  "lr"}); a process of several appends to ``curves.<process>.jsonl``.
  A retrained (killed) bucket writes its rows again; readers keep the first
  row of each (hash, step), equal by determinism;
- ``figures/``: rebuilt from the records by ``jnas.report``.

The workdir is a local folder or an object-store prefix (``gs://bucket/run``:
TPU pods share no POSIX filesystem). Every file goes through the two
primitives of ``jnas.storage``, which keep files whole across kills on both:
``atomic_write`` (a whole file) and ``append_lines`` (JSON lines; a torn last
line is cut before appending, so a file never holds a bad line in the middle);
``iter_records`` skips a torn last line.

``pandas.read_json(path, lines=True)`` reads ``results.jsonl``. Record fields
(all JSON types; missing values are null):

=================  ==========================================================
hash               ``Arch.hash`` of the candidate (unique per store)
space, law, index  where it was sampled (``spaces.sample(space, law, index)``)
arch               the architecture's JSON (``Arch.to_json``)
round              search round (0 for plain random sampling)
params, flops,     counts from ``jnas.cost``
macs
memory_bytes       {format name: bytes of the params in that format}, with
                   keys "float32", "half" and "custom" (the per-model format)
latency_ms         {"predicted": ms or null, "measured": ms or null}
accuracy           {format name: {"val": acc, "test": acc}} for "float32",
                   "half" and "custom"
custom_format      the per-model format, e.g. "e4m5" (``FloatFormat`` text)
format_grid        [{"format", "bits", "val"}] the format search's evaluations;
                   "val" is null for a format screened out early, which has
                   "val_at_most" (an upper bound) and "val_examples" instead
train              {"steps", "lr", "seed", "final_loss", "diverged", "seconds",
                   "strategy", "conv_impl", "bucket_size"}
bucket, feasible   the bucket index in its round; whether every constraint holds
=================  ==========================================================
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jnas import storage

RESULTS = "results.jsonl"
CONFIG = "config.json"
FORMATS = "formats.jsonl"
CURVES = "curves.jsonl"
CHECKPOINTS = "checkpoints"
LOCAL_CHECKPOINT = "variables.msgpack"  # a multi-process run's checkpoints
SNAPSHOTS = "snapshots"


class ConfigMismatchError(ValueError):
    """The workdir was made by a different config."""


# ------------------------------------------------------------------- config


def write_config(
    workdir: str | Path, config: Mapping[str, Any], *, adopt: bool = False
) -> None:
    """Writes ``config.json`` once; refuses a different config on rerun.

    Results are tied to the config that made them: a workdir that holds
    results (records, format rows or checkpoints) but no ``config.json`` is
    refused too, unless ``adopt`` (the user declares that those results were
    made by this config).

    Args:
      workdir: the search's folder (created if missing).
      config: the resolved config as plain JSON types.
      adopt: write this config into a workdir whose config.json is missing.

    Raises:
      ConfigMismatchError: the workdir holds a different config (the message
        names the differing keys by their full path, e.g. ``train.lr``, with
        both values), or results without a config.
    """
    workdir = storage.path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / CONFIG
    text = json.dumps(config, indent=2, sort_keys=True)
    if path.exists():
        old = json.loads(path.read_text())
        new = json.loads(text)
        if old != new:
            diffs = differing_keys(old, new)
            shown = "; ".join(
                f"{k}: {_at(old, k)!r} in {CONFIG}, {_at(new, k)!r} now"
                for k in diffs[:6]
            )
            more = f" (and {len(diffs) - 6} more)" if len(diffs) > 6 else ""
            raise ConfigMismatchError(
                f"{path} was written by a different config: {shown}{more}; use a "
                "new --workdir, or the same config"
            )
        return
    found = results_without_config(workdir)
    if found and not adopt:
        raise ConfigMismatchError(
            f"{workdir} holds results ({', '.join(found)}) but no {CONFIG}, so "
            "nothing says which config made them; use a new --workdir, or pass "
            "--adopt_records to declare that this config made them"
        )
    storage.atomic_write(path, text + "\n")


_MISSING = "<missing>"


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted paths ("train.lr") of the leaves where two nested configs differ."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += [f"{key}.{k}" for k in differing_keys(a, b)]
        elif a != b:
            out.append(str(key))
    return out


def _at(config: Mapping[str, Any], dotted: str) -> Any:
    value: Any = config
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


def results_without_config(workdir: str | Path) -> list[str]:
    """The result files and folders of a workdir (to tie them to a config)."""
    workdir = storage.path(workdir)
    shards = workdir.glob("results*.jsonl")
    found = sorted(p.name for p in shards if storage.nonempty(p))
    if storage.nonempty(workdir / FORMATS):
        found.append(FORMATS)
    checkpoints = workdir / CHECKPOINTS
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        found.append(f"{CHECKPOINTS}/")
    return found


def read_config(workdir: str | Path) -> dict[str, Any]:
    """Returns the workdir's ``config.json``."""
    path = storage.path(workdir) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a jnas workdir?")
    return json.loads(path.read_text())


# ------------------------------------------------------------------ records


def model_name(record: Mapping[str, Any]) -> str:
    """ "space law #index" of a record (how reports and warnings name it)."""
    return f"{record.get('space')} {record.get('law')} #{record.get('index')}"


class Store:
    """Append-only results of one workdir (or one process's shard of it).

    Attributes:
      path: the JSON-lines file.
      done: hash -> record of the candidates already finished.
    """

    def __init__(self, workdir: str | Path, name: str = RESULTS):
        self.path = storage.path(workdir) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict[str, Any]] = {}
        for record in storage.iter_records(self.path, require=("hash",)):
            self.done.setdefault(record["hash"], record)

    def __contains__(self, arch_hash: str) -> bool:
        return arch_hash in self.done

    def __len__(self) -> int:
        return len(self.done)

    def records(self) -> list[dict[str, Any]]:
        """The finished records, in the order they were written."""
        return list(self.done.values())

    def append(self, record: Mapping[str, Any]) -> None:
        """Writes one finished candidate to disk (flushed and fsynced).

        Raises:
          ValueError: the record has no "hash", or that hash is already stored.
        """
        arch_hash = record.get("hash")
        if not arch_hash:
            raise ValueError("a result record needs a 'hash'")
        if arch_hash in self.done:
            raise ValueError(f"candidate {arch_hash} is already in {self.path}")
        storage.append_line(self.path, record)
        self.done[arch_hash] = dict(record)


def load(workdir: str | Path) -> list[dict[str, Any]]:
    """All finished records of a workdir, merging per-process shards.

    Reads ``results.jsonl`` and any ``results.*.jsonl`` shards (multi-host
    runs); a candidate recorded twice keeps its first record.
    """
    return list(_merged_shards(workdir, RESULTS, ("hash",)).values())


def shard_name(process_index: int, process_count: int, name: str = RESULTS) -> str:
    """The file a process appends to: `name` if alone, else ``<stem>.<process>.jsonl``.

    `name` is ``RESULTS`` (records) or ``CURVES`` (training curves).
    """
    if process_count == 1:
        return name
    return f"{name.removesuffix('.jsonl')}.{process_index}.jsonl"


def _merged_shards(
    workdir: str | Path, name: str, key: tuple[str, ...]
) -> dict[tuple, dict[str, Any]]:
    """The rows of `name` and its per-process shards, the first one per `key`."""
    workdir = storage.path(workdir)
    stem = name.removesuffix(".jsonl")
    seen: dict[tuple, dict[str, Any]] = {}
    for path in [workdir / name, *sorted(workdir.glob(f"{stem}.*.jsonl"))]:
        for row in storage.iter_records(path, require=key):
            seen.setdefault(tuple(row[k] for k in key), row)
    return seen


def merge_shards(workdir: str | Path, records: list[dict[str, Any]]) -> Path:
    """Process 0: writes the merged records as ``results.jsonl`` (atomically).

    Records are ordered by (round, bucket), as one process would write them.
    The per-process shards stay; `load` deduplicates by hash.
    """
    path = storage.path(workdir) / RESULTS
    order = sorted(
        range(len(records)),
        key=lambda i: (records[i]["round"], records[i]["bucket"], i),
    )
    storage.atomic_write(path, "".join(storage.to_line(records[i]) for i in order))
    return path


def format_rows(workdir: str | Path) -> list[dict[str, Any]]:
    """The rows of the post-training format sweep (``formats.jsonl``)."""
    return list(storage.iter_records(storage.path(workdir) / FORMATS))


def append_format_rows(workdir: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Appends format-sweep rows ({"hash", "format", "bits", split: acc})."""
    storage.append_lines(storage.path(workdir) / FORMATS, rows)


def append_curves(
    workdir: str | Path, name: str, rows: Iterable[Mapping[str, Any]]
) -> None:
    """Appends training-curve rows ({"hash", "step", ...}) to `name`."""
    storage.append_lines(storage.path(workdir) / name, rows)


def load_curves(workdir: str | Path) -> list[dict[str, Any]]:
    """Every training-curve row of a workdir (all shards), one per (hash, step)."""
    rows = _merged_shards(workdir, CURVES, ("hash", "step"))
    return [rows[k] for k in sorted(rows)]


# -------------------------------------------------------------- checkpoints


def checkpoint_path(workdir: str | Path, arch_hash: str) -> storage.AnyPath:
    """Where a candidate's checkpoint lives (absolute if local, as orbax wants)."""
    path = storage.path(workdir) / CHECKPOINTS / arch_hash
    return path.absolute() if isinstance(path, Path) else path


def _quiet_orbax() -> None:
    """Drops orbax's INFO lines (about 25 per checkpoint) from absl's log."""
    from absl import logging

    def keep(record) -> bool:
        return record.levelno >= 30 or "orbax" not in record.pathname

    absl_logger = logging.get_absl_logger()
    if not any(getattr(f, "jnas_orbax", False) for f in absl_logger.filters):
        keep.jnas_orbax = True
        absl_logger.addFilter(keep)


def save_checkpoint(workdir: str | Path, arch_hash: str, variables: Any) -> Path:
    """Writes a candidate's trained variables; a killed write's leftover is replaced.

    A process with a one-process JAX view on a local disk (a lone one, or one
    of a CPU-only job: `jnas.distributed.initialize`): an orbax checkpoint.
    Several processes under ``jax.distributed`` or an object-store workdir:
    ``variables.msgpack``
    (flax msgpack, written by `storage.atomic_write`: one upload on an object store,
    so it is there whole or not at all) by the process that trained it, since
    orbax writes numpy arrays from process 0 only and refuses host-local
    arrays with several processes.
    """
    import jax
    import numpy as np

    path = checkpoint_path(workdir, arch_hash)
    remote = not isinstance(path, Path)
    if path.exists():
        path.rmtree() if remote else shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    host = jax.tree.map(np.asarray, variables)
    if jax.process_count() > 1 or remote:
        from flax import serialization

        path.mkdir(exist_ok=True)  # a no-op on an object store
        storage.atomic_write(
            path / LOCAL_CHECKPOINT, serialization.msgpack_serialize(host)
        )
        return path
    import orbax.checkpoint as ocp  # slow import: only when saving

    _quiet_orbax()
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, host)
        ckptr.wait_until_finished()
    return path


class CheckpointError(ValueError):
    """A candidate's checkpoint is missing or unreadable (the message says which)."""


def load_checkpoint(workdir: str | Path, arch_hash: str) -> Any:
    """Reads back a candidate's variables written by `save_checkpoint`.

    Raises:
      CheckpointError: the checkpoint is missing or cannot be read (naming the
        candidate, the path and the reader's error).
    """
    path = checkpoint_path(workdir, arch_hash)
    if not path.exists():
        raise CheckpointError(f"candidate {arch_hash}: no checkpoint at {path}")
    try:
        if (path / LOCAL_CHECKPOINT).exists():  # a multi-process run's
            from flax import serialization

            return serialization.msgpack_restore((path / LOCAL_CHECKPOINT).read_bytes())
        import orbax.checkpoint as ocp

        _quiet_orbax()
        # By default orbax meets every process of a jax.distributed job in
        # each restore, so one process reading alone (process 0's startup
        # check of a workdir a one-process run began) would wait for the
        # others' next restore, i.e. forever: read as the only active process.
        import jax

        options = ocp.options.MultiprocessingOptions(
            primary_host=jax.process_index(), active_processes={jax.process_index()}
        )
        with ocp.StandardCheckpointer(multiprocessing_options=options) as ckptr:
            return ckptr.restore(path)
    except Exception as e:  # noqa: BLE001 - any reader failure means unreadable
        raise CheckpointError(
            f"candidate {arch_hash}: the checkpoint at {path} is unreadable "
            f"({type(e).__name__}: {e})"
        ) from None


def checkpoint_problem(workdir: str | Path, arch_hash: str) -> str | None:
    """Why a candidate's checkpoint cannot be restored, or None if it can.

    Restores it (these networks are small: a fraction of a second each).
    """
    try:
        load_checkpoint(workdir, arch_hash)
    except CheckpointError as e:
        return str(e)
    return None


# ---------------------------------------------------------------- snapshots


def snapshot_path(workdir: str | Path, snapshot_id: str) -> storage.AnyPath:
    """Where the in-flight snapshot of a bucket's training lives."""
    return storage.path(workdir) / SNAPSHOTS / f"{snapshot_id}.npz"


def save_snapshot(workdir: str | Path, snapshot_id: str, data: bytes) -> None:
    """Writes (replaces) a bucket's training snapshot, whole (`atomic_write`)."""
    path = snapshot_path(workdir, snapshot_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.atomic_write(path, data)


def load_snapshot(workdir: str | Path, snapshot_id: str) -> bytes | None:
    """A bucket's training snapshot, or None if it has none."""
    path = snapshot_path(workdir, snapshot_id)
    return path.read_bytes() if path.exists() else None


def drop_snapshot(workdir: str | Path, snapshot_id: str) -> None:
    """Deletes a bucket's snapshot once its records are stored."""
    _unlink_if_there(snapshot_path(workdir, snapshot_id))


def drop_all_snapshots(workdir: str | Path) -> int:
    """Deletes every snapshot left in a finished search's workdir; returns how many.

    A process killed after a bucket's records were stored but before its
    snapshot was dropped leaves that snapshot behind, and the rerun skips the
    bucket (nothing to train). Once every bucket of every round is recorded,
    no snapshot can be resumed from, so all that remain are such leftovers.
    """
    folder = storage.path(workdir) / SNAPSHOTS
    if not folder.exists():
        return 0
    stale = [p for p in folder.iterdir() if p.name.endswith(".npz")]
    for p in stale:
        _unlink_if_there(p)
    return len(stale)


def _unlink_if_there(path: storage.AnyPath) -> None:
    # Another process may delete the same file between a check and the
    # unlink (process 0 clears leftovers as the last taker drops its own).
    try:
        path.unlink()
    except FileNotFoundError:
        pass
