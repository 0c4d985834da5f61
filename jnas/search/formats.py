"""Post-training format sweeps: trained checkpoints under a grid of formats.

`launch/formats.py` re-evaluates the candidates of a finished search (their
orbax checkpoints and arch JSON from the workdir) with every stored value
rounded to each FloatFormat of a grid, without retraining. Results go to
``<workdir>/formats.jsonl``, one line per (candidate, format), appended and
fsynced, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
from absl import logging

from jnas import arch as arch_lib
from jnas import nn, precision, results
from jnas.population import step as train
from jnas.search import loop as search


def grid(
    exponents: Sequence[int], mantissas: Sequence[int]
) -> list[precision.FloatFormat]:
    """The FloatFormats E x M of the sweep (each checked by FloatFormat)."""
    return [precision.FloatFormat(e, m) for e in exponents for m in mantissas]


@functools.lru_cache(maxsize=8)
def _eval_fn(arch: arch_lib.Arch):
    model = nn.create_model(arch, conv_impl="im2col")

    @jax.jit
    def fn(variables, images, labels, mask):
        state = train.TrainState(
            step=0,
            params=variables["params"],
            batch_stats=variables["batch_stats"],
            opt_state=None,
            lr=0.0,
            key=jax.random.key(0),
            diverged=False,
            grad_mask=None,
        )
        return train.eval_step(state, images, labels, model=model, mask=mask)

    return fn


def accuracy(arch: arch_lib.Arch, variables: Any, ds, batch_size: int) -> float:
    """Accuracy of one network with the given variables on a device dataset."""
    from jnas.data import pipeline

    fn = _eval_fn(arch)
    correct = count = 0
    for images, labels, mask in pipeline.eval_batches(ds, batch_size):
        out = fn(variables, images, labels, mask)
        correct += int(out["correct"])
        count += int(out["count"])
    return correct / count


def sweep(config: Any, workdir: str | Path) -> list[dict[str, Any]]:
    """Evaluates every recorded candidate of `workdir` under the format grid.

    Args:
      config: `experiments/formats.py` (grid and splits).
      workdir: a finished (or partial) search's workdir.

    Returns:
      All rows of ``formats.jsonl`` ({"hash", "format", "bits", split: acc}).
    """
    workdir = Path(workdir)
    records = results.load(workdir)
    if not records:
        raise ValueError(f"{workdir} holds no search results to re-evaluate")
    search_config = ml_collections.ConfigDict(results.read_config(workdir))
    datasets, _ = search.load_data(search_config)
    for split in config.splits:
        if split not in datasets:
            raise ValueError(
                f"config.splits item {split!r} is not one of {', '.join(datasets)}"
            )
    formats = [None, *grid(config.exponents, config.mantissas)]
    done = {(r["hash"], r["format"]) for r in results.format_rows(workdir)}
    for n, record in enumerate(records, 1):
        arch = arch_lib.from_dict(record["arch"])
        variables = results.load_checkpoint(workdir, record["hash"])
        for fmt in formats:
            name = "float32" if fmt is None else str(fmt)
            if (record["hash"], name) in done:
                continue
            rounded = search.quantize_variables(variables, fmt)
            row = {
                "hash": record["hash"],
                "format": name,
                "bits": 32 if fmt is None else fmt.bits,
            }
            for split in config.splits:
                row[split] = accuracy(
                    arch, rounded, datasets[split], config.eval_batch_size
                )
            results.append_format_rows(workdir, [row])
        logging.info("formats: %d/%d candidates swept", n, len(records))
    return results.format_rows(workdir)
