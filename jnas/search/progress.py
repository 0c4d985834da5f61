"""The search's progress line: candidates of the round, ETA, best feasible so far."""

from __future__ import annotations

import time

from absl import logging

from jnas import results


class Progress:
    """The progress line: candidates of the round, ETA, best feasible so far."""

    def __init__(self, store: results.Store):
        self.store = store
        self.started = time.perf_counter()
        self.done_at_start = len(store)

    def log(self, round_index: int, round_total: int) -> None:
        # The ETA covers this round's feasible candidates (later rounds'
        # counts are unknown until they are sampled and filtered).
        records = self.store.records()
        elapsed = time.perf_counter() - self.started
        rate = elapsed / max(1, len(records) - self.done_at_start)
        in_round = sum(1 for r in records if r["round"] == round_index)
        eta = rate * max(0, round_total - in_round)
        best = max(
            (r for r in records if r.get("feasible")),
            key=lambda r: r["accuracy"]["float32"]["val"],
            default=None,
        )
        best_text = "none yet"
        if best is not None:
            best_text = (
                f"{best['space']}:{best['law']}#{best['index']} val "
                f"{best['accuracy']['float32']['val']:.3f} "
                f"({best['custom_format']}, {best['memory_bytes']['custom']} B)"
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
