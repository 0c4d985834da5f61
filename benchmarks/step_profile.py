"""Where one bucket's training step spends its time, per XLA operation.

    python benchmarks/step_profile.py --space resnext --law s3 --indices 258840581
    taskset -c 0 python benchmarks/step_profile.py --space pnasnet --law s3 \
        --indices 1259902465          # as a pinned local worker runs it

Builds the bucket of the given (space, law, index) candidates, compiles its
step (strategy and lowering from `engine.choose_plan`, or forced), times it
(best of 3 windows of 10 steps, after a warm-up), then records 5 steps with
`jax.profiler` and prints the operations that took the most time per step:
each fused XLA kernel by name (numbers stripped: "concatenate.3" counts as
"concatenate") and the biggest single kernels. The HLO of a kernel is in
XLA's dump (`XLA_FLAGS=--xla_dump_to=DIR`, `*after_optimizations.txt`).
Used to find what the CPU step loses time on (docs/results.md, issue 14).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", required=True)
    parser.add_argument("--law", required=True)
    parser.add_argument(
        "--indices", required=True, help="comma-separated sample indices (one bucket)"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--strategy", default="rule", help="rule | vmap | map")
    parser.add_argument("--conv-impl", default="auto", help="auto | im2col | xla")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    from jnas import population, spaces
    from jnas.population import engine
    from jnas.population import step as train

    archs = [
        spaces.sample(args.space, args.law, int(i)) for i in args.indices.split(",")
    ]
    if len({population.bucket_key(a) for a in archs}) != 1:
        raise SystemExit(f"--indices {args.indices} do not share one bucket key")
    bucket = population.make_bucket(archs)
    recipe = engine.Recipe(
        tx=train.make_optimizer(), schedule=train.make_schedule("cosine", 300)
    )
    strategy, impl = engine.choose_plan(
        bucket,
        recipe,
        choice=args.strategy,
        conv_impl=args.conv_impl,
        batch_size=args.batch,
        input_shape=tuple(bucket.padded.input_shape),
    )
    trainer = engine.BucketTrainer(
        bucket,
        recipe,
        keys=[jax.random.key(i) for i in range(bucket.size)],
        lrs=[0.05] * bucket.size,
        strategy=strategy,
        conv_impl=impl,
    )
    x = jax.random.normal(jax.random.key(0), (args.batch, *bucket.padded.input_shape))
    y = jnp.zeros((args.batch,), jnp.int32)
    t0 = time.perf_counter()
    jax.block_until_ready(trainer.step(x, y))
    compile_s = time.perf_counter() - t0
    for _ in range(3):
        jax.block_until_ready(trainer.step(x, y))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(10):
            metrics = trainer.step(x, y)
        jax.block_until_ready(metrics)
        best = min(best, (time.perf_counter() - t0) / 10)
    print(
        f"{args.space} {args.law} x{bucket.size} ({strategy}/{impl}), batch "
        f"{args.batch}: first step (compile) {compile_s:.1f} s, step {best * 1e3:.1f} ms"
    )

    steps = 5
    with tempfile.TemporaryDirectory() as out:
        with jax.profiler.trace(out, create_perfetto_trace=True):
            for _ in range(steps):
                metrics = trainer.step(x, y)
            jax.block_until_ready(metrics)
        (path,) = glob.glob(f"{out}/**/*.trace.json.gz", recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    by_kind, by_op = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        # Host-side frames ($...) and the executor's wrappers are not ops.
        if e.get("ph") != "X" or name.startswith(("$", "ThunkExecutor", "Pjit")):
            continue
        by_op[name] += e.get("dur", 0)
        by_kind[name.split(".")[0]] += e.get("dur", 0)
    total = sum(by_kind.values())
    print(f"XLA operations: {total / steps / 1e3:.1f} ms per step")
    print("by kind (ms/step, share):")
    for name, us in by_kind.most_common(args.top):
        print(f"  {us / steps / 1e3:8.2f}  {100 * us / total:5.1f}%  {name}")
    print("largest single operations (ms/step):")
    for name, us in by_op.most_common(args.top):
        print(f"  {us / steps / 1e3:8.2f}  {name}")


if __name__ == "__main__":
    main()
