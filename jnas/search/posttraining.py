"""The post-training format sweep of a finished search's checkpoints.

`sweep` (``launch/formats.py``) re-evaluates the candidates of a finished
search (their checkpoints and arch JSON from the workdir) under each format
of a grid, without retraining. Its rows go to the workdir's
``formats.jsonl`` (`jnas.results`), one per (candidate, format), appended and
fsynced, so a killed sweep resumes where it stopped.

Each network is evaluated as the search evaluated it after training: by the
population engine's evaluation program (`engine.evaluate` of a one-member
"sequential" bucket holding the checkpoint's variables, `weight_format=` the
format), so one path measures a trained network's accuracy. The only
rounding is the sweep's format: the model has no QAT format of its own (a
QAT checkpoint holds float32 values, which the sweep rounds; at the QAT
format that is the network as trained).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from jnas import arch as arch_lib
from jnas import data, precision, results, storage
from jnas.data import pipeline
from jnas.population import buckets, engine
from jnas.search import config as config_lib

# The sweep's convolution lowering (`nn_ops.CONV_IMPLS`): the one its rows have
# always been computed with. Another lowering is the same maths but may sum in
# another order, and a resumed sweep must not mix rows of two.
CONV_IMPL = "im2col"


def grid(
    exponents: Sequence[int], mantissas: Sequence[int]
) -> list[precision.FloatFormat]:
    """The FloatFormats E x M of the sweep (each checked by FloatFormat)."""
    return [precision.FloatFormat(e, m) for e in exponents for m in mantissas]


def trained(
    arch: arch_lib.Arch, variables: Any, recipe: engine.Recipe
) -> engine.BucketTrainer:
    """A trained network as the engine holds it: a one-member "sequential"
    bucket whose state is `variables` ({"params", "batch_stats"}), for
    `engine.evaluate`. (Its key and learning rate are never used: nothing
    trains it, and the sweep's models round to nearest.)"""
    return engine.BucketTrainer(
        buckets.make_bucket([arch]),
        recipe,
        keys=[jax.random.key(0)],
        lrs=[0.0],
        strategy="sequential",
        conv_impl=CONV_IMPL,
        variables=[variables],
    )


def split_test_halves(test: pipeline.DeviceDataset, meta: Any) -> dict[str, Any]:
    """The test split as two seeded, class-stratified halves "test_a", "test_b".

    For a search trained without a validation split (``data.num_val = 0``):
    a per-model format chosen on "test_a" is reported on "test_b", so the
    chosen format's accuracy is not measured on the images that chose it.
    """
    x, y = np.asarray(test.images), np.asarray(test.labels)
    xb, yb, xa, ya = data.split_validation(x, y, len(y) // 2, seed=0)
    return {
        "test_a": pipeline.put_on_device(xa, ya, meta),
        "test_b": pipeline.put_on_device(xb, yb, meta),
    }


def sweep(config: Any, workdir: str | Path) -> list[dict[str, Any]]:
    """Evaluates every recorded candidate of `workdir` under the format grid.

    Args:
      config: `experiments/formats.py` (grid and splits; "test_a" and
        "test_b" are the halves of the test split, `split_test_halves`).
      workdir: a finished (or partial) search's workdir.

    Returns:
      All rows of ``formats.jsonl`` ({"hash", "format", "bits", split: acc}).

    Raises:
      results.CheckpointError: after sweeping every other candidate (their
        rows are on disk), naming each candidate skipped because its
        checkpoint is missing or unreadable.
    """
    workdir = storage.path(workdir)
    records = results.load(workdir)
    if not records:
        raise ValueError(f"{workdir} holds no search results to re-evaluate")
    search_config = ml_collections.ConfigDict(results.read_config(workdir))
    # The search's recipe without its model options: a QAT format there
    # would round every format's values a second time (module docstring).
    recipe = dataclasses.replace(
        config_lib.make_recipe(search_config), model_options=()
    )
    datasets, meta = config_lib.load_data(search_config)
    if {"test_a", "test_b"} & set(config.splits):
        datasets.update(split_test_halves(datasets["test"], meta))
    for split in config.splits:
        if split not in datasets:
            raise ValueError(
                f"config.splits item {split!r} is not one of {', '.join(datasets)}"
            )
    formats = [None, *grid(config.exponents, config.mantissas)]
    done = {(r["hash"], r["format"]) for r in results.format_rows(workdir)}
    names = ["float32" if f is None else str(f) for f in formats]
    skipped = []
    for n, record in enumerate(records, 1):
        if all((record["hash"], name) in done for name in names):
            continue  # swept by an earlier run: its checkpoint is not needed
        arch = arch_lib.from_dict(record["arch"])
        try:
            network = trained(
                arch, results.load_checkpoint(workdir, record["hash"]), recipe
            )
        except results.CheckpointError as e:
            # One bad checkpoint must not stop the sweep of the others.
            label = results.model_name(record)
            skipped.append(f"{label}: {e}")
            logging.warning("formats: skipped %s: %s", label, e)
            continue
        for fmt, name in zip(formats, names, strict=True):
            if (record["hash"], name) in done:
                continue
            row = {
                "hash": record["hash"],
                "format": name,
                "bits": 32 if fmt is None else fmt.bits,
            }
            for split in config.splits:
                (row[split],) = engine.evaluate(
                    network,
                    datasets[split],
                    batch_size=config.eval_batch_size,
                    weight_format=fmt,
                ).tolist()
            results.append_format_rows(workdir, [row])
        logging.info("formats: %d/%d candidates swept", n, len(records))
    if skipped:
        raise results.CheckpointError(
            f"swept {len(records) - len(skipped)} of {len(records)} candidates "
            f"(rows in {workdir / results.FORMATS}); skipped {len(skipped)} whose "
            "checkpoint is missing or unreadable:\n  " + "\n  ".join(skipped)
        )
    return results.format_rows(workdir)
