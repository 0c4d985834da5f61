"""Pure training functions for ONE candidate network.

`create_state`, `train_step` and `eval_step` are written for a single network;
the engine (`jnas.population.engine`) adds the candidate axis at the edge
(vmap, lax.map or a Python loop). Everything a candidate owns is in its
`TrainState`, a pytree of arrays, so a population is the same pytree with a
leading candidate axis.

The recipe is the release's (PyTorch SGD): momentum 0.9 on the gradient plus
*coupled* weight decay (added to the gradient before momentum, on every
parameter), the learning rate applied after momentum, batch 128, and a step or
cosine schedule over the run. Each candidate has its own peak learning rate
(`TrainState.lr`) and PRNG key.

Padding: a candidate trained inside a padded bucket carries a `grad_mask` (1 on
its real parameter entries, 0 elsewhere). Zero-initialised padded entries then
stay exactly zero: their gradient is masked, so momentum and weight decay of a
zero are zero. See `jnas.population.buckets` for why outputs need no mask.

Divergence: a candidate whose loss (or updated parameters) is not finite is
marked diverged and frozen at its last finite state; under vmap / lax.map the
others are unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jnas import nn

SCHEDULES = ("constant", "step", "cosine")
Schedule = Callable[[jax.Array], jax.Array]


class TrainState(NamedTuple):
    """Everything one candidate owns (a population stacks these).

    Attributes:
      step: int32 scalar, optimiser steps taken (not counting frozen steps).
      params: flax params pytree (float32).
      batch_stats: BatchNorm running statistics pytree (float32).
      opt_state: optax state (the momentum buffer).
      lr: float32 scalar, this candidate's peak learning rate.
      key: PRNG key (stochastic rounding draws fold in the step).
      diverged: bool scalar, set once the loss is not finite.
      grad_mask: pytree like params, float32 1.0 on real entries (None: no mask).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    lr: jax.Array
    key: jax.Array
    diverged: jax.Array
    grad_mask: Any


def make_optimizer(
    *, momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = False
) -> optax.GradientTransformation:
    """Returns PyTorch-SGD's direction: (g + wd * p) accumulated with momentum.

    The learning rate is *not* part of it: `train_step` multiplies the result by
    the candidate's own lr times the schedule, so one compiled optimiser serves
    candidates with different learning rates.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum={momentum} must be in [0, 1)")
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay} must be >= 0")
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.trace(decay=momentum, nesterov=nesterov),
    )


def make_schedule(
    kind: str,
    total_steps: int,
    *,
    milestones: tuple[float, ...] = (0.5, 0.75),
    gamma: float = 0.1,
    warmup_steps: int = 0,
) -> Schedule:
    """Returns step -> learning-rate multiplier (1 at the peak).

    Args:
      kind: "constant", "step" (multiply by `gamma` at each milestone, given as
        fractions of `total_steps`) or "cosine" (to 0 at `total_steps`).
      total_steps: length of the run.
      milestones: fractions of the run for the "step" schedule.
      gamma: decay factor per milestone.
      warmup_steps: linear warm-up from 0, before the schedule proper.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule={kind!r} is not one of {', '.join(SCHEDULES)}")
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps} must be >= 1")
    if kind == "constant":
        main = optax.constant_schedule(1.0)
    elif kind == "step":
        bounds = {max(1, round(m * total_steps)): gamma for m in milestones}
        main = optax.piecewise_constant_schedule(1.0, bounds)
    else:
        main = optax.cosine_decay_schedule(1.0, max(1, total_steps - warmup_steps))
    if warmup_steps <= 0:
        return main
    warm = optax.linear_schedule(0.0, 1.0, warmup_steps)
    return optax.join_schedules([warm, main], [warmup_steps])


def create_state(
    variables: dict[str, Any],
    *,
    tx: optax.GradientTransformation,
    lr: float | jax.Array,
    key: jax.Array,
    grad_mask: Any = None,
) -> TrainState:
    """Wraps initial variables into a TrainState.

    Args:
      variables: {"params", "batch_stats"} as from `jnas.nn.init`.
      tx: the optimiser (see `make_optimizer`).
      lr: peak learning rate.
      key: PRNG key of this candidate.
      grad_mask: optional pytree like params with 1.0 on real entries.
    """
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        lr=jnp.asarray(lr, jnp.float32),
        key=key,
        diverged=jnp.zeros((), bool),
        grad_mask=grad_mask,
    )


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    *,
    model: nn.Net,
    tx: optax.GradientTransformation,
    schedule: Schedule,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step of one candidate on one batch.

    Args:
      state: the candidate's state.
      images: (batch, H, W, C) float inputs (already normalised/augmented).
      labels: (batch,) int labels.
      model: the candidate's (or its bucket's padded) `jnas.nn.Net`.
      tx: the optimiser of `make_optimizer`.
      schedule: step -> lr multiplier.

    Returns:
      (new state, metrics {"loss": mean loss, "correct": # correct, "count":
      batch size, "active": 1 unless frozen}); all scalars on device.
    """
    quantize_key = jax.random.fold_in(state.key, state.step)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        logits, batch_stats = nn.apply(
            model, variables, images, train=True, key=_maybe_key(model, quantize_key)
        )
        return cross_entropy(logits, labels), (logits, batch_stats)

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    if state.grad_mask is not None:
        grads = jax.tree.map(jnp.multiply, grads, state.grad_mask)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    scale = -state.lr * schedule(state.step)
    params = jax.tree.map(lambda p, u: p + scale * u, state.params, updates)

    # Also check the new params: a finite loss can still produce an overflowing
    # update, and the frozen state should be the last finite one. (One fused
    # reduction over the params: small next to the activations.)
    finite = jnp.isfinite(loss) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)])
    )
    diverged = state.diverged | ~finite

    def keep(new_leaf, old_leaf):  # frozen once diverged: keep the last finite state
        return jnp.where(diverged, old_leaf, new_leaf)

    new = state._replace(
        step=keep(state.step + 1, state.step),
        params=jax.tree.map(keep, params, state.params),
        batch_stats=jax.tree.map(keep, batch_stats, state.batch_stats),
        opt_state=jax.tree.map(keep, opt_state, state.opt_state),
        diverged=diverged,
    )
    metrics = {
        "loss": jnp.where(diverged, 0.0, loss),
        "correct": jnp.sum(jnp.argmax(logits, -1) == labels),
        "count": jnp.asarray(labels.shape[0], jnp.int32),
        "active": (~diverged).astype(jnp.int32),
    }
    return new, metrics


def eval_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    *,
    model: nn.Net,
    mask: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Sums of loss and correct predictions of one candidate on one batch.

    Args:
      state: the candidate's state (running statistics are used).
      images, labels: a batch.
      model: the candidate's (or bucket's) Net.
      mask: optional (batch,) bool marking real examples (the last batch of an
        evaluation set is padded to the batch size).
    """
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits = nn.apply(
        model,
        variables,
        images,
        key=_maybe_key(model, jax.random.fold_in(state.key, 0xFFFFFFFF)),
    )
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = jnp.argmax(logits, -1) == labels
    if mask is None:
        mask = jnp.ones(labels.shape, bool)
    return {
        "loss_sum": jnp.sum(jnp.where(mask, losses, 0.0)),
        "correct": jnp.sum(correct & mask),
        "count": jnp.sum(mask).astype(jnp.int32),
    }


def _maybe_key(model: nn.Net, key: jax.Array) -> jax.Array | None:
    return key if model.rounding == "stochastic" else None


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Number of full batches in one epoch (the last partial batch is dropped)."""
    return max(1, math.floor(num_examples / batch_size))
