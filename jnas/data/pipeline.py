"""The on-device input pipeline: batches gathered, normalised and augmented in jit.

Training thousands of tiny networks is only fast if the input pipeline costs
almost nothing, so the whole uint8 dataset is put on the device once
(`put_on_device`; CIFAR-10 is 184 MB) and every batch is made there:

- `get_batch` gathers examples by index, applies the standard CIFAR
  augmentation (random crop with 4-pixel zero padding, random horizontal flip)
  on the uint8 pixels, then normalises with the train split's mean and std.
  Zero padding before normalisation matches torchvision's RandomCrop.
- `next_batch` is a pure function of `(dataset, LoaderState)`: it draws the
  next batch of a seeded per-epoch shuffle and returns the advanced state. The
  permutation is computed on the device when an epoch starts, so the training
  loop never goes back to the host; `next_batch` can run inside the jitted train
  step itself. The batch is the same for every candidate of a population: pass
  it to the vmapped step with `in_axes=None`.
- `iterate` and `eval_batches` are thin Python loops over jitted functions.

Determinism: a batch depends only on the loader key and the step number
(threefry is the same on every backend), so a run resumed at step s with
`init_loader(key, n, step=s)` sees the same batches as one never stopped.
Each epoch drops its last `N % batch_size` examples; they differ every epoch.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class DeviceDataset(NamedTuple):
    """A dataset resident on the device.

    Attributes:
      images: uint8 [N, H, W, C].
      labels: int32 [N].
      mean: float32 [C], per-channel mean in pixel/255 units.
      std: float32 [C], per-channel standard deviation in pixel/255 units.
    """

    images: jax.Array
    labels: jax.Array
    mean: jax.Array
    std: jax.Array


class LoaderState(NamedTuple):
    """Where a seeded shuffled pass over a dataset stands.

    Attributes:
      key: the loader's PRNG key; fixed for the whole run.
      perm: int32 [N], the example order of epoch `epoch`.
      epoch: int32 [], the epoch `perm` belongs to (-1: not computed yet).
      step: int32 [], batches drawn so far.
    """

    key: jax.Array
    perm: jax.Array
    epoch: jax.Array
    step: jax.Array


def put_on_device(
    images: np.ndarray,
    labels: np.ndarray,
    meta: Any,
    *,
    device: jax.Device | jax.sharding.Sharding | None = None,
) -> DeviceDataset:
    """Copies a dataset to the device once, as uint8.

    Args:
      images: uint8 [N, H, W, C] (as returned by `jnas.data.load`).
      labels: int [N].
      meta: anything with `mean` and `std` sequences of C floats in pixel/255
        units, e.g. `jnas.data.Metadata`.
      device: a device or sharding (e.g. replicated over a mesh); default: the
        default device.

    Returns:
      The `DeviceDataset`.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}"
        )
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    mean = np.asarray(meta.mean, np.float32)
    std = np.asarray(meta.std, np.float32)
    if mean.shape != (images.shape[-1],) or std.shape != mean.shape:
        raise ValueError(
            f"mean {mean.shape} and std {std.shape} must have one value per "
            f"channel ({images.shape[-1]})"
        )
    if not np.all(std > 0):
        raise ValueError(f"std must be positive, got {std}")
    arrays = (images, np.asarray(labels, np.int32), mean, std)
    return DeviceDataset(*jax.device_put(arrays, device))


def epoch_permutation(key: jax.Array, num_examples: int) -> jax.Array:
    """A seeded random order of `num_examples` indices, int32 [num_examples]."""
    return jax.random.permutation(key, num_examples).astype(jnp.int32)


def normalize(
    images: jax.Array, mean: jax.Array, std: jax.Array, dtype: Any = jnp.float32
) -> jax.Array:
    """uint8 pixels -> (pixels / 255 - mean) / std, in `dtype`."""
    x = images.astype(jnp.float32) / 255.0
    return ((x - mean) / std).astype(dtype)


