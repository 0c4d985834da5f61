"""Reading datasets prepared by TensorFlow Datasets, and preparing them on request.

tfds itself, asked for a dataset that is not prepared and without network,
first fails on a dependency it does not declare (importlib_resources), then
retries the download for minutes; with download=False it raises a bare
AssertionError. So jnas looks at the files first (`find_prepared`, no tfds
import) and only calls tfds to read a prepared dataset or, when the user asked
for it, to download one (`prepare`). `jnas.data` turns failures into one clear
message.

Prepared datasets in the array_record format are read without TensorFlow;
the tfrecord format (what `tfds.load` writes by default) needs tensorflow.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np

# Modules tfds needs to download and prepare a dataset (importlib_resources is
# not declared by tensorflow-datasets; tensorflow encodes the images).
PREPARE_MODULES = ("importlib_resources", "tensorflow")

log = logging.getLogger(__name__)


def _version_key(path: Path) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in path.name.split("."))


def find_prepared(name: str, tfds_dir: Path) -> Path | None:
    """The newest prepared version directory of a dataset, found without tfds.

    Args:
      name: tfds name, optionally with a pinned version ("cifar10:3.0.2").
      tfds_dir: the tfds data directory.

    Returns:
      `<tfds_dir>/<name>[/<config>]/<version>`, or None if not prepared.
    """
    base_name, _, version = name.partition(":")
    base = tfds_dir / base_name
    if not base.is_dir():
        return None
    infos = list(base.glob("*/dataset_info.json")) + list(
        base.glob("*/*/dataset_info.json")  # datasets with builder configs
    )
    if version:
        infos = [p for p in infos if p.parent.name == version]
    return max((p.parent for p in infos), key=_version_key, default=None)


def missing_prepare_modules() -> list[str]:
    """The modules in `PREPARE_MODULES` that are not installed."""
    return [m for m in PREPARE_MODULES if importlib.util.find_spec(m) is None]


def prepare(name: str, tfds_dir: Path) -> Path:
    """Downloads and prepares a dataset with tfds (needs internet).

    Args:
      name: tfds name.
      tfds_dir: the tfds data directory.

    Returns:
      The prepared version directory.

    Raises:
      ModuleNotFoundError: a module of `PREPARE_MODULES` is missing (checked
        before anything is downloaded).
      Exception: whatever tfds raises (no network: a ConnectionError after its
        retries).
    """
    if missing := missing_prepare_modules():
        raise ModuleNotFoundError(
            f"TensorFlow Datasets needs {', '.join(missing)} to prepare {name!r}",
            name=missing[0],
        )
    import tensorflow_datasets as tfds  # optional, and slow to import

    log.info("downloading and preparing %s into %s", name, tfds_dir)
    tfds.builder(name, data_dir=str(tfds_dir)).download_and_prepare()
    return find_prepared(name, tfds_dir)


def split_names(version_dir: Path) -> list[str]:
    """The splits of a prepared dataset, read from its dataset_info.json."""
    info = json.loads((version_dir / "dataset_info.json").read_text())
    return [s["name"] for s in info.get("splits", [])]


def read_split(version_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray, list]:
    """Reads a whole split of a prepared dataset into host arrays.

    Args:
      version_dir: from `find_prepared`.
      split: a split name of the dataset.

    Returns:
      images uint8 [N, H, W, C], labels int32 [N], class names.

    Raises:
      ValueError: unknown split.
      ModuleNotFoundError: the format needs a module that is not installed.
    """
    import tensorflow_datasets as tfds  # optional, and slow to import

    builder = tfds.builder_from_directory(str(version_dir))
    info = builder.info
    if split not in info.splits:
        raise ValueError(
            f"split {split!r} is not in {version_dir}; it has {sorted(info.splits)}"
        )
    image_key, label_key = info.supervised_keys or ("image", "label")
    class_names = list(info.features[label_key].names)
    if info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
        source = builder.as_data_source(split)
        rows = source.__getitems__(range(len(source)))
        images = np.stack([np.asarray(r[image_key]) for r in rows])
        labels = np.asarray([r[label_key] for r in rows])
    else:
        dataset = builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
        images, labels = tfds.as_numpy(dataset)
    if images.ndim == 3:  # grayscale stored without a channel axis
        images = images[..., None]
    return images.astype(np.uint8), labels.astype(np.int32), class_names
