"""Several processes of one search: JAX's multi-host runtime and local workers.

Modules: `runtime` (joining the job, the work queue of buckets across
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
    cpu_only,
    finish,
    initialize,
    lease_seconds,
    longest_first,
    process_count,
    process_index,
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
    "cpu_only",
    "finish",
    "free_port",
    "initialize",
    "lease_seconds",
    "local_workers",
    "longest_first",
    "process_count",
    "process_index",
    "queue_order",
    "run_local_workers",
    "take",
]
