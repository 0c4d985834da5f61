"""Several processes on JAX's runtime: start, work queue, heartbeats, barriers.

`initialize` joins the job from the config, the usual JAX environment variables
(`JAX_COORDINATOR_ADDRESS`, ...) or the cluster's (TPU pods, SLURM, Open MPI:
JAX detects them). On accelerators it starts `jax.distributed`; on a CPU-only
host the processes share JAX's coordination service alone and each keeps a
one-process XLA backend (`initialize` says why), so use `process_index` /
`process_count` here, not JAX's. The processes take buckets from a shared queue
(`take`: longest estimated cost first, the next bucket to whichever process is
free; the queue is a counter in JAX's coordination service), train them on
their own devices and append their records to their own shard of the workdir
(`jnas.results.shard_name`); all processes meet at the end of each round's
queue (`WorkQueue`), and process 0 then merges the shards
(`jnas.results.merge_shards`). A restarted job starts a fresh queue and
retrains exactly the unfinished candidates; finished ones are found in any
shard and kept.

The workdir must be on a filesystem every process sees. The devices of one
process are `jnas.population.sharding`'s; this module writes no files. Launch
commands for GPU hosts, SLURM and TPU pods: docs/scale-out.md.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pkgutil
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
from absl import logging

INIT_MODES = ("auto", "always", "never")
# Seconds without a heartbeat after which a process counts as dead, where no
# config says (config.distributed.heartbeat_timeout_s, `lease_seconds`).
DEFAULT_LEASE_S = 100.0
# Seconds between a process's heartbeats (`_start_heartbeat`).
HEARTBEAT_S = 1.0
# How the bucket queue is ordered (`queue_order`).
QUEUE_ORDERS = ("longest_first", "shortest_first")
# Environment variables that mean "this process is one of several".
CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS",)


def initialize(config: Any) -> bool:
    """Joins this process to its job when the config asks for it.

    Call it before anything touches a device. `config.initialize`:
    "never" (one process), "always" (join with the configured values; unset
    ones are detected by JAX on TPU pods, SLURM, Open MPI, Kubernetes) or
    "auto" (like "always" when a coordinator address or several processes
    are configured or `JAX_COORDINATOR_ADDRESS` is set, else "never").

    How it joins depends on the devices. With accelerators,
    `jax.distributed.initialize` (a TPU slice or a multi-host GPU job needs
    JAX's global view of the devices). On a CPU-only host (`cpu_only`), only
    JAX's coordination service and its client are started, the same ones
    `jax.distributed` starts, and XLA's CPU backend stays a one-process one:
    no program of a search spans processes, and under `jax.distributed` JAX
    keys every CPU program's cache entry by its global device ids and writes
    entries from process 0 only, so every other process compiled each of its
    programs anew, run after run (the README's local workers included).

    Args:
      config: the `config.distributed` group (`jnas/search/defaults.py`).

    Returns:
      Whether this process joined a job of several processes.
    """
    global _JOB
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
            or any(os.environ.get(k) for k in CLUSTER_ENV)
        )
    )
    if not wanted:
        return False
    if _JOB is not None or jax.distributed.is_initialized():
        return True
    # A process that dies must not end the others: its unfinished bucket
    # goes to a live one (`take`). Nothing in a search spans processes but
    # the coordination service (each trains on its own devices).
    jax.config.update("jax_enable_recoverability", True)
    from jax._src import distributed as jax_distributed

    options = dict(
        coordinator_address=config.coordinator_address or None,
        num_processes=config.num_processes or None,
        process_id=None if config.process_id < 0 else config.process_id,
        # The service's own timeout is the queue's lease (`WorkQueue`).
        heartbeat_timeout_seconds=int(lease_seconds(config)),
    )
    if cpu_only():
        # JAX's own State, not its global one, which the CPU backend reads.
        state = jax_distributed.State()
        state.initialize(**options)
        _JOB = _Job(state, owned=True)
    else:
        jax.distributed.initialize(**options)
        _JOB = _Job(jax_distributed.global_state, owned=False)
    _start_heartbeat(coordination_client(), process_index())
    logging.info(
        "%s: process %d of %d, %d local devices",
        "coordination service" if _JOB.owned else "jax.distributed",
        process_index(),
        process_count(),
        jax.local_device_count(),
    )
    return True


@dataclasses.dataclass
class _Job:
    """The job `initialize` joined: JAX's distributed `State` (its client is
    the coordination service's), and whether jnas made it (CPU-only) or it is
    JAX's global one (`jax.distributed`)."""

    state: Any
    owned: bool


_JOB: _Job | None = None


def process_index() -> int:
    """This process's index in its job (0 for a lone process)."""
    return _JOB.state.process_id if _JOB is not None else jax.process_index()


def process_count() -> int:
    """How many processes the job has (1 for a lone process)."""
    return _JOB.state.num_processes if _JOB is not None else jax.process_count()


def cpu_only() -> bool:
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


def lease_seconds(config: Any) -> float:
    """The heartbeat lease of a `config.distributed` group (None: the default).

    Seconds without a heartbeat after which a process counts as dead: JAX's
    coordination service's timeout (`initialize`) and the lease of
    `WorkQueue`, `take` and `finish`, which take it as an argument.
    """
    if config is None:
        return DEFAULT_LEASE_S
    return float(config.get("heartbeat_timeout_s", DEFAULT_LEASE_S))


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


def take(
    order: Sequence[int],
    name: str,
    *,
    client: Any = None,
    poll_s: float = 1.0,
    lease_s: float = DEFAULT_LEASE_S,
) -> Iterator[int]:
    """Iterates a `WorkQueue` over `order`: the items this process takes."""
    return iter(WorkQueue(order, name, client=client, poll_s=poll_s, lease_s=lease_s))


class WorkQueue:
    """A work queue over every process; iterate it for this process's items.

    Each item goes to exactly one live process, the next one to whichever
    asks first. A process asks when it wants the next item, i.e. after
    finishing the previous one, so the processes stay busy until the queue is
    empty however wrong the cost estimates behind `order` are; nobody waits
    for anybody until the queue is empty. When it is, iteration ends only
    once every item is done: the end of the queue is the round's one meeting
    point. An item is done when its taker asks for the next one (so the
    records it wrote are on disk).

    Everything lives in JAX's coordination service (the distributed
    runtime's key-value store that `jax.distributed` starts), under
    ``jnas/queue/<name>/``: a counter hands out positions
    (`key_value_increment`), and an item is owned by whoever creates its
    owner key first (`key_value_set` without overwrite is atomic). Every
    process bumps its counter ``jnas/alive/<process>`` each `HEARTBEAT_S`
    (`initialize` starts that thread); a process whose counter has not moved
    for ``lease_s`` (config ``heartbeat_timeout_s``, also the service's own
    heartbeat timeout) counts as dead. (The service's `get_live_nodes` would
    say it directly, but it is a rendezvous: it waits for every process
    asked about, i.e. for a busy one to finish its bucket.) A dead process's
    unfinished item goes to the next live process that asks for work, before
    the rest of the queue, under the item's next owner key; `taken_over` then says
    so (the taker should look again at what the dead one recorded). Keys
    live as long as the job: a restarted job starts a fresh queue (the
    caller skips finished items).
    With one process every item is yielded in order.

    Args:
      order: the items, in the order to hand them out (`queue_order`).
      name: the queue's name, unique per job and queue (e.g. per round).
      client: the coordination client (default: `jax.distributed`'s): needs
        key_value_increment, key_value_set and key_value_dir_get.
      poll_s: seconds between looks at the others' progress while waiting at
        the end of the queue.
      lease_s: seconds without a heartbeat after which a process is dead:
        `lease_seconds` of the config that `initialize` started the job with.
    """

    def __init__(
        self, order, name, *, client=None, poll_s=1.0, lease_s=DEFAULT_LEASE_S
    ):
        self.order, self.name, self.poll_s = list(order), name, poll_s
        self.client, self.lease_s = client, lease_s
        self.prefix = f"jnas/queue/{name}"
        self.taken_over = False  # the last item came from a dead process

    def __iter__(self) -> Iterator[int]:
        client = self.client
        if client is None:
            if process_count() == 1:
                yield from self.order
                return
            client = self.client = coordination_client()
        self.pid = _process_index(client)
        self.liveness = Liveness(client, self.lease_s)
        counter = f"{self.prefix}/next"
        while True:
            # A dead process's item first: it is late already, and an item
            # left for the end of the queue would decide when the round ends.
            if self.liveness.someone_died():
                item = self._take_orphan(self._survey()[1], owned_only=True)
                if item is not None:
                    yield from self._run(item, taken_over=True)
                    continue
            position = client.key_value_increment(counter, 1) - 1
            if position >= len(self.order):
                break
            item = self.order[position]
            if self._claim(item, 0):  # lost only to a process taking it over
                yield from self._run(item, taken_over=False)
        while True:  # the end of the queue: wait for the others, take orphans
            pending, claimable = self._survey()
            if not pending:
                return
            item = self._take_orphan(claimable, owned_only=False)
            if item is None:
                time.sleep(self.poll_s)
            else:
                yield from self._run(item, taken_over=True)

    def _run(self, item: int, taken_over: bool) -> Iterator[int]:
        if taken_over:
            logging.warning(
                "queue %s: the process holding item %d stopped; process %d "
                "takes it over",
                self.name,
                item,
                self.pid,
            )
        self.taken_over = taken_over
        yield item
        self.taken_over = False
        self._finish(item)

    def _take_orphan(self, claimable, owned_only: bool) -> int | None:
        """Claims one of `_survey`'s claimable items that a dead process held
        (or, unless `owned_only`, one nobody holds: only at the end of the
        queue); None if there is none."""
        for item, generation, owned in claimable:
            if (owned or not owned_only) and self._claim(item, generation):
                return item
        return None

    def _claim(self, item: int, generation: int) -> bool:
        try:
            self.client.key_value_set(
                f"{self.prefix}/owner/{item}/{generation}", str(self.pid)
            )
        except Exception as e:  # noqa: BLE001 - the service's ALREADY_EXISTS
            if "already exists" not in str(e).lower():
                raise
            return False
        return True

    def _finish(self, item: int) -> None:
        self.client.key_value_set(
            f"{self.prefix}/done/{item}", str(self.pid), allow_overwrite=True
        )

    def _survey(self):
        """Items not done, and those this process may claim.

        An item is claimable when its newest owner is not alive, or when it
        has no owner (its taker died between the counter and the claim).
        """
        client = self.client
        done = {_last(k) for k, _ in client.key_value_dir_get(f"{self.prefix}/done/")}
        pending = [i for i in self.order if str(i) not in done]
        if not pending:
            return [], []
        owners: dict[int, tuple[int, int]] = {}  # item: (generation, pid)
        for key, value in client.key_value_dir_get(f"{self.prefix}/owner/"):
            item, generation = (int(x) for x in key.rsplit("/", 2)[-2:])
            if generation >= owners.get(item, (-1, -1))[0]:
                owners[item] = (generation, int(value))
        live = self.liveness.alive()
        claimable = []  # (item, generation to claim, whether it had an owner)
        for item in pending:
            if item not in owners:
                claimable.append((item, 0, False))
            elif owners[item][1] not in live:
                claimable.append((item, owners[item][0] + 1, True))
        return pending, claimable


class Liveness:
    """Which processes are alive, from their heartbeat counters.

    A process is alive while its ``jnas/alive/<process>`` counter keeps
    moving: one that has not moved for `lease_s` seconds of this process's
    clock (so hosts' clocks need not agree) is dead. A process with no
    counter at all is not alive (every process beats from `initialize` on,
    before it can own anything); `stopped` alone gives such a one `lease_s`
    to appear.
    """

    def __init__(self, client: Any, lease_s: float):
        self.client, self.lease_s = client, lease_s
        self.seen: dict[int, tuple[str, float]] = {}  # process: (count, when moved)
        self.since = time.monotonic()

    def alive(self) -> set[int]:
        now = time.monotonic()
        for key, count in self.client.key_value_dir_get(f"{_ALIVE}/"):
            pid = int(_last(key))
            if self.seen.get(pid, (None, 0.0))[0] != count:
                self.seen[pid] = (count, now)
        return {
            pid for pid, (_, moved) in self.seen.items() if now - moved <= self.lease_s
        }

    def someone_died(self) -> bool:
        """Whether a process once seen beating has stopped."""
        return bool(set(self.seen) - self.alive())

    def stopped(self, pids: Sequence[int]) -> bool:
        """Whether every process of `pids` is dead or has said it is done."""
        done = {_last(k) for k, _ in self.client.key_value_dir_get(f"{_EXITED}/")}
        alive = self.alive()
        if time.monotonic() - self.since <= self.lease_s:  # not beating yet?
            alive |= {p for p in pids if p not in self.seen}
        return all(str(p) in done or p not in alive for p in pids)


_ALIVE = "jnas/alive"
_EXITED = "jnas/exited"


def _start_heartbeat(client: Any, pid: int) -> None:
    """Bumps ``jnas/alive/<pid>`` every `HEARTBEAT_S` until the service goes."""

    def beat():
        while True:
            try:
                client.key_value_increment(f"{_ALIVE}/{pid}", 1)
            except Exception:  # noqa: BLE001 - the service shut down: stop
                return
            time.sleep(HEARTBEAT_S)

    threading.Thread(target=beat, name="jnas-heartbeat", daemon=True).start()


def _last(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def _process_index(client: Any) -> int:
    pid = getattr(client, "process_index", None)  # test clients say who they are
    return process_index() if pid is None else pid


def coordination_client() -> Any:
    """The key-value store of JAX's coordination service (this process's client).

    Raises:
      RuntimeError: if several processes run without `initialize`.
    """
    if _JOB is not None:
        return _JOB.state.client
    # A job started by `jax.distributed.initialize` itself. JAX has no public
    # handle on the coordination service's key-value store; orbax's
    # multi-host utilities use this one too.
    from jax._src import distributed as jax_distributed

    client = jax_distributed.global_state.client
    if client is None:
        raise RuntimeError(
            f"{jax.process_count()} processes but no coordination client: "
            "start the job with jnas.distributed.initialize"
        )
    return client


def finish(timeout_s: float = 120.0, *, lease_s: float = DEFAULT_LEASE_S) -> None:
    """Ends this process's part in the job; process 0, which holds the
    coordination service, goes last.

    Processes other than 0 say so (``jnas/exited/<process>``) and disconnect;
    process 0 waits until every other process has said so or is dead (at
    most `timeout_s`; dead: no heartbeat for `lease_s`, `lease_seconds`),
    then shuts the service down (a process still connected when the service
    goes away is ended by JAX with a fatal error). A no-op for one process.
    """
    global _JOB
    if process_count() == 1 or (_JOB is None and not jax.distributed.is_initialized()):
        return
    client, pid = coordination_client(), process_index()
    if pid != 0:
        client.key_value_set(f"{_EXITED}/{pid}", "1", allow_overwrite=True)
    else:
        liveness = Liveness(client, lease_s)
        others = range(1, process_count())
        deadline = time.monotonic() + timeout_s
        while not liveness.stopped(others) and time.monotonic() < deadline:
            time.sleep(0.2)
    if _JOB is not None and _JOB.owned:
        _JOB.state.shutdown()
    else:
        jax.distributed.shutdown()
    _JOB = None


# How long `barrier` waits for the other processes of a CPU-only job.
BARRIER_TIMEOUT_S = 600.0


def barrier(name: str) -> None:
    """Waits until every process reaches `name` (no-op for one process).

    Raises:
      an error from the coordination service if a CPU-only job's processes
      do not all arrive within BARRIER_TIMEOUT_S (they all started together:
      `initialize` waits for each to connect).
    """
    if process_count() == 1:
        return
    if _JOB is not None and _JOB.owned:
        _JOB.state.client.wait_at_barrier(name, int(BARRIER_TIMEOUT_S * 1000))
        return
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)
