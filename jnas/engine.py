"""Training a bucket of candidates at once: strategies, stacking, the loop.

`jnas.train` is written for one candidate and `jnas.population` builds padded
buckets; this module adds the candidate axis:

- "vmap": one batched program (`jax.vmap` over the stacked states; the batch
  is shared, `in_axes=None`).
- "map": `jax.lax.map` over the stacked states inside one program: the
  candidates run one after another, each with an ordinary (unbatched) program
  body, so convolutions keep their single-network lowering.
- "sequential": one jitted step per candidate on its own *unpadded*
  architecture: the baseline, and what "trained alone" means.

The strategy is chosen per bucket by a short measured autotune ("auto") or
forced by config. Every strategy is one jit boundary per step with the states
donated; metrics stay on the device and leave it every `log_every` steps.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnas import nn, pipeline, population, train

STRATEGIES = ("vmap", "map", "sequential")
_next_batch = jax.jit(
    pipeline.next_batch, static_argnames=("batch_size", "augment", "dtype")
)


def stack(trees: Sequence[Any]) -> Any:
    """Stacks pytrees of equal structure along a new leading candidate axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any, index: int) -> Any:
    """Returns candidate `index` of a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Static training settings shared by a bucket (compiled into the step).

    Attributes:
      tx: the optimiser (`train.make_optimizer`).
      schedule: step -> lr multiplier (`train.make_schedule`).
      model_options: keyword arguments of `nn.create_model` (formats, rounding).
    """

    tx: optax.GradientTransformation
    schedule: train.Schedule
    model_options: tuple[tuple[str, Any], ...] = ()

    def model(self, arch) -> nn.Net:
        return nn.create_model(arch, **dict(self.model_options))


