"""Candidates over a mesh of devices: `NamedSharding` and `shard_map`.

`make_mesh` builds a `jax.sharding.Mesh` over the process's local devices with
a "candidates" axis and an optional "data" axis
(`config.distributed.mesh_candidates`, `mesh_data`). A bucket's stacked
`TrainState` (parameters, optimiser state, per-candidate RNG keys, masks,
learning rates) is padded to a multiple of the candidates axis with copies of
candidate 0 (`pad_candidates`; the copies are dropped from every result) and
placed with `NamedSharding(mesh, P("candidates"))`. The step is the engine's
per-shard program (vmap or lax.map over the local candidates) inside
`jax.shard_map`, manual over "candidates" only: the candidates are
independent, so the compiled step has no collective. The data batch is
replicated; with a "data" axis of size > 1 it is sharded over that axis and
XLA's partitioner (the axis is left automatic) adds the gradient and
BatchNorm reductions of data parallelism.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

CANDIDATES = "candidates"
DATA = "data"


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
        # numpy leaves stay on the host: no program compiled per leaf shape
        xp = np if isinstance(leaf, np.ndarray) else jax.numpy
        copies = xp.repeat(leaf[:1], extra, axis=0)
        return xp.concatenate([leaf, copies], axis=0)

    return jax.tree.map(pad, tree)


def shard_population(tree: Any, mesh: Mesh) -> Any:
    """Pads a stacked population and places it along "candidates".

    Give it the host (numpy) inputs a population is made from, not device
    arrays: padding and placing device arrays compiled a repeat, a
    concatenate and a split program per distinct leaf shape (~150 small
    programs, ~7 s, per bucket of ResNeXt s3 on 8 CPU devices); numpy arrays
    are padded on the host and sent to each device its slice.
    """
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
