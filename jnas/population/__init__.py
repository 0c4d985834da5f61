"""Training many candidates at once.

Modules: `step` (one candidate's pure train and eval steps), `buckets`
(planning, padding and exact masks), `engine` (strategies, convolution
lowerings, the compiled-program cache, the bucket trainer), `sharding`
(candidates over a device mesh). Design and figures: docs/population.md.
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
from jnas.population.engine import (
    BucketTrainer,
    Recipe,
    Screening,
    choose_plan,
    evaluate,
    screen,
    train_bucket,
)

__all__ = [
    "Bucket",
    "BucketTrainer",
    "Layout",
    "Recipe",
    "Screening",
    "bucket_key",
    "choose_plan",
    "embed",
    "evaluate",
    "extract",
    "make_bucket",
    "memory_bytes",
    "plan",
    "screen",
    "train_bucket",
]
