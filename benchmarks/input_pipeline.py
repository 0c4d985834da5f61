"""Cost of the on-device input pipeline against one training step, in one run.

    python benchmarks/input_pipeline.py [--batch-size 128] [--steps 50]

Measures, on the default JAX device and in the same process:
  pipeline: batches/s of the jitted `jnas.data.pipeline.next_batch` (gather by index,
      random crop with 4-pixel padding, horizontal flip, normalisation, and the
      on-device epoch reshuffle) at the given batch size;
  step: time of one training step of a small CNN (flax: 3x3 convs with 16, 32
      and 64 channels, average pooling, a dense classifier; forward, backward
      and an optax SGD-with-momentum update) on a batch already on the device;
  fused: the same step with `next_batch` inside its jit, the way training uses
      the pipeline; fused - step is the pipeline's real marginal cost.
The data are a synthetic uint8 array of CIFAR-10's training shape
(50,000 x 32 x 32 x 3): the pipeline's cost does not depend on pixel values.
Each timing is the median of 5 runs of `--steps` iterations, each run blocked
once at its end (asynchronous dispatch as in a training loop); the runs of the
three measurements are interleaved so that load changes hit them alike.
Target (issue 4): pipeline time / step time < 10%. Exits non-zero if missed.
"""

import argparse
import functools
import platform
import statistics
import sys
import time
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnas.data import pipeline


class SmallCNN(nn.Module):
    """Three 3x3 conv layers (16/32/64 channels) and a linear classifier."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        for features in (16, 32, 64):
            x = nn.relu(nn.Conv(features, (3, 3))(x))
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


def _median_times(runs: dict, steps: int, repeats: int = 5) -> dict:
    """Median seconds per iteration of each `run(steps)` (which blocks at its end).

    The runs are interleaved (a, b, c, a, b, c, ...) so that a change in the
    machine's load during the benchmark affects all of them alike.
    """
    for run in runs.values():
        run(steps)  # compile and warm up
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run(steps)
            times[name].append((time.perf_counter() - t0) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--num-examples", type=int, default=50_000)
    args = parser.parse_args(argv)
    bs = args.batch_size

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.num_examples, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.num_examples).astype(np.int32)
    meta = types.SimpleNamespace(mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    ds = pipeline.put_on_device(images, labels, meta)

    # -- pipeline alone --
    next_fn = jax.jit(pipeline.next_batch, static_argnames=("batch_size", "augment"))
    state = pipeline.init_loader(jax.random.key(0), args.num_examples)

    def run_pipeline(steps):
        nonlocal state
        for _ in range(steps):
            state, x, y = next_fn(ds, state, batch_size=bs, augment=True)
        jax.block_until_ready((x, y))

    # -- training step alone, and with the pipeline fused in --
    model = SmallCNN()
    tx = optax.sgd(0.05, momentum=0.9)
    params = model.init(jax.random.key(1), jnp.zeros((1, 32, 32, 3)))
    opt_state = tx.init(params)

    def loss_fn(params, x, y):
        logits = model.apply(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def update(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step_fn = jax.jit(update, donate_argnums=(0, 1))

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def fused_fn(params, opt_state, loader, ds):
        loader, x, y = pipeline.next_batch(ds, loader, batch_size=bs)
        return *update(params, opt_state, x, y), loader

    _, x0, y0 = next_fn(ds, state, batch_size=bs, augment=True)
    carry = [params, opt_state]

    def run_step(steps):
        for _ in range(steps):
            carry[0], carry[1], loss = step_fn(carry[0], carry[1], x0, y0)
        jax.block_until_ready(loss)

    # Its own copy of the parameters: step_fn donates (deletes) those in `carry`.
    fused_params = model.init(jax.random.key(1), jnp.zeros((1, 32, 32, 3)))
    fused = [fused_params, tx.init(fused_params), state]

    def run_fused(steps):
        for _ in range(steps):
            fused[0], fused[1], loss, fused[2] = fused_fn(*fused, ds)
        jax.block_until_ready(loss)

    times = _median_times(
        {"pipe": run_pipeline, "step": run_step, "fused": run_fused}, args.steps
    )
    t_pipe, t_step, t_fused = times["pipe"], times["step"], times["fused"]

    ratio = t_pipe / t_step
    device = jax.devices()[0]
    print(
        f"device: {device.platform} {device.device_kind}; jax {jax.__version__}; "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        "data: synthetic uint8 50,000 x 32 x 32 x 3"
        if args.num_examples == 50_000
        else f"data: synthetic uint8 {args.num_examples} x 32 x 32 x 3"
    )
    print(f"batch size {bs}, {args.steps} iterations x 5 runs (median)")
    print(
        f"pipeline (gather+crop+flip+normalise+shuffle): {t_pipe * 1e3:8.3f} ms/batch"
        f"  = {1 / t_pipe:9.0f} batches/s"
    )
    print(
        f"train step (small CNN fwd+bwd+SGD):           {t_step * 1e3:8.3f} ms/step"
        f"  = {1 / t_step:9.0f} steps/s"
    )
    print(
        f"train step with the pipeline fused in:        {t_fused * 1e3:8.3f} ms/step"
        f"  (marginal pipeline cost {(t_fused - t_step) * 1e3:+.3f} ms)"
    )
    verdict = "OK" if ratio < 0.10 else "MISSED"
    print(f"pipeline / step = {ratio:.1%} (target < 10%): {verdict}")
    return 0 if ratio < 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
