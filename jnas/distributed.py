"""Scale-out on JAX's own runtime: meshes, shardings, processes.

The same search runs on one CPU, one GPU, eight devices or many hosts.

Devices of one process. `make_mesh` builds a `jax.sharding.Mesh` over the
process's local devices with a "candidates" axis and an optional "data" axis
(`config.distributed.mesh_candidates`, `mesh_data`). A bucket's stacked
`train.TrainState` (parameters, optimiser state, per-candidate RNG keys, masks,
learning rates) is padded to a multiple of the candidates axis with copies of
candidate 0 (`pad_candidates`; the copies are dropped from every result) and
placed with `NamedSharding(mesh, P("candidates"))`. The step is the engine's
per-shard program (vmap or lax.map over the local candidates) inside
`jax.shard_map`, manual over "candidates" only: the candidates are
independent, so the compiled step has no collective. The data batch is
replicated; with a "data" axis of size > 1 it is sharded over that axis and
XLA's partitioner (the axis is left automatic) adds the gradient and
BatchNorm reductions of data parallelism.

Processes (hosts). `initialize` starts `jax.distributed` from the config, the
usual JAX environment variables (`JAX_COORDINATOR_ADDRESS`, ...) or the
cluster's (TPU pods, SLURM, Open MPI: JAX detects them). Each process trains
the buckets it owns (`owner`: bucket b of a round goes to process
b % process_count) on its own devices, appends its records to its own shard
(`results.<process>.jsonl`, `shard_name`), and all processes meet at the end
of each round (`barrier`, JAX's `sync_global_devices`). Process 0 then merges
the shards (`merge_results`) and writes summaries and figures. Ownership is a
function of the config only, so a restarted job retrains exactly the
unfinished candidates; finished ones are found in any shard and kept.

The workdir must be on a filesystem every process sees (records and
checkpoints are files). With several processes each checkpoint is a flax
msgpack file written by the process that trained it
(`save_local_checkpoint`); orbax's savers assume every process takes part.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jnas import results

CANDIDATES = "candidates"
DATA = "data"
INIT_MODES = ("auto", "always", "never")
LOCAL_CHECKPOINT = "variables.msgpack"  # a multi-process run's checkpoints
# Environment variables that mean "this process is one of several".
_CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS",)


def initialize(config: Any) -> bool:
    """Starts JAX's multi-controller runtime when the config asks for it.

    Call it before anything touches a device. `config.initialize`:
    "never" (one process), "always" (`jax.distributed.initialize` with the
    configured values; unset ones are detected by JAX on TPU pods, SLURM,
    Open MPI, Kubernetes) or "auto" (like "always" when a coordinator address
    or several processes are configured or `JAX_COORDINATOR_ADDRESS` is set,
    else "never").

    Args:
      config: the `config.distributed` group (`experiments/quickstart.py`).

    Returns:
      Whether `jax.distributed.initialize` was called.
    """
    mode = config.initialize
    if mode not in INIT_MODES:
        raise ValueError(
            f"config.distributed.initialize={mode!r} is not one of "
            f"{', '.join(map(repr, INIT_MODES))}"
        )
    wanted = mode == "always" or (
        mode == "auto"
        and (
            bool(config.coordinator_address)
            or config.num_processes > 1
            or any(os.environ.get(k) for k in _CLUSTER_ENV)
        )
    )
    if not wanted:
        return False
    if jax.distributed.is_initialized():
        return True
    jax.distributed.initialize(
        coordinator_address=config.coordinator_address or None,
        num_processes=config.num_processes or None,
        process_id=None if config.process_id < 0 else config.process_id,
    )
    logging.info(
        "jax.distributed: process %d of %d, %d local devices, %d in all",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def make_mesh(
    candidates: int = -1, data: int = 1, devices: list[jax.Device] | None = None
) -> Mesh:
    """A ("candidates", "data") mesh over this process's devices.

    Args:
      candidates: devices along the candidates axis (-1: all that `data`
        leaves).
      data: devices along the data axis (the batch is split over it).
      devices: the devices (default: `jax.local_devices()`).

    Raises:
      ValueError: the axis sizes do not fit the device count (with numbers).
    """
    devices = list(jax.local_devices() if devices is None else devices)
    n = len(devices)
    if data < 1 or n % data:
        raise ValueError(
            f"config.distributed.mesh_data={data} must be >= 1 and divide the "
            f"{n} local devices"
        )
    if candidates == -1:
        candidates = n // data
    if candidates < 1 or candidates * data > n:
        raise ValueError(
            f"config.distributed.mesh_candidates={candidates} x mesh_data={data} "
            f"needs {candidates * data} devices; this process has {n}"
        )
    grid = np.array(devices[: candidates * data]).reshape(candidates, data)
    return Mesh(grid, (CANDIDATES, DATA))


def mesh_from_config(config: Any) -> Mesh | None:
    """The mesh of `config.distributed`, or None when it has a single device.

    None keeps the plain single-device path (no sharding at all).
    """
    mesh = make_mesh(config.mesh_candidates, config.mesh_data)
    if mesh.size == 1:
        return None
    logging.info(
        "mesh: candidates=%d data=%d over %d local devices (%s)",
        mesh.shape[CANDIDATES],
        mesh.shape[DATA],
        jax.local_device_count(),
        jax.default_backend(),
    )
    return mesh


def candidate_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (candidate) axis split over "candidates", rest replicated."""
    return NamedSharding(mesh, P(CANDIDATES))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device of the mesh holds the whole array (the data sets)."""
    return NamedSharding(mesh, P())


def padded_size(size: int, mesh: Mesh) -> int:
    """`size` rounded up to a multiple of the candidates axis."""
    k = mesh.shape[CANDIDATES]
    return -(-size // k) * k


def pad_candidates(tree: Any, size: int) -> Any:
    """Appends copies of candidate 0 until the leading axis has `size` entries.

    The copies train like candidate 0 and are dropped from every result.
    """

    def pad(leaf):
        extra = size - leaf.shape[0]
        if extra < 0:
            raise ValueError(f"cannot pad {leaf.shape[0]} candidates to {size}")
        if extra == 0:
            return leaf
        copies = jax.numpy.repeat(leaf[:1], extra, axis=0)
        return jax.numpy.concatenate([leaf, copies], axis=0)

    return jax.tree.map(pad, tree)


def shard_population(tree: Any, mesh: Mesh) -> Any:
    """Pads a stacked population and places it along "candidates"."""
    n = jax.tree.leaves(tree)[0].shape[0]
    tree = pad_candidates(tree, padded_size(n, mesh))
    return jax.device_put(tree, candidate_sharding(mesh))


def _local_program(fn: Callable, mesh: Mesh, batch_args: int) -> Callable:
    """`fn(states, *batch)` per shard of candidates; batch over "data"."""
    mapped = jax.shard_map(
        fn,
        mesh=mesh,
        in_specs=(P(CANDIDATES), *([P()] * batch_args)),
        out_specs=P(CANDIDATES),
        axis_names={CANDIDATES},  # "data" stays automatic (XLA partitions it)
    )
    split = NamedSharding(mesh, P(DATA))

    def run(states, *batch):
        if mesh.shape[DATA] > 1:
            batch = [jax.lax.with_sharding_constraint(b, split) for b in batch]
        return mapped(states, *batch)

    return run


class ShardedStep:
    """A bucket's step over a mesh: jit(shard_map(step)), states donated.

    Attributes:
      traces: traces of the wrapped per-shard step (the compile counter).
    """

    def __init__(self, step: Callable, mesh: Mesh):
        self._step = step
        self._jitted = jax.jit(_local_program(step, mesh, 2), donate_argnums=0)

    @property
    def traces(self) -> int:
        return self._step.traces

    def __call__(self, states, images, labels):
        return self._jitted(states, images, labels)


@functools.lru_cache(maxsize=64)
def shard_step(step: Callable, mesh: Mesh) -> ShardedStep:
    """`step(states, images, labels)` run per shard of candidates (cached)."""
    return ShardedStep(step, mesh)


@functools.lru_cache(maxsize=64)
def shard_eval(fn: Callable, mesh: Mesh) -> Callable:
    """`fn(states, images, labels, mask)` run per shard of candidates (cached)."""
    return jax.jit(_local_program(fn, mesh, 3))


# ------------------------------------------------------------------ processes


def owner(bucket_index: int, num_processes: int) -> int:
    """The process that trains bucket `bucket_index` of a round."""
    return bucket_index % num_processes


def shard_name(process_index: int, process_count: int) -> str:
    """The results file a process appends to ("results.jsonl" if alone)."""
    if process_count == 1:
        return results.RESULTS
    return f"results.{process_index}.jsonl"


def barrier(name: str) -> None:
    """Waits until every process reaches `name` (no-op for one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def save_local_checkpoint(path: Path, variables: Any) -> Path:
    """Writes `path/variables.msgpack` (flax msgpack), atomically.

    The checkpoint of a multi-process run: orbax writes numpy arrays from
    process 0 only and refuses host-local arrays with several processes,
    while here each process saves the candidates it trained.
    `jnas.search.load_checkpoint` reads both formats.
    """
    from flax import serialization

    path.mkdir(parents=True, exist_ok=True)
    data = serialization.msgpack_serialize(jax.tree.map(np.asarray, variables))
    results.atomic_write(path / LOCAL_CHECKPOINT, data)
    return path


def load_local_checkpoint(path: Path) -> Any:
    """Reads back `save_local_checkpoint`'s variables (numpy arrays)."""
    from flax import serialization

    return serialization.msgpack_restore((Path(path) / LOCAL_CHECKPOINT).read_bytes())


def merge_results(workdir: str | Path, records: list[dict[str, Any]]) -> Path:
    """Process 0: writes the merged records as ``results.jsonl`` (atomically).

    Records are ordered by (round, bucket), as one process would write them.
    The per-process shards stay; `jnas.results.load` deduplicates by hash.
    """
    path = Path(workdir) / results.RESULTS
    order = sorted(
        range(len(records)),
        key=lambda i: (records[i]["round"], records[i]["bucket"], i),
    )
    results.atomic_write(path, "".join(results.to_line(records[i]) for i in order))
    return path