def random_crop_flip(
    key: jax.Array, images: jax.Array, *, padding: int = 4
) -> jax.Array:
    """Standard CIFAR augmentation on a batch, independently per image.

    Args:
      key: PRNG key.
      images: [B, H, W, C] (uint8 or float).
      padding: zero padding on each side before a random HxW crop.

    Returns:
      Augmented images, same shape and dtype.
    """
    crop_key, flip_key = jax.random.split(key)
    batch, height, width, channels = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(
            image, (offset[0], offset[1], 0), (height, width, channels)
        )

    cropped = jax.vmap(crop)(padded, offsets)
    flip = jax.random.bernoulli(flip_key, 0.5, (batch,))
    return jnp.where(flip[:, None, None, None], cropped[:, :, ::-1], cropped)


def get_batch(
    ds: DeviceDataset,
    idx: jax.Array,
    key: jax.Array | None,
    *,
    augment: bool,
    dtype: Any = jnp.float32,
) -> tuple[jax.Array, jax.Array]:
    """Gathers, augments and normalises the examples `idx` (jittable).

    Args:
      ds: the dataset on the device.
      idx: int [B] example indices.
      key: PRNG key for the augmentation (unused, may be None, if not augment).
      augment: random crop + flip (training) or not (evaluation).
      dtype: dtype of the returned images.

    Returns:
      (images `dtype` [B, H, W, C] normalised, labels int32 [B]).
    """
    images = ds.images[idx]
    if augment:
        # On uint8, before normalising: a quarter of the bytes to move, and the
        # zero padding stays black as in torchvision.
        images = random_crop_flip(key, images)
    return normalize(images, ds.mean, ds.std, dtype), ds.labels[idx]


