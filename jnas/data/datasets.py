"""Datasets for candidate training: loading, caching and the validation split.

`load(name, split)` returns host arrays (uint8 images [N, H, W, C], int32 labels)
and a `Metadata` record. `jnas.data.pipeline` puts them on the device and batches them.

Sources:
- "folder": an image-folder layout `<root>/<split>/<class>/<image>` given as a
  directory or as a .tar/.tar.gz archive of it (see `jnas.data.imagefolder`).
- "tfds": a dataset already prepared by TensorFlow Datasets. It is downloaded
  only when `download=True`; otherwise a missing dataset is one immediate
  `DatasetNotFoundError` that says where jnas looked and how to get the data
  (tfds itself would retry a download for minutes, then fail obscurely).
- "bundled": small real datasets that need no download: "digits" (the 8x8
  handwritten digits bundled with scikit-learn) and "fashion_mnist" (from the
  Debian package dataset-fashion-mnist).
- "auto": a folder or archive if `data_dir` points at one, else a prepared tfds
  dataset, else a bundled one, else `DatasetNotFoundError`. jnas never falls
  back to random data.

Decoded folder and tfds splits are cached as .npy files (never pickles) under
`cache_dir`, keyed by the source's path and size/mtime (an archive or tfds
dataset) or by the path, size and mtime of every image (a directory), so a
second load is a file read. Entries are written to a temporary directory and
renamed into place, so a killed process never leaves a half-written entry.

Normalisation statistics (`Metadata.mean`, `Metadata.std`, per channel, in
pixel/255 units) are those of the train split as returned, whatever split was
asked for, so train, validation and test are normalised alike.

Why one module of ~590 lines: source resolution, the two bundled sets and the
cached reading all serve `load`, whose one error message must list every place
it looked; the reading of archives, the cache and TFDS are their own modules.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from jnas.data import cache as datacache
from jnas.data import imagefolder, tfds_source

SOURCES = ("auto", "tfds", "folder", "bundled")
BUNDLED = ("digits", "fashion_mnist")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
FIT_METHODS = ("pad", "resize")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not available from any source jnas was allowed to use."""


class Metadata(NamedTuple):
    """What `load` knows about the arrays it returns.

    Attributes:
      name: dataset name as given to `load`.
      split: split name as given to `load`.
      source: "folder", "tfds" or "bundled" (the source actually used).
      origin: where the data came from (a path, or a package).
      class_names: label i is `class_names[i]`.
      mean: per-channel mean of the train split, pixel values / 255.
      std: per-channel standard deviation of the train split, pixel values / 255.
      from_cache: whether the arrays were read from the .npy cache.
    """

    name: str
    split: str
    source: str
    origin: str
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    from_cache: bool


