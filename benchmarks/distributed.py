"""Population step time on a device mesh vs one device, measured in one run.

    python benchmarks/distributed.py [--devices 8] [--candidates 8] [--steps 5]
        [--batch 32] [--space resnext:s3] [--strategy map] [--conv-impl im2col]

Sets `--xla_force_host_platform_device_count` (unless XLA_FLAGS is already
set) before JAX starts, so on a CPU host the mesh is made of fake devices.
One bucket of `--candidates` candidates is trained with the same strategy and
lowering on meshes of 1 (the plain single-device path), 2, 4, ... devices
along the "candidates" axis, plus one ("candidates", "data") mesh; a
population that does not divide the axis is padded (the padded count is
printed). Prints the median step time after compilation, candidate-images/s
and the speed-up ratio against 1 device.

Fake CPU devices share the host's cores: on a 2-core machine 8 of them cannot
run faster than one (the ratio measures the sharding overhead, not scaling).
On a multi-GPU host or a TPU slice run it without the flag override.
"""

import argparse
import os
import statistics
import sys
import time


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--space", default="resnext:s3")
    p.add_argument("--strategy", default="map", choices=("map", "vmap"))
    p.add_argument("--conv-impl", default="im2col", choices=("im2col", "xla"))
    return p.parse_args()


def main():
    args = _parse()
    if "XLA_FLAGS" not in os.environ:  # must precede the first jax import
        os.environ["XLA_FLAGS"] = (
            f"--xla_force_host_platform_device_count={args.devices}"
        )
    import jax
    import numpy as np

    from jnas import population, spaces
    from jnas.population import engine, sharding
    from jnas.population import step as train

    space, law = args.space.split(":")
    archs = [spaces.sample(space, law, i) for i in range(args.candidates)]
    bucket = population.make_bucket(archs)
    recipe = engine.Recipe(
        tx=train.make_optimizer(), schedule=train.make_schedule("cosine", 100)
    )
    keys = list(jax.random.split(jax.random.key(0), bucket.size))
    rng = np.random.default_rng(0)
    shape = (args.batch, *bucket.padded.input_shape)
    images_np = rng.normal(size=shape).astype(np.float32)
    labels_np = rng.integers(0, 10, args.batch).astype(np.int32)

    n = jax.local_device_count()
    meshes = [(1, 1)]
    k = 2
    while k <= n:
        meshes.append((k, 1))
        k *= 2
    if n >= 4:
        meshes.append((n // 2, 2))
    print(
        f"backend={jax.default_backend()} local devices={n} "
        f"host cores={os.cpu_count()} bucket={bucket.size} x {args.space} "
        f"strategy={args.strategy}/{args.conv_impl} batch={args.batch}"
    )
    base = None
    for cand, data in meshes:
        mesh = None if cand * data == 1 else sharding.make_mesh(cand, data)
        if mesh is None:
            images, labels = jax.device_put((images_np, labels_np))
            padded = bucket.size
        else:
            images, labels = jax.device_put(
                (images_np, labels_np), sharding.replicated(mesh)
            )
            padded = sharding.padded_size(bucket.size, mesh)
        trainer = engine.BucketTrainer(
            bucket,
            recipe,
            keys=keys,
            lrs=[0.01] * bucket.size,
            strategy=args.strategy,
            conv_impl=args.conv_impl,
            mesh=mesh,
        )
        start = time.perf_counter()
        jax.block_until_ready(trainer.step(images, labels))
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            jax.block_until_ready(trainer.step(images, labels))
            times.append(time.perf_counter() - start)
        step = statistics.median(times)
        base = base or step
        rate = bucket.size * args.batch / step
        print(
            f"mesh candidates={cand} data={data}: padded to {padded}, "
            f"step {step * 1e3:8.1f} ms, {rate:8.0f} candidate-images/s, "
            f"ratio vs 1 device {base / step:5.2f}x (compile {compile_s:.1f} s)"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
