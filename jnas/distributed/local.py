"""Local workers: one search split into pinned worker processes on one host.

On a CPU-only host, `local_workers` / `run_local_workers` split one search
into one pinned worker process per core (the launcher runs them): each is one
process of a job (`jnas.distributed.runtime`) whose coordination service is
on 127.0.0.1. This module starts, pins, watches and stops them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from absl import logging

from jnas.distributed.runtime import CLUSTER_ENV, cpu_only

# "auto" local workers on a CPU-only host: one per core, at most this many.
MAX_AUTO_WORKERS = 8
# Seconds the workers have to end after Ctrl-C (SIGINT: a KeyboardInterrupt in
# each) before they are killed.
GRACE_S = 30.0


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
        or any(os.environ.get(k) for k in CLUSTER_ENV)
        or config.initialize == "always"
    )
    if several:
        return 1
    if n:
        return n
    if not cpu_only():
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS))


def run_local_workers(module: str, argv: Sequence[str], n: int) -> int:
    """Runs `python -m module *argv` as `n` processes of one search; waits.

    Each worker is process i of n of one job (`initialize`: its coordination
    service on 127.0.0.1), pinned to its own core where there are enough (XLA's flags
    stay as they are: `--xla_cpu_multi_thread_eigen=false` made a pinned
    worker's steps 10% and its compiles ~50% slower). Their log lines are
    prefixed with "[worker i]". If one fails, the others are killed at once
    (they would wait for it at the next barrier); so are they all when this
    process gets SIGTERM (it then returns 143). Ctrl-C stops them all (killed
    after GRACE_S). What they recorded stays in the workdir and a rerun
    resumes.

    Why SIGKILL and not SIGTERM: before `initialize` a worker has no SIGTERM
    handler, so SIGTERM ends it as abruptly as SIGKILL (no cleanup either
    way); after it, JAX's coordination client takes
    SIGTERM as a preemption notice and the worker runs on, so a SIGTERM
    would only ever add a wait. Every file a worker writes survives a kill
    (`jnas.storage`: atomic writes, torn-tail-safe appends).

    Returns:
      0 if every worker succeeded, else the first failing exit code.
    """
    port = free_port()
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
            preexec_fn=functools.partial(_worker_setup, pin),
        )
        procs.append(proc)
        pump = threading.Thread(target=_pump, args=(proc, f"[worker {i}] "))
        pump.start()
        pumps.append(pump)
    logging.info("started %d local workers, one per core", n)

    def terminated(signum, frame):
        raise _Terminated

    # A `kill`, `scancel` or container stop sends SIGTERM to this process:
    # without a handler it would die at once and leave its workers training,
    # and writing to the workdir, beside the next run.
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        code = wait_all(procs)
    except KeyboardInterrupt:
        _stop(procs, signal.SIGINT)
        raise
    except _Terminated:
        _stop(procs, signal.SIGKILL)  # not SIGTERM: see the docstring
        code = 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
        for pump in pumps:
            pump.join()
    return code


class _Terminated(Exception):
    """SIGTERM reached the process that started the local workers."""


def _worker_setup(cores: set[int] | None) -> None:
    """In a local worker before it starts: pin it, and tie it to its parent.

    With ``PR_SET_PDEATHSIG`` (Linux) the worker gets SIGKILL when the process
    that started it dies for any reason, SIGKILL included, so no orphan goes
    on writing to the workdir (SIGTERM would not do: JAX's coordination
    client takes it as a preemption notice and the worker runs on).
    """
    if cores:
        os.sched_setaffinity(0, cores)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def wait_all(procs: Sequence[subprocess.Popen]) -> int:
    """Waits for every worker; the first to fail gets the others killed.

    Returns:
      0 if every worker exited with 0, else the first nonzero exit code seen.
    """
    pending = list(procs)
    while pending:
        for proc in list(pending):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
            if proc.returncode is None:
                continue
            pending.remove(proc)
            if proc.returncode != 0:
                # SIGKILL at once (`run_local_workers` says why not SIGTERM).
                _stop(pending, signal.SIGKILL)
                return proc.returncode
    return 0


def _stop(
    procs: Sequence[subprocess.Popen], sig: int, grace_s: float = GRACE_S
) -> None:
    """Sends `sig` to the running workers, SIGKILL to any still running
    `grace_s` later (one deadline for all), and reaps them."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pump(proc: subprocess.Popen, prefix: str) -> None:
    for line in proc.stdout:
        sys.stderr.write(prefix + line)
    proc.stdout.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now: a local coordinator's address.

    (Free when asked; a process binding it later may find it taken, as any
    such choice can.)
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