def batch_shapes(
    num_examples: int, batch_size: int, keep_last: bool
) -> tuple[int, int]:
    """(steps per epoch, examples in an epoch's last batch).

    Without `keep_last`: floor(N / B) full batches. With it: ceil(N / B)
    steps, the last holding N - (steps - 1) * B examples (e.g. CIFAR-10's
    50,000 at B = 128: 391 steps, the last of 80).
    """
    if keep_last:
        steps = -(-num_examples // batch_size)
        return steps, num_examples - (steps - 1) * batch_size
    return max(1, num_examples // batch_size), batch_size


def init_loader(key: jax.Array, num_examples: int, *, step: int = 0) -> LoaderState:
    """The state of a shuffled pass that starts (or resumes) at `step`.

    Args:
      key: PRNG key that fixes every epoch's order and augmentation.
      num_examples: N, the dataset size.
      step: batches already drawn (to resume a run).

    Returns:
      A `LoaderState`; its permutation is computed by the first `next_batch`.
    """
    # Explicit device_put: allowed under jax.transfer_guard("disallow"), which a
    # training loop may turn on to catch accidental host transfers.
    perm, epoch, step = jax.device_put(
        (np.arange(num_examples, dtype=np.int32), np.int32(-1), np.int32(step))
    )
    return LoaderState(key=key, perm=perm, epoch=epoch, step=step)


def next_batch(
    ds: DeviceDataset,
    state: LoaderState,
    *,
    batch_size: int,
    augment: bool = True,
    dtype: Any = jnp.float32,
    keep_last: bool = False,
    take: int | None = None,
) -> tuple[LoaderState, jax.Array, jax.Array]:
    """Draws the next training batch; pure and jittable, with no host sync.

    Args:
      ds: the dataset on the device.
      state: from `init_loader` or a previous `next_batch`.
      batch_size: static; at most N.
      augment: apply `random_crop_flip`.
      dtype: dtype of the returned images.
      keep_last: epochs of ceil(N / batch_size) steps whose last batch holds
        the N mod batch_size remaining examples (PyTorch's DataLoader default,
        ``drop_last=False``); else floor(N / batch_size) full batches and the
        remainder of each permutation is not seen that epoch.
      take: static number of examples to return (default `batch_size`): with
        `keep_last`, the caller passes `batch_shapes(...)`'s tail size on an
        epoch's last step (a shape is static, so the host, which counts
        steps, says which step that is).

    Returns:
      (new state, images `dtype` [take, H, W, C], labels int32 [take]).
    """
    num_examples = ds.images.shape[0]
    if not 0 < batch_size <= num_examples:
        raise ValueError(f"batch_size={batch_size} must be in 1..{num_examples}")
    take = batch_size if take is None else take
    if not 0 < take <= batch_size:
        raise ValueError(f"take={take} must be in 1..batch_size={batch_size}")
    steps_per_epoch, _ = batch_shapes(num_examples, batch_size, keep_last)
    perm_key, aug_key = jax.random.split(state.key)
    epoch = state.step // steps_per_epoch
    perm = jax.lax.cond(
        epoch != state.epoch,
        lambda: epoch_permutation(jax.random.fold_in(perm_key, epoch), num_examples),
        lambda: state.perm,
    )
    start = (state.step % steps_per_epoch) * batch_size
    idx = jax.lax.dynamic_slice_in_dim(perm, start, take)
    images, labels = get_batch(
        ds, idx, jax.random.fold_in(aug_key, state.step), augment=augment, dtype=dtype
    )
    new_state = LoaderState(state.key, perm, epoch.astype(jnp.int32), state.step + 1)
    return new_state, images, labels


_next_batch = jax.jit(
    next_batch, static_argnames=("batch_size", "augment", "dtype", "keep_last", "take")
)


def iterate(
    ds: DeviceDataset,
    key: jax.Array,
    *,
    batch_size: int,
    num_steps: int,
    augment: bool = True,
    start_step: int = 0,
    dtype: Any = jnp.float32,
    keep_last: bool = False,
) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Yields `num_steps` training batches, reshuffling on the device every epoch.

    Args:
      ds: the dataset on the device.
      key: PRNG key; the same key gives the same batches.
      batch_size: examples per batch.
      num_steps: batches to yield.
      augment: apply `random_crop_flip`.
      start_step: step to start from (to resume).
      dtype: dtype of the yielded images.
      keep_last: end every epoch with the partial batch (`next_batch`).

    Yields:
      (images `dtype` [B, H, W, C], labels int32 [B]); B = batch_size, except
      an epoch's last batch with `keep_last`.
    """
    num_examples = ds.images.shape[0]
    state = init_loader(key, num_examples, step=start_step)
    per_epoch, tail = batch_shapes(num_examples, batch_size, keep_last)
    for step in range(start_step, start_step + num_steps):
        last = (step + 1) % per_epoch == 0
        state, images, labels = _next_batch(
            ds,
            state,
            batch_size=batch_size,
            augment=augment,
            dtype=dtype,
            keep_last=keep_last,
            take=tail if last else batch_size,
        )
        yield images, labels


@functools.partial(jax.jit, static_argnames=("batch_size", "dtype"))
def _eval_batch(ds: DeviceDataset, start: jax.Array, *, batch_size: int, dtype: Any):
    num_examples = ds.images.shape[0]
    idx = start + jnp.arange(batch_size, dtype=jnp.int32)
    mask = idx < num_examples
    images, labels = get_batch(
        ds, jnp.minimum(idx, num_examples - 1), None, augment=False, dtype=dtype
    )
    return images, labels, mask, start + batch_size


def eval_batches(
    ds: DeviceDataset, batch_size: int, *, dtype: Any = jnp.float32
) -> Iterator[tuple[jax.Array, jax.Array, jax.Array]]:
    """Yields the whole dataset in order, in fixed-shape batches.

    The last batch is completed with copies of the last example and `mask`
    marks the real ones, so one compiled eval step serves every batch and the
    accuracy is exact: sum(correct * mask) / N.

    Args:
      ds: the dataset on the device.
      batch_size: examples per batch.
      dtype: dtype of the yielded images.

    Yields:
      (images `dtype` [B, H, W, C], labels int32 [B], mask bool [B]).
    """
    num_examples = ds.images.shape[0]
    start = jax.device_put(np.int32(0))  # then advanced on the device
    for _ in range(-(-num_examples // batch_size)):
        images, labels, mask, start = _eval_batch(
            ds, start, batch_size=batch_size, dtype=dtype
        )
        yield images, labels, mask
