"""Training many candidates at once.

Modules: `step` (one candidate's pure train and eval steps), `buckets`
(planning, padding and exact masks), `engine` (strategies, convolution
lowerings, the compiled-program cache, the bucket trainer).
"""

from jnas.population.buckets import (
    Bucket,
    Layout,
    bucket_key,
    embed,
    extract,
    make_bucket,
    memory_bytes,
    plan,
)

__all__ = [
    "Bucket",
    "Layout",
    "bucket_key",
    "embed",
    "extract",
    "make_bucket",
    "memory_bytes",
    "plan",
]
