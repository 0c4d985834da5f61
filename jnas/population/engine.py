"""Training a bucket of candidates at once: strategies, stacking, the loop.

`step` is written for one candidate and `buckets` pads candidates into one
architecture; this module adds the candidate axis:

- "vmap": one batched program (`jax.vmap` over the stacked states; the batch
  is shared, `in_axes=None`).
- "map": `jax.lax.map` over the stacked states inside one program: the
  candidates run one after another, each with an ordinary (unbatched) program
  body, so convolutions keep their single-network lowering.
- "sequential": one jitted step per candidate on its own *unpadded*
  architecture: the baseline, and what "trained alone" means.

Each strategy runs with a convolution lowering (`nn_ops.CONV_IMPLS`): XLA's
convolution, or "im2col" (strided slices and matmuls). Same maths, different
speed: on XLA:CPU, lax.map with im2col is the fastest population program, and
XLA's convolutions inside lax.map are the slowest (docs/population.md). The
pair (strategy, lowering) is chosen per bucket (`choose_plan`) by a short
measured autotune (`autotune`), by the documented rule `default_plan` (no
timing), or forced by config. Every strategy is one jit boundary per step
with the states donated; metrics stay on the device and leave it every
`log_every` steps. How the candidates are laid out (a list, a stacked pytree,
a sharded one) stays inside `BucketTrainer`: callers use `variables`,
`map_variables` and `evaluate`.

Compiled steps are shared: `step_function` caches one jitted step per (recipe,
architecture, strategy, lowering), so the program the autotune compiled is the
one the trainer then runs, and `enable_compilation_cache` turns on JAX's
persistent cache so a rerun (a resumed search) skips compiling.

Why one module of ~550 lines: the trainer, the two compiled-program caches
(`step_function`, `eval_function`, cleared together by `clear_caches`) and the
autotune that fills them share one concept, the bucket's compiled programs;
split apart, each piece would reach into the others' caches.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnas import nn, precision
from jnas.data import pipeline
from jnas.population import buckets, sharding
from jnas.population import step as train

STRATEGIES = ("vmap", "map", "sequential")
CONV_IMPLS = nn.nn_ops.CONV_IMPLS


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

    def model(self, arch, conv_impl: str = "xla") -> nn.Net:
        return nn.create_model(arch, conv_impl=conv_impl, **dict(self.model_options))


def enable_compilation_cache(path: str | None, min_compile_secs: float = 0.0) -> None:
    """Turns on JAX's persistent compilation cache in `path` (None: leave off).

    A probe cut a 2.8 s compile to 0.2 s on a rerun; a resumed search compiles
    the same bucket programs again, so this is where it pays.
    """
    if path is None:
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_secs)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def device_memory_budget(fraction: float = 0.7) -> int | None:
    """Bytes a bucket's step may use on the default device (None: unknown).

    Accelerators report their memory (`Device.memory_stats()["bytes_limit"]`);
    on CPU the host's physical memory stands in. `fraction` leaves room for
    the data set, the evaluation program and XLA's temporaries.
    """
    stats = None
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats raise
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"] * fraction)
    try:
        import os

        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return int(total * fraction)


def default_plan(bucket: buckets.Bucket, backend: str | None = None) -> tuple[str, str]:
    """The documented rule for (strategy, conv lowering) without timing.

    CPU: lax.map with im2col convolutions for buckets of several candidates
    (the one combination measured faster than the per-candidate loop); a
    single candidate runs its own program, with im2col (faster gradients on
    XLA:CPU). Accelerators: vmap with XLA's convolutions (one wide program
    fills the device; jax#13800 reports slow grouped-convolution gradients on
    GPU, which `autotune` measures rather than assumes).
    """
    backend = backend or jax.default_backend()
    if backend == "cpu":
        return ("map" if bucket.size > 1 else "vmap"), "im2col"
    return "vmap", "xla"


def choose_plan(
    bucket: buckets.Bucket,
    recipe: Recipe,
    *,
    choice: str = "rule",
    conv_impl: str = "auto",
    batch_size: int,
    input_shape: tuple[int, int, int],
) -> tuple[str, str]:
    """The (strategy, conv lowering) a bucket trains with.

    Args:
      bucket, recipe: the bucket and its training recipe.
      choice: "rule" (`default_plan`), "autotune" (`autotune`; a single
        candidate takes the rule) or a strategy of STRATEGIES (with the
        rule's lowering).
      conv_impl: "auto" (as chosen above) or one of CONV_IMPLS to force it.
      batch_size, input_shape: what `autotune` times.
    """
    if choice == "rule" or (choice == "autotune" and bucket.size == 1):
        strategy, impl = default_plan(bucket)
    elif choice == "autotune":
        (strategy, impl), _ = autotune(
            bucket, recipe, batch_size=batch_size, input_shape=input_shape
        )
    else:
        strategy, impl = choice, default_plan(bucket)[1]
    if conv_impl != "auto":
        impl = conv_impl
    return strategy, impl


class BucketTrainer:
    """Holds a bucket's compiled step and its candidates' states.

    Attributes:
      bucket: the `buckets.Bucket`.
      strategy: one of STRATEGIES.
      states: stacked `train.TrainState` (vmap/map) or a list of per-candidate
        unpadded states (sequential).
      traces: how many times the step function was traced (compile counter).
    """

    def __init__(
        self,
        bucket: buckets.Bucket,
        recipe: Recipe,
        *,
        keys: Sequence[jax.Array],
        lrs: Sequence[float],
        strategy: str,
        conv_impl: str = "xla",
        mesh: jax.sharding.Mesh | None = None,
        variables: Sequence[Any] | None = None,
    ):
        # mesh (`sharding.mesh_from_config`): states padded to a multiple of its
        # "candidates" axis and sharded along it; "sequential" ignores it.
        # variables: per member, trained {"params", "batch_stats"} (e.g. a
        # checkpoint's) instead of fresh ones from `nn.init`, so a network
        # trained earlier is evaluated by the same programs (`evaluate`).
        if strategy not in STRATEGIES:
            raise ValueError(
                f"strategy={strategy!r} is not one of {', '.join(STRATEGIES)}"
            )
        if conv_impl not in CONV_IMPLS:
            raise ValueError(
                f"conv_impl={conv_impl!r} is not one of {', '.join(CONV_IMPLS)}"
            )
        if len(keys) != bucket.size or len(lrs) != bucket.size:
            raise ValueError(
                f"need one key and one lr per candidate: bucket has {bucket.size}, "
                f"got {len(keys)} keys and {len(lrs)} lrs"
            )
        if variables is not None and len(variables) != bucket.size:
            raise ValueError(
                f"need variables for each candidate: bucket has {bucket.size}, "
                f"got {len(variables)}"
            )
        self.bucket, self.recipe, self.strategy = bucket, recipe, strategy
        self.conv_impl = conv_impl
        self.mesh = None if strategy == "sequential" else mesh
        # Variables are built, embedded and stacked on the host, and the
        # optimiser state is made by one small program per bucket: done
        # eagerly, every distinct leaf shape of tx.init and of a stack
        # compiled its own XLA program (~2 s per candidate on a 2-core CPU).
        split = [jax.random.split(k) for k in keys]
        init_keys, state_keys = (jnp.stack(ks) for ks in zip(*split, strict=True))
        lrs = np.asarray(lrs, np.float32)
        members = []
        for i, member in enumerate(bucket.members):
            if variables is None:
                member_vars = nn.init(recipe.model(member), init_keys[i])
            else:
                member_vars = variables[i]
            mask = None
            if strategy != "sequential":
                member_vars, mask = buckets.embed(bucket, i, member_vars)
            members.append((jax.device_get(member_vars), mask))
        if strategy == "sequential":
            self.states = [
                _create_states(
                    recipe.tx, *_host_stack([v]), lrs[i : i + 1], state_keys[i : i + 1]
                )
                for i, v in enumerate(members)
            ]
            self.states = [unstack(s, 0) for s in self.states]
            self._steps = [
                step_function(recipe, m, "sequential", conv_impl)
                for m in bucket.members
            ]
        else:
            inputs = (*_host_stack(members), lrs, state_keys)
            step = step_function(recipe, bucket.padded, strategy, conv_impl)
            if self.mesh is None:
                self.states = _create_states(recipe.tx, *inputs)
                self._steps = [step]
            else:  # padded copies, sharded, shard_map'ed step (sharding)
                # The inputs are padded and placed, then the states made on
                # the mesh: the copies of candidate 0's inputs give copies of
                # its state, and host arrays are placed without a program.
                inputs = sharding.shard_population(inputs, self.mesh)
                self.states = jax.device_put(
                    _create_states(recipe.tx, *inputs),
                    sharding.candidate_sharding(self.mesh),
                )
                self._steps = [sharding.shard_step(step, self.mesh)]

    @property
    def traces(self) -> int:
        """How many times this trainer's step programs were traced (compiles).

        The programs are shared (`step_function`), so a program compiled by
        the autotune already counts here.
        """
        return sum(f.traces for f in self._steps)

    def step(self, images: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
        """Trains every candidate one step on the shared batch.

        Returns:
          metrics with a leading candidate axis (on the device).
        """
        if self.strategy == "sequential":
            out = [
                f(s, images, labels)
                for f, s in zip(self._steps, self.states, strict=True)
            ]
            self.states = [s for s, _ in out]
            return stack([m for _, m in out])
        self.states, metrics = self._steps[0](self.states, images, labels)
        return metrics

    def variables(self, index: int) -> dict[str, Any]:
        """Candidate `index`'s own (unpadded) {"params", "batch_stats"}, in numpy."""
        return self.all_variables([index])[0]

    def all_variables(self, indices: Sequence[int] | None = None) -> list[Any]:
        """`variables` of each candidate of `indices` (default: all). A stacked
        population is fetched from the device in one transfer and cut apart
        on the host: indexing the device arrays compiled a slice program per
        leaf shape (and on a mesh a gather and a broadcast per leaf)."""
        indices = range(self.bucket.size) if indices is None else indices
        if self.strategy == "sequential":
            return [
                jax.device_get({"params": s.params, "batch_stats": s.batch_stats})
                for s in (self.states[i] for i in indices)
            ]
        s = self.states
        host = jax.device_get({"params": s.params, "batch_stats": s.batch_stats})
        return [
            buckets.extract(self.bucket, i, jax.tree.map(operator.itemgetter(i), host))
            for i in indices
        ]

    def map_variables(self, fn: Callable[[Any], Any]) -> Any:
        """`fn` applied to the trained {"params", "batch_stats"}, in this
        trainer's own layout (a list per candidate, or one stacked pytree), as
        `evaluate(variables=...)` takes them. `fn` must act elementwise (e.g.
        rounding to a number format), so stacking does not change it."""
        if self.strategy == "sequential":
            return [
                fn({"params": s.params, "batch_stats": s.batch_stats})
                for s in self.states
            ]
        return fn(
            {"params": self.states.params, "batch_stats": self.states.batch_stats}
        )

    def snapshot(self, meta: Mapping[str, Any]) -> bytes:
        """Every candidate's whole training state as ``.npz`` bytes, for `restore`.

        Params, BatchNorm statistics, optimiser state, step counters, keys:
        all that the next step reads, so training resumed from it is
        bit-identical to training that never stopped. `meta` (JSON types) is
        stored beside it, with this trainer's strategy and conv_impl.
        """
        states = jax.device_get(jax.tree.map(_key_data, self.states))
        arrays = {
            f"leaf{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(states))
        }
        info = {**meta, "strategy": self.strategy, "conv_impl": self.conv_impl}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(info, sort_keys=True)), **arrays)
        return buffer.getvalue()

    def restore(self, data: bytes) -> dict[str, Any]:
        """Loads a `snapshot` of this bucket's trainer; returns its meta.

        Raises:
          ValueError: the snapshot is of another layout (strategy, conv_impl,
            or the shape or dtype of a state array differ: it was taken by a
            trainer of another plan), or is not a snapshot.
        """
        leaves, treedef = jax.tree.flatten(self.states)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                saved = [z[f"leaf{i}"] for i in range(len(z.files) - 1)]
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(
                f"not a trainer snapshot ({type(e).__name__}: {e})"
            ) from None
        for key in ("strategy", "conv_impl"):
            if meta.get(key) != getattr(self, key):
                raise ValueError(
                    f"the snapshot's {key} is {meta.get(key)!r}, this trainer's "
                    f"{getattr(self, key)!r}"
                )
        if len(saved) != len(leaves):
            raise ValueError(
                f"the snapshot holds {len(saved)} state arrays, this trainer "
                f"{len(leaves)}"
            )
        restored = []
        for i, (now, old) in enumerate(zip(leaves, saved, strict=True)):
            want = _key_data(now)
            if old.shape != want.shape or old.dtype != want.dtype:
                raise ValueError(
                    f"state array {i} is {old.dtype}{list(old.shape)} in the snapshot, "
                    f"{want.dtype}{list(want.shape)} in this trainer"
                )
            value = jnp.asarray(old)
            if _is_key(now):
                value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(now))
            restored.append(jax.device_put(value, now.sharding))
        self.states = jax.tree.unflatten(treedef, restored)
        return meta

    def diverged(self) -> np.ndarray:
        """bool [candidates]: which candidates are frozen after a non-finite loss."""
        if self.strategy == "sequential":
            return np.array([bool(s.diverged) for s in self.states])
        return np.asarray(self.states.diverged)[: self.bucket.size]  # no padding


