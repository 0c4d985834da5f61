"""The search's progress lines: per round (candidates, ETA, best feasible so far)
and inside each bucket's training (step, throughput, loss, ETA)."""

from __future__ import annotations

import math
import time

import numpy as np
from absl import logging

from jnas import results


class Progress:
    """The progress line: candidates of the round, ETA, best feasible so far.

    Args:
      workdir: the search's folder; every process's results shard is read.
    """

    def __init__(self, workdir):
        # Every process's shard counts: a workdir continued by a different
        # number of processes than made it (or by one of several workers)
        # holds records in shards this process does not write.
        self.workdir = workdir
        self.started = time.perf_counter()
        self.done_at_start = len(results.load(workdir))

    def log(self, round_index: int, round_total: int) -> None:
        # The ETA covers this round's feasible candidates (later rounds'
        # counts are unknown until they are sampled and filtered).
        records = results.load(self.workdir)
        elapsed = time.perf_counter() - self.started
        rate = elapsed / max(1, len(records) - self.done_at_start)
        in_round = sum(1 for r in records if r["round"] == round_index)
        eta = rate * max(0, round_total - in_round)
        # Best on validation; without a validation split (data.num_val = 0)
        # nothing is selected and the line shows the best test accuracy.
        split = "val"
        if records and records[0]["accuracy"]["float32"]["val"] is None:
            split = "test"
        best = max(
            (r for r in records if r.get("feasible")),
            key=lambda r: r["accuracy"]["float32"][split],
            default=None,
        )
        best_text = "none yet"
        if best is not None:
            best_text = (
                f"{best['space']}:{best['law']}#{best['index']} {split} "
                f"{best['accuracy']['float32'][split]:.3f}"
            )
            if best["custom_format"]:
                best_text += (
                    f" ({best['custom_format']}, {best['memory_bytes']['custom']} B)"
                )
        logging.info(
            "round %d: %d/%d feasible candidates trained (%d in the store), "
            "ETA of the round %.0f s; best feasible: %s",
            round_index,
            in_round,
            round_total,
            len(records),
            eta,
            best_text,
        )


class BucketProgress:
    """Progress inside one bucket's training: `engine.train_bucket`'s on_log.

    A line when the bucket starts (its first step compiles, which takes
    seconds), after the first step, and at every metrics fetch (each
    `train.log_every` steps): step / total, candidate-images per second since
    the first step, the mean loss over the bucket's candidates, and the
    bucket's ETA. absl log lines, so they read the same on a terminal, in a
    log file and from every worker process.
    """

    def __init__(self, label: str, size: int, steps: int, batch_size: int):
        self.label, self.size = label, size
        self.steps, self.batch_size = steps, batch_size
        self.started = time.perf_counter()
        self.first_done: float | None = None
        self.first_step = 1
        logging.info(
            "%s: %d candidate(s), %d steps; compiling the step", label, size, steps
        )

    def __call__(self, step: int, record: dict) -> None:
        now = time.perf_counter()
        loss = float(np.nanmean(record["loss"])) if len(record["loss"]) else math.nan
        if self.first_done is None:
            self.first_done, self.first_step = now, step
            logging.info(
                "%s: step %d/%d (compile and %s %.1f s), loss %.3f",
                self.label,
                step,
                self.steps,
                "first step" if step == 1 else "the steps since the snapshot",
                now - self.started,
                loss,
            )
            return
        per_step = (now - self.first_done) / max(1, step - self.first_step)
        logging.info(
            "%s: step %d/%d, %.0f candidate-images/s, loss %.3f, ETA %.0f s",
            self.label,
            step,
            self.steps,
            self.size * self.batch_size / per_step,
            loss,
            per_step * (self.steps - step),
        )
