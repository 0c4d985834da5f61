"""Aggregate training throughput of the population engine vs the sequential loop.

    python benchmarks/population.py [--sizes 8,32,128] [--spaces mobilenetv2:s5,resnext:s3]
        [--steps 3] [--batch 128] [--max-waste 1.0] [--sequential-sample 8]
        [--choose rule|autotune] [--cache DIR]

For each space and population size: sample the candidates, plan buckets
(`population.plan`), choose (strategy, conv lowering) per bucket by
`engine.default_plan` (the documented rule, default) or `engine.autotune`, and
time training steps of every bucket after compilation. The baseline, measured in the same
run, is the sequential per-candidate loop (each candidate's own jitted step on
its own unpadded architecture). Compiling one program per candidate is
expensive, so the baseline times a seeded sample of `--sequential-sample`
candidates and scales their mean step time to the population (printed as such).

Prints candidate-images/s for both, their ratio, the padding waste, the chosen
strategy per bucket, and the achieved useful FLOP/s (3 x 2 x MACs per image:
forward, and backward at twice the forward) against a dense float32 matmul's
FLOP/s measured in the same run. Timings exclude compilation (reported apart).
"""

import argparse
import statistics
import time

import jax
import numpy as np

from jnas import cost, population, spaces
from jnas.population import engine
from jnas.population import step as train


def _time_steps(trainer, images, labels, steps):
    jax.block_until_ready(trainer.step(images, labels))  # compile (or warm)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(trainer.step(images, labels))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops(n=1024, repeats=20):
    """Dense float32 matmul FLOP/s of this device (jitted n x n @ n x n)."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(a))
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def run(space, law, size, args, recipe, images, labels):
    archs = [spaces.sample(space, law, i) for i in range(size)]
    train_flops = [6 * cost.macs(a) * args.batch for a in archs]
    plan = population.plan(archs, max_waste=args.max_waste, batch_size=args.batch)
    t_pop, compile_pop, strategies, waste = 0.0, 0.0, [], []
    for bucket, _ in plan:
        keys = list(jax.random.split(jax.random.key(1), bucket.size))
        start = time.perf_counter()
        if args.choose == "autotune" and bucket.size > 1:
            (strategy, impl), _ = engine.autotune(
                bucket, recipe, batch_size=args.batch, input_shape=(32, 32, 3)
            )
        else:
            strategy, impl = engine.default_plan(bucket)
        trainer = engine.BucketTrainer(
            bucket,
            recipe,
            keys=keys,
            lrs=[0.05] * bucket.size,
            strategy=strategy,
            conv_impl=impl,
        )
        jax.block_until_ready(trainer.step(images, labels))
        compile_pop += time.perf_counter() - start
        t_pop += _time_steps(trainer, images, labels, args.steps)
        del trainer
        engine.clear_caches()  # ~100 live programs exhaust the mmap limit
        strategies.append(f"{bucket.size}:{strategy}/{impl}")
        waste.append(bucket.waste())
    # Sequential baseline on a seeded sample, scaled to the population.
    rng = np.random.default_rng(0)
    sample = rng.choice(size, min(size, args.sequential_sample), replace=False)
    t_seq_each, compile_seq = [], 0.0
    for i in sample:
        bucket = population.make_bucket([archs[i]])
        start = time.perf_counter()
        trainer = engine.BucketTrainer(
            bucket,
            recipe,
            keys=[jax.random.key(1)],
            lrs=[0.05],
            strategy="sequential",
            conv_impl=args.baseline_impl,
        )
        jax.block_until_ready(trainer.step(images, labels))
        compile_seq += time.perf_counter() - start
        t_seq_each.append(_time_steps(trainer, images, labels, args.steps))
    # Scale by FLOPs share so the sample's size mix does not bias the estimate.
    sample_flops = sum(train_flops[i] for i in sample)
    t_seq = sum(t_seq_each) * sum(train_flops) / sample_flops
    useful = sum(train_flops)
    padded_total = sum(b.padded_macs() for b, _ in plan)
    useful_macs = sum(b.useful_macs() for b, _ in plan)
    return {
        "buckets": len(plan),
        "strategies": strategies,
        "waste": padded_total / useful_macs - 1,
        "pop_img_s": size * args.batch / t_pop,
        "seq_img_s": size * args.batch / t_seq,
        "ratio": t_seq / t_pop,
        "pop_flops": useful / t_pop,
        "seq_flops": useful / t_seq,
        "compile_pop": compile_pop,
        "compile_seq_each": compile_seq / len(sample),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,32,128")
    parser.add_argument("--spaces", default="mobilenetv2:s5,resnext:s3")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--max-waste", type=float, default=1.0)
    parser.add_argument("--sequential-sample", type=int, default=8)
    parser.add_argument("--choose", choices=("rule", "autotune"), default="rule")
    parser.add_argument(
        "--baseline-impl",
        choices=engine.CONV_IMPLS,
        default="xla",
        help="conv lowering of the sequential baseline (xla: what users write)",
    )
    parser.add_argument("--cache", default=None, help="persistent compile cache")
    args = parser.parse_args(argv)
    engine.enable_compilation_cache(args.cache)

    recipe = engine.Recipe(
        tx=train.make_optimizer(), schedule=train.make_schedule("cosine", 1000)
    )
    key = jax.random.key(0)
    images = jax.random.normal(key, (args.batch, 32, 32, 3))
    labels = jax.random.randint(key, (args.batch,), 0, 10)
    peak = matmul_flops()
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}: dense float32 "
        f"matmul {peak / 1e9:.1f} GFLOP/s; batch {args.batch}, "
        f"choice {args.choose}, baseline lowering {args.baseline_impl}, "
        f"median of {args.steps} steps after compilation"
    )
    for spec in args.spaces.split(","):
        space, law = spec.split(":")
        for size in map(int, args.sizes.split(",")):
            r = run(space, law, size, args, recipe, images, labels)
            print(
                f"{space} {law} N={size}: {r['buckets']} buckets, waste "
                f"{r['waste']:.2f}; population {r['pop_img_s']:.0f} cand-img/s "
                f"({r['pop_flops'] / 1e9:.1f} GFLOP/s = "
                f"{r['pop_flops'] / peak:.0%} of matmul), sequential "
                f"{r['seq_img_s']:.0f} cand-img/s ({r['seq_flops'] / 1e9:.1f} GFLOP/s, "
                f"est. from {min(size, args.sequential_sample)}): ratio "
                f"{r['ratio']:.2f}x; compile {r['compile_pop']:.0f} s for the "
                f"population vs {r['compile_seq_each']:.1f} s per candidate"
            )
            print(f"  buckets (size:strategy): {' '.join(r['strategies'])}")
            engine.clear_caches()


if __name__ == "__main__":
    main()