class BucketTrainer:
    """Holds a bucket's compiled step and its candidates' states.

    Attributes:
      bucket: the `population.Bucket`.
      strategy: one of STRATEGIES.
      states: stacked `train.TrainState` (vmap/map) or a list of per-candidate
        unpadded states (sequential).
      traces: how many times the step function was traced (compile counter).
    """

    def __init__(
        self,
        bucket: population.Bucket,
        recipe: Recipe,
        *,
        keys: Sequence[jax.Array],
        lrs: Sequence[float],
        strategy: str,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(
                f"strategy={strategy!r} is not one of {', '.join(STRATEGIES)}"
            )
        if len(keys) != bucket.size or len(lrs) != bucket.size:
            raise ValueError(
                f"need one key and one lr per candidate: bucket has {bucket.size}, "
                f"got {len(keys)} keys and {len(lrs)} lrs"
            )
        self.bucket, self.recipe, self.strategy = bucket, recipe, strategy
        self.traces = 0
        states = []
        for i, member in enumerate(bucket.members):
            init_key, state_key = jax.random.split(keys[i])
            variables = nn.init(recipe.model(member), init_key)
            mask = None
            if strategy != "sequential":
                variables, mask = population.embed(bucket, i, variables)
            states.append(
                train.create_state(
                    variables, tx=recipe.tx, lr=lrs[i], key=state_key, grad_mask=mask
                )
            )
        if strategy == "sequential":
            self.states = states
            self._steps = [self._make_single_step(m) for m in bucket.members]
        else:
            self.states = jax.device_put(stack(states))
            self._step = self._make_population_step()

    def _single(self, arch) -> Callable:
        return functools.partial(
            train.train_step,
            model=self.recipe.model(arch),
            tx=self.recipe.tx,
            schedule=self.recipe.schedule,
        )

    def _counted(self, fn: Callable) -> Callable:
        def traced(*args):
            self.traces += 1  # runs only while tracing
            return fn(*args)

        return traced

    def _make_single_step(self, arch) -> Callable:
        return jax.jit(self._counted(self._single(arch)), donate_argnums=0)

    def _make_population_step(self) -> Callable:
        single = self._single(self.bucket.padded)
        if self.strategy == "vmap":
            fn = jax.vmap(single, in_axes=(0, None, None))
        else:

            def fn(states, images, labels):
                return jax.lax.map(lambda s: single(s, images, labels), states)

        return jax.jit(self._counted(fn), donate_argnums=0)

    def step(self, images: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
        """Trains every candidate one step on the shared batch.

        Returns:
          metrics with a leading candidate axis (on the device).
        """
        if self.strategy == "sequential":
            out = [f(s, images, labels) for f, s in zip(self._steps, self.states)]
            self.states = [s for s, _ in out]
            return stack([m for _, m in out])
        self.states, metrics = self._step(self.states, images, labels)
        return metrics

    def variables(self, index: int) -> dict[str, Any]:
        """Candidate `index`'s own (unpadded) {"params", "batch_stats"}."""
        if self.strategy == "sequential":
            s = self.states[index]
            return jax.device_get({"params": s.params, "batch_stats": s.batch_stats})
        s = unstack(self.states, index)
        padded = jax.device_get({"params": s.params, "batch_stats": s.batch_stats})
        return population.extract(self.bucket, index, padded)

    def diverged(self) -> np.ndarray:
        """bool [candidates]: which candidates are frozen after a non-finite loss."""
        if self.strategy == "sequential":
            return np.array([bool(s.diverged) for s in self.states])
        return np.asarray(self.states.diverged)


def train_bucket(
    trainer: BucketTrainer,
    ds: pipeline.DeviceDataset,
    *,
    steps: int,
    batch_size: int,
    data_key: jax.Array,
    log_every: int = 50,
    on_log: Callable[[int, dict[str, np.ndarray]], None] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Runs `steps` training steps on batches drawn on the device.

    Args:
      trainer: the bucket's trainer (its states advance in place).
      ds: training data on the device.
      steps: number of steps.
      batch_size: examples per batch (shared by all candidates).
      data_key: fixes the batch order and augmentation.
      log_every: metrics are fetched from the device every this many steps.
      on_log: called with (step, metrics) at each fetch.

    Returns:
      One dict per fetch: "step", and per-candidate arrays "loss" (mean over the
      window's active steps), "accuracy" (training accuracy over the window).
    """
    loader = pipeline.init_loader(data_key, ds.images.shape[0])
    history, window = [], []
    for step in range(1, steps + 1):
        loader, images, labels = _next_batch(
            ds, loader, batch_size=batch_size, augment=True, dtype=jnp.float32
        )
        window.append(trainer.step(images, labels))
        if step % log_every == 0 or step == steps:
            fetched = jax.device_get(window)  # one transfer per window
            window = []
            active = np.sum([m["active"] for m in fetched], axis=0)
            loss = np.sum([m["loss"] for m in fetched], axis=0) / np.maximum(active, 1)
            correct = np.sum([m["correct"] for m in fetched], axis=0)
            count = np.sum([m["count"] for m in fetched], axis=0)
            record = {"step": step, "loss": loss, "accuracy": correct / count}
            history.append(record)
            if on_log is not None:
                on_log(step, record)
    return history


def evaluate(
    trainer: BucketTrainer, ds: pipeline.DeviceDataset, *, batch_size: int = 500
) -> np.ndarray:
    """Accuracy of every candidate on a whole dataset (running BN statistics)."""
    recipe = trainer.recipe
    if trainer.strategy == "sequential":
        steps = [
            jax.jit(functools.partial(train.eval_step, model=recipe.model(a)))
            for a in trainer.bucket.members
        ]
        correct, count = np.zeros(trainer.bucket.size), 0
        for images, labels, mask in pipeline.eval_batches(ds, batch_size):
            out = [f(s, images, labels, mask) for f, s in zip(steps, trainer.states)]
            correct += np.array([int(o["correct"]) for o in out])
            count += int(out[0]["count"])
        return correct / count
    single = functools.partial(
        train.eval_step, model=recipe.model(trainer.bucket.padded)
    )
    fn = jax.jit(jax.vmap(single, in_axes=(0, None, None, None)))
    totals = None
    for images, labels, mask in pipeline.eval_batches(ds, batch_size):
        out = fn(trainer.states, images, labels, mask)
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = jax.device_get(totals)
    return totals["correct"] / totals["count"]


def autotune(
    bucket: population.Bucket,
    recipe: Recipe,
    *,
    batch_size: int,
    input_shape: tuple[int, int, int],
    candidates: Sequence[str] = ("vmap", "map"),
    steps: int = 3,
) -> tuple[str, dict[str, float]]:
    """Times a few steps of each strategy on random data; returns the fastest.

    Args:
      bucket: the bucket.
      recipe: its training recipe.
      batch_size: the training batch.
      input_shape: (H, W, C) of one example.
      candidates: strategies to try.
      steps: timed steps per strategy (after one compiling step).

    Returns:
      (best strategy, {strategy: seconds per step}).
    """
    key = jax.random.key(0)
    images = jax.random.normal(key, (batch_size, *input_shape))
    labels = jnp.zeros((batch_size,), jnp.int32)
    keys = list(jax.random.split(key, bucket.size))
    timings = {}
    for strategy in candidates:
        trainer = BucketTrainer(
            bucket, recipe, keys=keys, lrs=[0.01] * bucket.size, strategy=strategy
        )
        jax.block_until_ready(trainer.step(images, labels))  # compile
        start = time.perf_counter()
        for _ in range(steps):
            metrics = trainer.step(images, labels)
        jax.block_until_ready(metrics)
        timings[strategy] = (time.perf_counter() - start) / steps
    return min(timings, key=timings.get), timings
