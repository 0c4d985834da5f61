"""Several processes of one search: JAX's multi-host runtime and local workers.

Modules: `runtime` (`jax.distributed` start, the work queue of buckets across
processes with heartbeats and leases, the end-of-queue meeting, barriers) and
`local` (one pinned worker process per core on a CPU-only host: starting,
watching and stopping them). Design: docs/scale-out.md.
"""

from jnas.distributed.local import (
    MAX_AUTO_WORKERS,
    free_port,
    local_workers,
    run_local_workers,
)
from jnas.distributed.runtime import (
    DEFAULT_LEASE_S,
    HEARTBEAT_S,
    INIT_MODES,
    QUEUE_ORDERS,
    Liveness,
    WorkQueue,
    barrier,
    coordination_client,
    finish,
    initialize,
    lease_seconds,
    longest_first,
    queue_order,
    take,
)

__all__ = [
    "DEFAULT_LEASE_S",
    "HEARTBEAT_S",
    "INIT_MODES",
    "MAX_AUTO_WORKERS",
    "QUEUE_ORDERS",
    "Liveness",
    "WorkQueue",
    "barrier",
    "coordination_client",
    "finish",
    "free_port",
    "initialize",
    "lease_seconds",
    "local_workers",
    "longest_first",
    "queue_order",
    "run_local_workers",
    "take",
]