def load(
    name: str,
    split: str,
    *,
    source: str = "auto",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    cache: bool = True,
    image_shape: tuple[int, int, int] | None = None,
    fit: str = "pad",
    num_workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray, Metadata]:
    """Loads one split of a dataset as host arrays.

    Args:
      name: dataset name: a tfds name ("cifar10"), a bundled one ("digits",
        "fashion_mnist"), or any label for a folder source.
      split: "train", "test", or another split the source has.
      source: "auto", "tfds", "folder" or "bundled" (see the module doc).
      data_dir: the image folder or archive (folder source), the tfds data
        directory (tfds source; default $TFDS_DATA_DIR or ~/tensorflow_datasets),
        or the directory of the Fashion-MNIST .gz files (bundled source).
      download: let TensorFlow Datasets download and prepare the dataset if it
        is not prepared yet (needs internet, tensorflow and importlib_resources).
      cache_dir: where decoded arrays are cached; default $JNAS_CACHE_DIR or
        ~/.cache/jnas.
      cache: read and write the cache (folder and tfds sources).
      image_shape: (H, W, C) to pad or resize the images to, e.g. (32, 32, 3)
        for the search spaces; None keeps the native shape. C may grow from 1
        to 3 (grayscale is replicated).
      fit: "pad" (zero-pad, centred) or "resize" (bilinear) for `image_shape`.
      num_workers: image-decoding threads for a folder source (None: decode in
        the calling thread; `imagefolder` says when threads pay).

    Returns:
      images: uint8 [N, H, W, C]; labels: int32 [N]; the `Metadata`.

    Raises:
      DatasetNotFoundError: the dataset is not available (the message says
        where jnas looked and how to get it).
      ValueError: bad arguments, an unknown split, an unreadable image, class
        folders that differ between splits, or an unsafe archive member.
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r} is not one of {', '.join(SOURCES)}")
    if fit not in FIT_METHODS:
        raise ValueError(f"fit={fit!r} is not one of {', '.join(FIT_METHODS)}")
    kind, location = _resolve_source(name, source, data_dir, download)
    if kind == "bundled":
        splits = _load_bundled(name, location)
        store = _MemoryStore(splits, origin=str(location or "scikit-learn"))
    else:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        store = _CachedStore(name, kind, location, root if cache else None, num_workers)

    images, labels, info = store.get(split)
    stats_split = "train" if "train" in store.splits() else split
    if image_shape is not None and tuple(image_shape) != images.shape[1:]:
        train = images if stats_split == split else store.get(stats_split)[0]
        images = fit_images(images, image_shape, fit)
        mean, std = channel_stats(fit_images(train, image_shape, fit))
    else:
        stats = info if stats_split == split else store.info(stats_split)
        mean, std = tuple(stats["mean"]), tuple(stats["std"])
    meta = Metadata(
        name=name,
        split=split,
        source=kind,
        origin=store.origin,
        class_names=tuple(info["class_names"]),
        mean=mean,
        std=std,
        from_cache=info.get("from_cache", False),
    )
    return images, labels, meta


def locate(
    name: str, *, source: str = "auto", data_dir: str | os.PathLike | None = None
) -> tuple[str, object]:
    """Where `load` would read `name` from, without reading it.

    Cheap (file-system checks only), so a launcher can refuse a missing
    dataset before it writes anything.

    Returns:
      (source kind, location), as `load` resolves them.

    Raises:
      DatasetNotFoundError: the dataset is not available (where jnas looked and
        how to get it).
      ValueError: an unknown source.
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r} is not one of {', '.join(SOURCES)}")
    return _resolve_source(name, source, data_dir, download=False)


def load_train_val_test(
    name: str, *, num_val: int, seed: int, **load_kwargs
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], Metadata]:
    """The three splits a search needs: train, validation carved from train, test.

    Candidates are trained on "train", selected (model, number format) on "val",
    and "test" is only reported, separately.

    Args:
      name: as for `load`.
      num_val: validation examples taken from the train split; 0 trains on
        all of it and returns no "val" split (the release's protocol: nothing
        is selected, the last epoch is reported on the test split).
      seed: seed of `split_validation`.
      **load_kwargs: passed to `load` (source, data_dir, image_shape, ...).

    Returns:
      ({"train": (images, labels), "val": ..., "test": ...}, the train split's
      `Metadata`; its mean and std are those of the full train split).
    """
    images, labels, meta = load(name, "train", **load_kwargs)
    test_x, test_y, _ = load(name, "test", **load_kwargs)
    if num_val == 0:
        return {"train": (images, labels), "test": (test_x, test_y)}, meta
    train_x, train_y, val_x, val_y = split_validation(images, labels, num_val, seed)
    splits = {
        "train": (train_x, train_y),
        "val": (val_x, val_y),
        "test": (test_x, test_y),
    }
    return splits, meta


