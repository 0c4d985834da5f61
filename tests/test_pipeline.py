"""Tests of jnas.data.pipeline: exact augmentation, seeded epochs, no round trips."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.data import pipeline

N, H, W, C = 10, 6, 6, 3
META = types.SimpleNamespace(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


@pytest.fixture(scope="module")
def host():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, H, W, C), dtype=np.uint8)
    labels = np.arange(N, dtype=np.int32)  # label == index: batches name examples
    return images, labels


@pytest.fixture(scope="module")
def ds(host):
    return pipeline.put_on_device(*host, META)


def _normalize_np(images):
    return ((images / 255.0 - np.asarray(META.mean)) / np.asarray(META.std)).astype(
        np.float32
    )


def test_put_on_device_checks_inputs(host):
    images, labels = host
    ds = pipeline.put_on_device(images, labels, META)
    assert ds.images.dtype == jnp.uint8 and ds.labels.dtype == jnp.int32
    assert ds.mean.dtype == jnp.float32 and ds.std.shape == (C,)
    with pytest.raises(ValueError, match="uint8"):
        pipeline.put_on_device(images.astype(np.float32), labels, META)
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        pipeline.put_on_device(images, labels[:9], META)
    with pytest.raises(ValueError, match="one value per channel"):
        one = types.SimpleNamespace(mean=(0.5,), std=(1.0,))
        pipeline.put_on_device(images, labels, one)


def test_get_batch_without_augmentation_is_gather_and_normalise(ds, host):
    idx = jnp.asarray([3, 0, 9, 3])
    images, labels = jax.jit(pipeline.get_batch, static_argnames="augment")(
        ds, idx, None, augment=False
    )
    np.testing.assert_allclose(images, _normalize_np(host[0][[3, 0, 9, 3]]), atol=1e-6)
    np.testing.assert_array_equal(labels, [3, 0, 9, 3])
    bf16, _ = pipeline.get_batch(ds, idx, None, augment=False, dtype=jnp.bfloat16)
    assert bf16.dtype == jnp.bfloat16


def test_augmentation_is_a_padded_crop_and_maybe_a_flip(host):
    images = jnp.asarray(host[0])
    out = np.asarray(pipeline.random_crop_flip(jax.random.key(1), images, padding=2))
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(host[0], ((0, 0), (2, 2), (2, 2), (0, 0)))
    flips = 0
    for i in range(N):
        candidates = {
            (dy, dx, flip): (
                padded[i, dy : dy + H, dx : dx + W][:, ::-1]
                if flip
                else padded[i, dy : dy + H, dx : dx + W]
            )
            for dy in range(5)
            for dx in range(5)
            for flip in (0, 1)
        }
        matches = [k for k, v in candidates.items() if np.array_equal(v, out[i])]
        assert matches, f"image {i} is not a crop/flip of its padded input"
        flips += matches[0][2]
    assert 0 < flips < N  # images are augmented independently
    again = pipeline.random_crop_flip(jax.random.key(1), images, padding=2)
    np.testing.assert_array_equal(again, out)


def _run(ds, key, num_steps, batch_size=3, start_step=0):
    return [
        (np.asarray(x), np.asarray(y))
        for x, y in pipeline.iterate(
            ds, key, batch_size=batch_size, num_steps=num_steps, start_step=start_step
        )
    ]


def test_epochs_are_seeded_permutations_without_repeats(ds):
    batches = _run(ds, jax.random.key(0), num_steps=9)  # 3 steps per epoch (10 // 3)
    epochs = [np.concatenate([y for _, y in batches[e : e + 3]]) for e in (0, 3, 6)]
    for seen in epochs:
        assert len(set(seen.tolist())) == 9  # one example dropped per epoch
    assert not all(np.array_equal(epochs[0], e) for e in epochs[1:])  # reshuffled
    same = _run(ds, jax.random.key(0), num_steps=9)
    for (x1, y1), (x2, y2) in zip(batches, same, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other = _run(ds, jax.random.key(1), num_steps=3)
    assert not all(
        np.array_equal(a[1], b[1]) for a, b in zip(batches, other, strict=False)
    )


def test_resuming_at_a_step_gives_the_same_batches(ds):
    full = _run(ds, jax.random.key(5), num_steps=8)
    resumed = _run(ds, jax.random.key(5), num_steps=4, start_step=4)  # mid-epoch
    for (x1, y1), (x2, y2) in zip(full[4:], resumed, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_next_batch_inside_jit_traces_once_and_needs_no_host_transfer(ds):
    traces = []

    @jax.jit
    def step(state, ds):
        traces.append(1)
        state, images, labels = pipeline.next_batch(ds, state, batch_size=4)
        return state, images.mean() + labels.sum()

    state = pipeline.init_loader(jax.random.key(0), N)
    with jax.transfer_guard("disallow"):
        for _ in range(7):  # crosses two epoch boundaries
            state, value = step(state, ds)
        for _ in pipeline.iterate(ds, state.key, batch_size=4, num_steps=3):
            pass
        list(pipeline.eval_batches(ds, 4))
    assert len(traces) == 1
    assert int(state.step) == 7 and int(state.epoch) == 3
    assert np.isfinite(float(value))


def test_eval_batches_cover_every_example_once(ds, host):
    batches = list(pipeline.eval_batches(ds, 4))
    assert len(batches) == 3 and all(x.shape == (4, H, W, C) for x, _, _ in batches)
    mask = np.concatenate([np.asarray(m) for _, _, m in batches])
    labels = np.concatenate([np.asarray(y) for _, y, _ in batches])
    assert mask.tolist() == [True] * 10 + [False] * 2
    np.testing.assert_array_equal(labels[mask], np.arange(N))
    images = np.concatenate([np.asarray(x) for x, _, _ in batches])[mask]
    np.testing.assert_allclose(images, _normalize_np(host[0]), atol=1e-6)


def test_one_batch_feeds_a_population(ds):
    """The batch is shared: vmap over candidates' params with in_axes=None for it."""
    images, labels = next(
        pipeline.iterate(ds, jax.random.key(0), batch_size=4, num_steps=1)
    )
    weights = jnp.stack([jnp.full((H * W * C,), float(i)) for i in range(3)])

    def score(w, x, y):
        return (x.reshape(len(x), -1) @ w).sum() + y.sum()

    scores = jax.vmap(score, in_axes=(0, None, None))(weights, images, labels)
    np.testing.assert_allclose(scores[2] - scores[1], scores[1] - scores[0], rtol=1e-5)


def test_batch_larger_than_dataset_is_refused(ds):
    with pytest.raises(ValueError, match="batch_size=11 must be in 1..10"):
        next(pipeline.iterate(ds, jax.random.key(0), batch_size=11, num_steps=1))