def _is_key(x: Any) -> bool:
    return jnp.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _key_data(x: Any) -> Any:
    """A typed PRNG key array as its uint32 data (npz holds no key dtype)."""
    return jax.random.key_data(x) if _is_key(x) else x


def _host_stack(members: Sequence[tuple[Any, Any]]) -> tuple[Any, Any]:
    """(variables, masks) of the members stacked along a new axis, in numpy."""
    variables = jax.tree.map(lambda *v: np.stack(v), *[v for v, _ in members])
    masks = [m for _, m in members]
    if masks[0] is None:
        return variables, None
    return variables, jax.tree.map(lambda *m: np.stack(m), *masks)


@functools.partial(jax.jit, static_argnums=0)
def _create_states(tx, variables, masks, lrs, keys) -> train.TrainState:
    """Stacked `train.create_state` of stacked variables, in one program."""
    return jax.vmap(
        lambda v, m, lr, k: train.create_state(v, tx=tx, lr=lr, key=k, grad_mask=m)
    )(variables, masks, lrs, keys)


class _CountedStep:
    """A jitted step that counts its traces (the compile counter of the tests)."""

    def __init__(self, fn: Callable):
        self.traces = 0

        def traced(*args):
            self.traces += 1  # runs only while tracing
            return fn(*args)

        self._jitted = jax.jit(traced, donate_argnums=0)

    def __call__(self, *args):
        return self._jitted(*args)


