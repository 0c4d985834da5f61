"""Datasets: loading (TFDS, image folders and archives, bundled sets), the .npy
cache, and the on-device batch pipeline.

Modules: `datasets` (`load`, validation split, bundled sets), `imagefolder`
(directory and tar reading), `cache` (the .npy cache), `tfds_source` (prepared
TFDS datasets), `pipeline` (device batches, augmentation, normalisation).
"""

from jnas.data.datasets import (
    BUNDLED,
    FASHION_MNIST_DIR,
    FIT_METHODS,
    SOURCES,
    DatasetNotFoundError,
    Metadata,
    channel_stats,
    default_cache_dir,
    default_tfds_dir,
    fit_images,
    load,
    load_train_val_test,
    locate,
    split_validation,
)

__all__ = [
    "BUNDLED",
    "FASHION_MNIST_DIR",
    "FIT_METHODS",
    "SOURCES",
    "DatasetNotFoundError",
    "Metadata",
    "channel_stats",
    "default_cache_dir",
    "default_tfds_dir",
    "fit_images",
    "load",
    "load_train_val_test",
    "locate",
    "split_validation",
]
