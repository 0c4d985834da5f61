"""Several processes on JAX's runtime: local workers, start, work queue, barriers.

On a CPU-only host, `local_workers` / `run_local_workers` split one search
into one pinned worker process per core (the launcher runs them). `initialize`
starts `jax.distributed` from the config, the usual JAX environment variables
(`JAX_COORDINATOR_ADDRESS`, ...) or the cluster's (TPU pods, SLURM, Open MPI:
JAX detects them). The processes take buckets from a shared queue (`take`:
longest estimated cost first, the next bucket to whichever process is free;
the queue is a counter in JAX's coordination service), train them on their
own devices and append their records to their own shard of the workdir
(`jnas.results.shard_name`); all processes meet at the end of each round
(`barrier`, JAX's `sync_global_devices`), and process 0 then merges the
shards (`jnas.results.merge_shards`). A restarted job starts a fresh queue
and retrains exactly the unfinished candidates; finished ones are found in
any shard and kept.

The workdir must be on a filesystem every process sees. The devices of one
process are `jnas.population.sharding`'s; this module writes no files.
Launch commands for GPU hosts, SLURM and TPU pods: docs/scale-out.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pkgutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import jax
from absl import logging

INIT_MODES = ("auto", "always", "never")
# How the bucket queue is ordered (`queue_order`).
QUEUE_ORDERS = ("longest_first", "shortest_first")
# "auto" local workers on a CPU-only host: one per core, at most this many.
MAX_AUTO_WORKERS = 8
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


def longest_first(costs: Sequence[float]) -> list[int]:
    """Indices in decreasing cost (ties: lower index first): the queue order.

    Handing the longest jobs out first keeps the last one to finish short
    (the LPT rule), whichever process takes them.
    """
    return sorted(range(len(costs)), key=lambda i: (-costs[i], i))


def queue_order(costs: Sequence[float], rule: str = "longest_first") -> list[int]:
    """The queue's order under `rule` (one of `QUEUE_ORDERS`).

    "longest_first" (the default, `longest_first`) gives the shortest run;
    "shortest_first" gives finished candidates soonest, for a long run done
    in sittings (e.g. a reproduction whose results are kept between them),
    at the price of a longer tail.
    """
    if rule not in QUEUE_ORDERS:
        raise ValueError(
            f"config.distributed.queue_order={rule!r} is not one of "
            f"{', '.join(map(repr, QUEUE_ORDERS))}"
        )
    if rule == "shortest_first":
        return sorted(range(len(costs)), key=lambda i: (costs[i], i))
    return longest_first(costs)


def take(order: Sequence[int], name: str, *, client: Any = None) -> Iterator[int]:
    """Yields the items of `order` that this process takes, as it gets free.

    A work queue over every process: each item goes to exactly one process,
    the next one to whichever asks first. A process asks when the consumer of
    this generator wants the next item (after finishing the previous one), so
    the processes stay busy until the queue is empty, however wrong the cost
    estimates behind `order` are. The queue's position is a counter in JAX's
    coordination service (`key_value_increment`), which only lives as long as
    the job: a restarted job starts a fresh queue (its finished items are
    skipped by the caller). With one process every item is yielded in order.

    Args:
      order: the items, in the order to hand them out (`longest_first`).
      name: the queue's name, unique per job and queue (e.g. per round).
      client: the coordination client (default: `jax.distributed`'s).

    Yields:
      Items of `order`, in order.
    """
    if client is None:
        if jax.process_count() == 1:
            yield from order
            return
        client = _coordination_client()
    key = f"jnas/queue/{name}"
    while (position := client.key_value_increment(key, 1) - 1) < len(order):
        yield order[position]


def _coordination_client() -> Any:
    # JAX has no public handle on the coordination service's key-value store;
    # orbax's multi-host utilities use this one too.
    from jax._src import distributed as jax_distributed

    client = jax_distributed.global_state.client
    if client is None:
        raise RuntimeError(
            f"{jax.process_count()} processes but no jax.distributed client: "
            "start the job with jnas.distributed.initialize"
        )
    return client


def barrier(name: str) -> None:
    """Waits until every process reaches `name` (no-op for one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


# ------------------------------------------------------------- local workers


def local_workers(config: Any) -> int:
    """How many worker processes a search starts on this host (1: itself).

    `config.local_workers` (the `config.distributed` group): a count, or 0 for
    "auto": one per core this process may run on (at most
    MAX_AUTO_WORKERS) when JAX has only the CPU here, else 1. On a CPU, one
    worker pinned to each core, each training its own buckets, beats
    one process whose programs spread over every core: small networks'
    operations are too short to parallelise well (docs/population.md has the
    measurements). A process that is already one of several (a coordinator
    address, several processes configured, or a cluster environment) is
    never split further.
    """
    n = config.get("local_workers", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(
            f"config.distributed.local_workers={n!r} must be an int >= 0 "
            "(0: one worker per core on a CPU-only host)"
        )
    several = (
        bool(config.coordinator_address)
        or config.num_processes > 1
        or any(os.environ.get(k) for k in _CLUSTER_ENV)
        or config.initialize == "always"
    )
    if several:
        return 1
    if n:
        return n
    if not _cpu_only():
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS))


def _cpu_only() -> bool:
    """Whether JAX will only find the CPU here, without starting a backend.

    (Starting one to ask would hold an accelerator the workers then need.)
    """
    platforms = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms or ""
    if platforms:
        return {p.strip() for p in platforms.split(",")} == {"cpu"}
    try:
        import jax_plugins  # GPU plugins (jax-cuda*, jax-rocm*) live here

        if any(True for _ in pkgutil.iter_modules(jax_plugins.__path__)):
            return False
    except ImportError:
        pass
    return importlib.util.find_spec("libtpu") is None


def run_local_workers(module: str, argv: Sequence[str], n: int) -> int:
    """Runs `python -m module *argv` as `n` processes of one search; waits.

    Each worker is process i of n under `jax.distributed` (a coordinator on
    127.0.0.1), pinned to its own core where there are enough (XLA's flags
    stay as they are: `--xla_cpu_multi_thread_eigen=false` made a pinned
    worker's steps 10% and its compiles ~50% slower). Their log lines are
    prefixed with "[worker i]". If one fails, the others are stopped (they would wait
    for it at the next barrier). Ctrl-C stops them all; what they recorded
    stays in the workdir and a rerun resumes.

    Returns:
      0 if every worker succeeded, else the first failing exit code.
    """
    port = _free_port()
    cores = sorted(os.sched_getaffinity(0))
    env = dict(os.environ)
    procs, pumps = [], []
    for i in range(n):
        cmd = [
            sys.executable,
            "-m",
            module,
            *argv,
            f"--config.distributed.coordinator_address=127.0.0.1:{port}",
            f"--config.distributed.num_processes={n}",
            f"--config.distributed.process_id={i}",
            "--config.distributed.local_workers=1",
        ]
        pin = {cores[i]} if n <= len(cores) else None
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=(lambda c=pin: os.sched_setaffinity(0, c)) if pin else None,
        )
        procs.append(proc)
        pump = threading.Thread(target=_pump, args=(proc, f"[worker {i}] "))
        pump.start()
        pumps.append(pump)
    logging.info("started %d local workers, one per core", n)
    try:
        code = _wait_all(procs)
    except KeyboardInterrupt:
        _stop(procs, signal.SIGINT)
        raise
    finally:
        for pump in pumps:
            pump.join()
    return code


def _wait_all(procs: list[subprocess.Popen]) -> int:
    pending = list(procs)
    while pending:
        for proc in list(pending):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
            if proc.returncode is None:
                continue
            pending.remove(proc)
            if proc.returncode != 0:
                _stop(pending, signal.SIGTERM)
                return proc.returncode
    return 0


def _stop(procs: list[subprocess.Popen], sig: int) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pump(proc: subprocess.Popen, prefix: str) -> None:
    for line in proc.stdout:
        sys.stderr.write(prefix + line)
    proc.stdout.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