@functools.lru_cache(maxsize=64)
def step_function(
    recipe: Recipe, arch, strategy: str, conv_impl: str = "xla"
) -> _CountedStep:
    """The jitted training step of `arch` under a strategy (cached).

    Args:
      recipe: the training recipe.
      arch: the candidate's architecture ("sequential") or the bucket's padded
        one ("vmap", "map").
      strategy: one of STRATEGIES.
      conv_impl: one of CONV_IMPLS.

    Returns:
      A callable `(states, images, labels) -> (states, metrics)`, states
      donated; with a leading candidate axis unless "sequential".
    """
    single = functools.partial(
        train.train_step,
        model=recipe.model(arch, conv_impl),
        tx=recipe.tx,
        schedule=recipe.schedule,
    )
    if strategy == "sequential":
        return _CountedStep(single)
    if strategy == "vmap":
        return _CountedStep(jax.vmap(single, in_axes=(0, None, None)))

    def mapped(states, images, labels):
        return jax.lax.map(lambda s: single(s, images, labels), states)

    return _CountedStep(mapped)


def clear_caches() -> None:
    """Drops the cached compiled programs (between buckets of a long search).

    Every compiled program holds mapped executable memory; a search over
    hundreds of buckets would otherwise run out of it (a 128-candidate
    benchmark hit "LLVM ERROR: Unable to allocate section memory").
    """
    step_function.cache_clear()
    eval_function.cache_clear()
    jax.clear_caches()


