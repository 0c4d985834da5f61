"""Several processes (hosts) on JAX's runtime: start, ownership, barriers.

`initialize` starts `jax.distributed` from the config, the usual JAX
environment variables (`JAX_COORDINATOR_ADDRESS`, ...) or the cluster's (TPU
pods, SLURM, Open MPI: JAX detects them). Each process trains the buckets it
owns (`owner`: bucket b of a round goes to process b % process_count) on its
own devices and appends its records to its own shard of the workdir
(`jnas.results.shard_name`); all processes meet at the end of each round
(`barrier`, JAX's `sync_global_devices`), and process 0 then merges the shards
(`jnas.results.merge_shards`). Ownership is a function of the config only, so
a restarted job retrains exactly the unfinished candidates; finished ones are
found in any shard and kept.

The workdir must be on a filesystem every process sees. The devices of one
process are `jnas.population.sharding`'s; this module writes no files.
Launch commands for GPU hosts, SLURM and TPU pods: docs/scale-out.md.
"""

from __future__ import annotations

import os
from typing import Any

import jax
from absl import logging

INIT_MODES = ("auto", "always", "never")
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


def owner(bucket_index: int, num_processes: int) -> int:
    """The process that trains bucket `bucket_index` of a round."""
    return bucket_index % num_processes


def barrier(name: str) -> None:
    """Waits until every process reaches `name` (no-op for one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