def split_validation(
    images: np.ndarray,
    labels: np.ndarray,
    num_val: int,
    seed: int,
    *,
    stratified: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Carves a seeded validation set out of a training set.

    Model and format selection use the validation set so that the test set is
    looked at only for the final report. The rule: each example gets a key from
    a SplitMix64 hash of (seed, index), which does not change across numpy
    versions; within each class the `num_val * n_class / n` (largest remainder
    rounding) examples with the smallest keys go to validation. Both outputs
    keep the original order.

    Args:
      images: [N, ...] training images.
      labels: int [N] labels.
      num_val: validation examples, 0 < num_val < N.
      seed: any int; the same seed gives the same split.
      stratified: keep the class proportions (else the `num_val` smallest keys).

    Returns:
      (train_images, train_labels, val_images, val_labels).
    """
    n = len(labels)
    if len(images) != n:
        raise ValueError(f"{len(images)} images but {n} labels")
    if not 0 < num_val < n:
        raise ValueError(f"num_val={num_val} must be in 1..{n - 1} for {n} examples")
    is_val = _seeded_pick(
        np.asarray(labels) if stratified else np.zeros(n, int), num_val, seed
    )
    return images[~is_val], labels[~is_val], images[is_val], labels[is_val]


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images [N, H, W, C], in pixel/255 units."""
    channels = images.shape[-1]
    flat = images.reshape(-1, channels)
    # Exact moments from per-channel histograms: one bincount over channel-offset
    # values, in chunks, is several times faster than float64 sums over a copy.
    offsets = np.arange(channels, dtype=np.uint16) * 256
    hist = np.zeros(channels * 256, np.int64)
    for start in range(0, len(flat), 1 << 20):
        chunk = flat[start : start + (1 << 20)].astype(np.uint16) + offsets
        hist += np.bincount(chunk.ravel(), minlength=channels * 256)
    weights = hist.reshape(channels, 256) / len(flat)
    values = np.arange(256, dtype=np.float64)
    mean = weights @ values
    var = (weights * (values - mean[:, None]) ** 2).sum(1)
    std = np.sqrt(var)
    return tuple(float(m) / 255 for m in mean), tuple(float(v) / 255 for v in std)


def fit_images(
    images: np.ndarray, shape: tuple[int, int, int], method: str = "pad"
) -> np.ndarray:
    """Pads or resizes uint8 images [N, h, w, c] to [N, H, W, C].

    Args:
      images: uint8 [N, h, w, c] with c in (1, 3).
      shape: (H, W, C); C must equal c, or c must be 1 (replicated to C).
      method: "pad" centres the image in zeros (H >= h, W >= w; an odd margin
        puts the extra row/column at the bottom/right); "resize" is PIL bilinear.

    Returns:
      uint8 [N, H, W, C].
    """
    height, width, channels = shape
    n, h, w, c = images.shape
    if channels != c and c != 1:
        raise ValueError(f"cannot turn {c}-channel images into {channels} channels")
    if method == "pad":
        if height < h or width < w:
            raise ValueError(
                f"cannot pad {h}x{w} images to {height}x{width}; use fit='resize'"
            )
        top, left = (height - h) // 2, (width - w) // 2
        out = np.zeros((n, height, width, c), np.uint8)
        out[:, top : top + h, left : left + w] = images
    elif method == "resize":
        out = np.empty((n, height, width, c), np.uint8)
        for i in range(n):
            for ch in range(c):  # PIL resizes single-channel "L" images exactly
                plane = Image.fromarray(images[i, :, :, ch])
                out[i, :, :, ch] = np.asarray(
                    plane.resize((width, height), Image.Resampling.BILINEAR)
                )
    else:
        raise ValueError(f"method={method!r} is not one of {', '.join(FIT_METHODS)}")
    if channels != c:
        out = np.repeat(out, channels, axis=-1)
    return out


def default_cache_dir() -> Path:
    """$JNAS_CACHE_DIR, else ~/.cache/jnas."""
    return Path(os.environ.get("JNAS_CACHE_DIR") or Path.home() / ".cache" / "jnas")


def default_tfds_dir() -> Path:
    """$TFDS_DATA_DIR, else ~/tensorflow_datasets (the tfds default)."""
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")


# -- Choosing a source. --------------------------------------------------------------


def _resolve_source(name, source, data_dir, download) -> tuple[str, object]:
    """Returns (kind, location) or raises DatasetNotFoundError."""
    data_path = Path(data_dir).expanduser() if data_dir is not None else None
    if source == "folder":
        if data_path is None:
            raise ValueError("source='folder' needs data_dir: the folder or archive")
        if not data_path.exists():
            raise _not_found(name, [f"image folder or archive {data_path}: missing"])
        return "folder", data_path
    if source == "bundled":
        return "bundled", _bundled_location(name, data_path)
    if source == "tfds":
        return "tfds", _prepared_tfds_or_download(name, data_path, download)

    # source == "auto": try each source in the documented order.
    looked = []
    if data_path is not None:
        if data_path.is_dir() and tfds_source.find_prepared(name, data_path):
            return "tfds", tfds_source.find_prepared(name, data_path)
        if imagefolder.looks_like_image_folder(data_path):
            return "folder", data_path
        if name == "fashion_mnist" and _has_fashion_mnist(data_path):
            return "bundled", data_path
        state = "no image folder, archive or prepared tfds dataset there"
        if not data_path.exists():
            state = "missing"
        looked.append(f"data_dir {data_path}: {state}")
        # A data_dir that names an archive is not a place to download into.
        tfds_dir = None if imagefolder.is_archive(data_path) else data_path
        if download:
            return "tfds", _prepared_tfds_or_download(name, tfds_dir, download)
        raise _not_found(name, looked, tfds_dir=tfds_dir)
    tfds_dir = default_tfds_dir()
    if prepared := tfds_source.find_prepared(name, tfds_dir):
        return "tfds", prepared
    looked.append(f"TensorFlow Datasets {tfds_dir / name}: not prepared")
    if name in BUNDLED:
        return "bundled", _bundled_location(name, None)
    if download:
        return "tfds", _prepared_tfds_or_download(name, tfds_dir, download)
    looked.append("data_dir: not given")
    raise _not_found(name, looked, tfds_dir=tfds_dir)


def _not_found(name, looked, tfds_dir=None) -> DatasetNotFoundError:
    tfds_dir = tfds_dir or default_tfds_dir()
    return DatasetNotFoundError(
        f"dataset {name!r} not found. jnas looked at:\n"
        + "".join(f"  - {line}\n" for line in looked)
        + "Get it in one of these ways:\n"
        f"  - an image folder or a .tar/.tar.gz of one, laid out as\n"
        f"    {imagefolder.LAYOUT}, passed as data_dir (source='folder');\n"
        f"  - TensorFlow Datasets, once, with internet, tensorflow and\n"
        f"    importlib_resources installed:\n"
        f'      python -c "import tensorflow_datasets as tfds; '
        f"tfds.load('{name}', data_dir='{tfds_dir}')\"\n"
        f"    or load(..., source='tfds', download=True);\n"
        f"  - for quick runs without a download: name='digits', or\n"
        f"    name='fashion_mnist' after `apt-get install dataset-fashion-mnist`."
    )


# -- TensorFlow Datasets. ------------------------------------------------------------


def _prepared_tfds_or_download(name, tfds_dir, download) -> Path:
    tfds_dir = tfds_dir or default_tfds_dir()
    if prepared := tfds_source.find_prepared(name, tfds_dir):
        return prepared
    if not download:
        raise _not_found(
            name,
            [f"TensorFlow Datasets {tfds_dir / name}: not prepared (download=False)"],
            tfds_dir=tfds_dir,
        )
    alternative = (
        f"Or pass an image folder or archive as data_dir ({imagefolder.LAYOUT})."
    )
    if missing := tfds_source.missing_prepare_modules():
        # Checked first: tfds would fail on them only after trying to download.
        raise DatasetNotFoundError(
            f"TensorFlow Datasets cannot download {name!r} here: it needs "
            f"{', '.join(missing)} (pip install {' '.join(missing)}). {alternative}"
        )
    try:
        return tfds_source.prepare(name, tfds_dir)
    except Exception as e:
        raise DatasetNotFoundError(
            f"TensorFlow Datasets could not download {name!r} into {tfds_dir}: "
            f"{type(e).__name__}: {e}. {alternative}"
        ) from e


def _read_tfds(version_dir: Path, split: str):
    try:
        return tfds_source.read_split(version_dir, split)
    except ModuleNotFoundError as e:
        raise DatasetNotFoundError(
            f"reading the prepared dataset in {version_dir} needs the module "
            f"{e.name} (pip install {e.name}); or pass an image folder or archive "
            f"as data_dir ({imagefolder.LAYOUT})."
        ) from e


# -- Bundled datasets. -----------------------------------------------------------------


def _has_fashion_mnist(path: Path) -> bool:
    return (path / "train-images-idx3-ubyte.gz").is_file()


def _bundled_location(name: str, data_path: Path | None):
    if name == "digits":
        return None
    if name == "fashion_mnist":
        path = data_path or FASHION_MNIST_DIR
        if not _has_fashion_mnist(path):
            raise _not_found(name, [f"Fashion-MNIST files in {path}: missing"])
        return path
    raise ValueError(f"no bundled dataset {name!r}; bundled: {', '.join(BUNDLED)}")


def _read_idx(path: Path) -> np.ndarray:
    """Reads a gzipped IDX file (the MNIST format): magic, dims, uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits: (images float64 [1797, 8, 8], labels).

    Read from the file scikit-learn ships, as `sklearn.datasets.load_digits`
    reads it (gzip, then `np.loadtxt`), without importing scikit-learn:
    `import sklearn.datasets` takes 1-2 s, which every local worker and
    every test's search process paid at each start (test: equal to
    `load_digits` bit for bit).
    """
    spec = importlib.util.find_spec("sklearn")
    path = None
    if spec is not None and spec.submodule_search_locations:
        root = Path(spec.submodule_search_locations[0])
        path = root / "datasets" / "data" / "digits.csv.gz"
    if path is None or not path.is_file():
        raise DatasetNotFoundError(
            f"dataset 'digits' is scikit-learn's bundled file, not found "
            f"({path or 'scikit-learn is not installed'}): pip install scikit-learn"
        )
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def _load_bundled(name: str, location) -> dict[str, tuple]:
    """{split: (images uint8 [N, h, w, 1], labels int32 [N], class names)}."""
    if name == "digits":
        digits, target = read_digits()
        # Values are 0..16; scale to the full uint8 range like any image.
        images = np.round(digits * (255 / 16)).astype(np.uint8)[..., None]
        labels = target.astype(np.int32)
        num_test = round(DIGITS_TEST_FRACTION * len(labels))
        is_test = _seeded_pick(labels, num_test, DIGITS_SPLIT_SEED)
        names = [str(i) for i in range(10)]
        return {
            "train": (images[~is_test], labels[~is_test], names),
            "test": (images[is_test], labels[is_test], names),
        }
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(location / f"{prefix}-images-idx3-ubyte.gz")[..., None]
        labels = _read_idx(location / f"{prefix}-labels-idx1-ubyte.gz")
        splits[split] = (images, labels.astype(np.int32), list(FASHION_MNIST_CLASSES))
    return splits


# -- Split stores: in memory, or cached on disk. ------------------------------------


class _MemoryStore:
    def __init__(self, splits: dict[str, tuple], origin: str):
        self._splits = splits
        self.origin = origin

    def splits(self) -> list[str]:
        return list(self._splits)

    def get(self, split: str):
        if split not in self._splits:
            raise ValueError(
                f"no split {split!r} in {self.origin}; it has {sorted(self._splits)}"
            )
        images, labels, class_names = self._splits[split]
        mean, std = channel_stats(images)
        return images, labels, {"class_names": class_names, "mean": mean, "std": std}

    def info(self, split: str) -> dict:
        return self.get(split)[2]


class _CachedStore:
    """Splits of a folder or tfds source, read through the .npy cache."""

    def __init__(self, name, kind, location: Path, cache_root, num_workers):
        self.kind, self.location = kind, location
        self.origin = str(location)
        self._num_workers = num_workers
        self._memory: dict[str, tuple] = {}  # decoded this call
        self._folder_splits: list[str] | None = None
        self._entry = None
        if cache_root is not None:
            source = location if kind == "folder" else location / "dataset_info.json"
            key = {"name": name, "kind": kind, **datacache.fingerprint(source)}
            self._entry = datacache.entry_dir(cache_root, name, key)

    def _path(self, split: str) -> Path | None:
        return self._entry and datacache.split_dir(self._entry, split)

    def splits(self) -> list[str]:
        if self.kind == "tfds":
            return tfds_source.split_names(self.location)
        if self._folder_splits is None and self._entry is not None:
            self._folder_splits = datacache.read_json(self._entry / "splits.json")
        if self._folder_splits is None:
            self._build_folder()
        return self._folder_splits

    def info(self, split: str) -> dict:
        if split not in self._memory and self._entry is not None:
            if (info := datacache.read_info(self._path(split))) is not None:
                return info
        return self.get(split)[2]

    def get(self, split: str):
        if split in self._memory:
            return self._memory[split]
        if self._entry is not None:
            if (hit := datacache.read_split(self._path(split))) is not None:
                hit[2]["from_cache"] = True
                return hit
        if self.kind == "tfds":
            self._put(split, *_read_tfds(self.location, split))
        else:
            self._build_folder()
            if split not in self._folder_splits:
                raise ValueError(
                    f"no split {split!r} in {self.origin}; it has "
                    f"{sorted(self._folder_splits)}"
                )
        return self._memory[split]

    def _build_folder(self):
        decoded = imagefolder.read(self.location, num_workers=self._num_workers)
        for split, s in decoded.items():
            self._put(split, s.images, s.labels, list(s.class_names))
        self._folder_splits = sorted(decoded)
        if self._entry is not None:  # written last: lists complete entries only
            datacache.write_json(self._entry / "splits.json", self._folder_splits)

    def _put(self, split, images, labels, class_names):
        mean, std = channel_stats(images)
        info = {
            "class_names": class_names,
            "mean": mean,
            "std": std,
            "num_examples": len(labels),
            "origin": self.origin,
        }
        if self._entry is not None:
            datacache.write_split(self._path(split), images, labels, info)
        self._memory[split] = (images, labels, info)


# -- Seeded selection. ------------------------------------------------------------


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _seeded_pick(labels: np.ndarray, num: int, seed: int) -> np.ndarray:
    """Bool mask of `num` examples, stratified by label (see split_validation)."""
    n = len(labels)
    seed_mix = _splitmix64(np.asarray([seed & (2**64 - 1)], np.uint64))
    keys = _splitmix64(np.arange(n, dtype=np.uint64) ^ seed_mix)
    classes, counts = np.unique(labels, return_counts=True)
    exact = num * counts / n
    quota = np.floor(exact).astype(int)
    # Largest remainder; ties go to the smaller label, so the rule is total.
    order = np.lexsort((classes, -(exact - quota)))
    quota[order[: num - quota.sum()]] += 1
    mask = np.zeros(n, bool)
    for cls, q in zip(classes, quota, strict=True):
        members = np.flatnonzero(labels == cls)
        mask[members[np.argsort(keys[members], kind="stable")[:q]]] = True
    return mask