def train_bucket(
    trainer: BucketTrainer,
    ds: pipeline.DeviceDataset,
    *,
    steps: int,
    batch_size: int,
    data_key: jax.Array,
    log_every: int = 50,
    on_log: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    augment: bool = True,
    keep_last: bool = False,
    start_step: int = 0,
    on_snapshot: Callable[[int], None] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Runs `steps` training steps on batches drawn on the device.

    Args:
      trainer: the bucket's trainer (its states advance in place).
      ds: training data on the device.
      steps: number of steps.
      batch_size: examples per batch (shared by all candidates).
      data_key: fixes the batch order and augmentation.
      log_every: metrics are fetched from the device after step 1 and then
        every this many steps (and after the last).
      on_log: called with (step, metrics) at each fetch.
      augment: random crop and horizontal flip (CIFAR-style; off for digits,
        which flipping changes).
      keep_last: every epoch ends with the partial batch of the remaining
        examples (`pipeline.batch_shapes`); its step is a second compiled
        program (another batch shape), run once per epoch.
      start_step: steps already taken by a trainer restored from a snapshot
        taken at a fetch (step 1 or a multiple of `log_every`): the batches
        and the metric windows then continue as if training had not stopped.
      on_snapshot: called with the step after each fetch before the last
        (where `trainer.snapshot` may be taken and resumed from exactly).

    Returns:
      One dict per fetch: "step", and per-candidate arrays "loss" (mean over the
      window's active steps), "accuracy" (training accuracy over the window).
    """
    batches = pipeline.iterate(
        ds,
        data_key,
        batch_size=batch_size,
        num_steps=steps - start_step,
        augment=augment,
        start_step=start_step,
        dtype=jnp.float32,
        keep_last=keep_last,
    )
    history, window = [], []
    for step, (images, labels) in enumerate(batches, start_step + 1):
        window.append(trainer.step(images, labels))
        # Step 1 too: it ends the compile, so a watcher hears of it early.
        if step == 1 or step % log_every == 0 or step == steps:
            fetched = jax.device_get(window)  # one transfer per window
            n = trainer.bucket.size  # drop a mesh's padding copies
            fetched = [{k: v[:n] for k, v in m.items()} for m in fetched]
            window = []
            active = np.sum([m["active"] for m in fetched], axis=0)
            loss = np.sum([m["loss"] for m in fetched], axis=0) / np.maximum(active, 1)
            correct = np.sum([m["correct"] for m in fetched], axis=0)
            count = np.sum([m["count"] for m in fetched], axis=0)
            record = {"step": step, "loss": loss, "accuracy": correct / count}
            history.append(record)
            if on_log is not None:
                on_log(step, record)
            if on_snapshot is not None and step < steps:
                on_snapshot(step)
    return history


def evaluate(
    trainer: BucketTrainer,
    ds: pipeline.DeviceDataset,
    *,
    batch_size: int = 500,
    variables: Any = None,
    transform: Callable[[Any], Any] | None = None,
    weight_format: precision.FloatFormat | None = None,
) -> np.ndarray:
    """Accuracy of every candidate on a whole dataset (running BN statistics).

    Args:
      trainer: the bucket's trainer.
      ds: the evaluation data on the device.
      batch_size: examples per evaluation batch.
      variables: optional replacement {"params", "batch_stats"} in the
        trainer's own layout (stacked, or a list for "sequential"), e.g. the
        trained values rounded to a number format.
      transform: instead of `variables`, an elementwise function of the
        trained variables (`BucketTrainer.map_variables`), e.g. rounding.
      weight_format: evaluate with every stored value (params and BN
        statistics) rounded to this format (`precision.quantize_tree`: a
        default-kind format, the whole format-search grid, compiles no
        program of its own).

    Returns:
      float [candidates] accuracies.
    """
    fn, states = _eval_setup(trainer, variables, transform, weight_format)
    # Sums accumulate on the host: eager device adds would compile a program
    # per shape (again after every `clear_caches`).
    outs = [
        fn(states, images, labels, mask)
        for images, labels, mask in pipeline.eval_batches(ds, batch_size)
    ]
    outs = jax.device_get(outs)
    correct = np.sum([np.asarray(o["correct"], np.int64) for o in outs], axis=0)
    count = np.sum([np.asarray(o["count"], np.int64) for o in outs], axis=0)
    return (correct / count)[: trainer.bucket.size]  # without a mesh's padding copies


class Screening(NamedTuple):
    """What `screen` found per candidate.

    Attributes:
      accuracy: float [candidates]: the accuracy on the whole dataset where
        `exact`, else an upper bound on it that is below the candidate's `need`.
      exact: bool [candidates]: whether every example was evaluated.
      examples: int [candidates]: examples evaluated before the verdict.
    """

    accuracy: np.ndarray
    exact: np.ndarray
    examples: np.ndarray


def screen(
    trainer: BucketTrainer,
    ds: pipeline.DeviceDataset,
    need: np.ndarray,
    *,
    batch_size: int,
    weight_format: precision.FloatFormat | None = None,
) -> Screening:
    """`evaluate`, stopping once no candidate can still reach its `need`.

    After each batch, a candidate's accuracy is at most (correct so far +
    examples not yet seen) / N. Once that bound is below `need` for a
    candidate its verdict is known (it fails) and the bound is kept; the
    batches stop when that holds for every candidate. A candidate that can
    still reach `need` is evaluated on every example, so its accuracy is exact
    and the pass/fail verdict always equals the full evaluation's. Why: the
    format search's narrow formats mostly collapse, and a collapsed one fails
    after a few batches instead of the whole validation set.

    Args:
      trainer: the bucket's trainer.
      ds: the evaluation data on the device.
      need: float [candidates]: the accuracy a candidate must reach
        (``-inf``: always evaluate fully; ``+inf``: not wanted, stops at once).
      batch_size: examples per batch (smaller batches stop sooner).
      weight_format: as in `evaluate`.

    Returns:
      A `Screening`.
    """
    size = trainer.bucket.size
    need = np.asarray(need, np.float64)
    if need.shape != (size,):
        raise ValueError(
            f"need has shape {need.shape}; the bucket has {size} candidates"
        )
    fn, states = _eval_setup(trainer, None, None, weight_format)
    total = ds.images.shape[0]
    correct = np.zeros(size, np.int64)
    seen = 0
    open_ = np.ones(size, bool)  # verdict still unknown
    bound = np.ones(size)
    examples = np.zeros(size, np.int64)
    # One batch at a time: a batch dispatched ahead would be wasted work at
    # the early stops, which on a CPU costs more than the wait saves.
    for images, labels, mask in pipeline.eval_batches(ds, batch_size):
        out = jax.device_get(fn(states, images, labels, mask))
        correct += np.asarray(out["correct"], np.int64)[:size]
        seen += int(np.asarray(out["count"])[0])
        best = (correct + (total - seen)) / total
        closing = open_ & (best < need)
        bound[closing] = best[closing]
        examples[closing] = seen
        open_ &= ~closing
        if not open_.any():
            break
    examples[open_] = seen  # == total: open ones ran to the end
    exact = examples == total  # (a verdict at the last batch is exact too)
    return Screening(np.where(open_, correct / total, bound), exact, examples)


def _eval_setup(trainer, variables, transform, weight_format):
    """The bucket's compiled eval program and the states to evaluate."""
    bucket = trainer.bucket
    fn = eval_function(
        trainer.recipe,
        bucket.padded,
        bucket.members,
        trainer.strategy,
        trainer.conv_impl,
    )
    if trainer.mesh is not None:  # per shard of candidates
        fn = sharding.shard_eval(fn, trainer.mesh)
    if weight_format is not None:
        transform = functools.partial(precision.quantize_tree, fmt=weight_format)
    states = trainer.states
    if transform is not None:
        variables = trainer.map_variables(transform)
    if variables is not None:
        if trainer.strategy == "sequential":
            states = [s._replace(**v) for s, v in zip(states, variables, strict=True)]
        else:
            states = states._replace(**variables)
    return fn, states


@functools.lru_cache(maxsize=64)
def eval_function(
    recipe: Recipe,
    padded,
    members: tuple,
    strategy: str,
    conv_impl: str,
) -> Callable:
    """Jitted `(states, images, labels, mask) -> sums` with a candidate axis.

    Args: the recipe, the bucket's padded architecture and member
    architectures (hashable, for the cache), the strategy and lowering.
    """
    if strategy == "sequential":
        steps = [
            jax.jit(
                functools.partial(train.eval_step, model=recipe.model(a, conv_impl))
            )
            for a in members
        ]

        def run(states, images, labels, mask):
            return stack(
                [
                    f(s, images, labels, mask=mask)
                    for f, s in zip(steps, states, strict=True)
                ]
            )

        return run
    single = functools.partial(train.eval_step, model=recipe.model(padded, conv_impl))
    if strategy == "vmap":
        return jax.jit(
            jax.vmap(
                lambda s, x, y, m: single(s, x, y, mask=m),
                in_axes=(0, None, None, None),
            )
        )
    return jax.jit(
        lambda states, images, labels, mask: jax.lax.map(
            lambda s: single(s, images, labels, mask=mask), states
        )
    )


def autotune(
    bucket: buckets.Bucket,
    recipe: Recipe,
    *,
    batch_size: int,
    input_shape: tuple[int, int, int],
    candidates: Sequence[tuple[str, str]] = (
        ("map", "im2col"),
        ("vmap", "im2col"),
        ("vmap", "xla"),
    ),
    steps: int = 2,
) -> tuple[tuple[str, str], dict[tuple[str, str], float]]:
    """Times a few steps of each (strategy, lowering) on random data.

    The compiled programs stay in `step_function`'s cache, so the trainer that
    then runs the winner does not compile it again.

    Args:
      bucket: the bucket.
      recipe: its training recipe.
      batch_size: the training batch.
      input_shape: (H, W, C) of one example.
      candidates: (strategy, conv_impl) pairs to try.
      steps: timed steps per pair (after one compiling step).

    Returns:
      (the fastest pair, {pair: seconds per step}).
    """
    key = jax.random.key(0)
    images = jax.random.normal(key, (batch_size, *input_shape))
    labels = jnp.zeros((batch_size,), jnp.int32)
    keys = list(jax.random.split(key, bucket.size))
    timings = {}
    for strategy, conv_impl in candidates:
        trainer = BucketTrainer(
            bucket,
            recipe,
            keys=keys,
            lrs=[0.01] * bucket.size,
            strategy=strategy,
            conv_impl=conv_impl,
        )
        jax.block_until_ready(trainer.step(images, labels))  # compile
        start = time.perf_counter()
        for _ in range(steps):
            metrics = trainer.step(images, labels)
        jax.block_until_ready(metrics)
        timings[(strategy, conv_impl)] = (time.perf_counter() - start) / steps
    return min(timings, key=timings.get), timings
