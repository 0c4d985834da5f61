"""``summary.md``: the search's counts, best feasible models and budget sweeps.

A model is feasible in a format when its memory in that format is within the
memory budget and its latency within the latency budget (a missing latency
fails a given latency budget). One function per table; `write_summary`
assembles them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from jnas import results, storage
from jnas.report import pareto
from jnas.report.records import (
    FORMATS,
    KIB,
    NoDataError,
    Record,
    accuracies,
    choose_split,
    diverged,
    latencies,
    latency_label,
    memories,
)

# The paper's CIFAR-10 accuracies at its memory budget: the established IoT
# model, then the search's best float32, half and per-model-format models.
# Landmarks of that dataset only (`targets_for`).
PAPER_TARGETS = (0.7064, 0.7487, 0.8207, 0.8345)
PAPER_DATASET = "cifar10"
DEFAULT_SWEEP_BYTES = tuple(kib * KIB for kib in (16, 32, 64, 128, 256, 1024))

Columns = Mapping[str, np.ndarray]  # format -> one value per record


def check_budget(name: str, value: float | None) -> float | None:
    """A budget as a positive float, or None (no budget)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return float(value)


def targets_for(dataset: str | None) -> tuple[float, ...]:
    """The paper's accuracy landmarks for its dataset (CIFAR-10), else none."""
    return PAPER_TARGETS if dataset == PAPER_DATASET else ()


def _fmt_acc(a: float) -> str:
    return f"{100 * a:.2f}%"


def _cell(records, i, acc, mem, lat, fmt) -> str:
    if i is None:
        return "–"
    custom = records[i].get("custom_format") if fmt == "custom" else None
    suffix = f" {custom}" if custom else ""
    latency = "" if np.isnan(lat[i]) else f", {lat[i]:.1f} ms"
    return (
        f"{_fmt_acc(acc[i])} ({results.model_name(records[i])}{suffix}, "
        f"{mem[i] / KIB:.1f} KiB{latency})"
    )


def _per_format_head(title: str, first: str, formats: Iterable[str]) -> list[str]:
    """A section title and the head of a table with one column per format."""
    formats = list(formats)
    return [
        f"## {title}",
        "",
        f"| {first} | " + " | ".join(formats) + " |",
        "|---" * (len(formats) + 1) + "|",
    ]


def header_lines(
    records: Sequence[Record],
    split: str,
    memory_budget: float | None,
    latency_budget: float | None,
    dataset: str | None = None,
) -> list[str]:
    """The title and the run's settings."""
    budget_text = f"{memory_budget / KIB:g} KiB" if memory_budget else "none"
    lat_text = f"{latency_budget:g} ms" if latency_budget else "none"
    n_diverged = int(diverged(records).sum())
    return [
        "# Search summary",
        "",
        f"- candidates: {len(records)}"
        + (
            f" ({n_diverged} diverged: never counted as feasible or best, "
            "listed at the end)"
            if n_diverged
            else ""
        ),
        f"- dataset: {dataset or 'not recorded'}",
        f"- accuracy: {split} split",
        f"- memory budget: {budget_text} (1 KiB = 1024 bytes of parameters)",
        f"- latency budget: {lat_text} ({latency_label(records)})",
    ]


def feasible_table(
    acc: Columns, mem: Columns, lat_ok: np.ndarray, mem_cap: float
) -> list[str]:
    """Per format: candidates with an accuracy, within memory, latency, both."""
    lines = [
        "## Feasible candidates",
        "",
        "| format | with accuracy | memory ≤ budget | latency ≤ budget | both |",
        "|---|---|---|---|---|",
    ]
    for f in acc:
        has = ~np.isnan(acc[f]) & ~np.isnan(mem[f])
        m_ok = has & (mem[f] <= mem_cap)
        lines.append(
            f"| {f} | {int(has.sum())} | {int(m_ok.sum())} | "
            f"{int((has & lat_ok).sum())} | {int((m_ok & lat_ok).sum())} |"
        )
    return lines


def best_table(
    records: Sequence[Record],
    acc: Columns,
    mem: Columns,
    lat: np.ndarray,
    lat_ok: np.ndarray | None,
    mem_cap: float,
) -> list[str]:
    """Per format: the best model within memory (and within latency, if set)."""
    lines = [
        "## Best feasible model per format",
        "",
        "| format | constraints | accuracy (model, memory, latency) |",
        "|---|---|---|",
    ]
    for f in acc:
        i = pareto.best_under(mem[f], acc[f], mem_cap)
        lines.append(f"| {f} | memory | {_cell(records, i, acc[f], mem[f], lat, f)} |")
        if lat_ok is not None:
            j = pareto.best_under(mem[f], np.where(lat_ok, acc[f], np.nan), mem_cap)
            lines.append(
                f"| {f} | memory + latency | "
                f"{_cell(records, j, acc[f], mem[f], lat, f)} |"
            )
    return lines


def sweep_table(
    records: Sequence[Record],
    acc: Columns,
    mem: Columns,
    lat: np.ndarray,
    ok: np.ndarray,
    title: str,
    memory_sweep: Iterable[float],
) -> list[str]:
    """The best model of each format at each memory budget of the sweep."""
    lines = _per_format_head(f"Memory budget sweep ({title})", "memory budget", acc)
    for budget in memory_sweep:
        cells = [
            _cell(
                records,
                pareto.best_under(mem[f], np.where(ok, acc[f], np.nan), budget),
                acc[f],
                mem[f],
                lat,
                f,
            )
            for f in acc
        ]
        lines.append(f"| {budget / KIB:g} KiB | " + " | ".join(cells) + " |")
    return lines


def reach_table(
    acc: Columns, mem: Columns, ok: np.ndarray, title: str, targets: Iterable[float]
) -> list[str]:
    """The smallest memory at which each format's front reaches each target."""
    title = f"Memory at which the front reaches an accuracy ({title})"
    lines = _per_format_head(title, "accuracy", acc)
    for target in targets:
        cells = []
        for f in acc:
            reach = pareto.budget_to_reach(mem[f], np.where(ok, acc[f], np.nan), target)
            cells.append("not reached" if reach is None else f"{reach / KIB:.1f} KiB")
        lines.append(f"| {_fmt_acc(target)} | " + " | ".join(cells) + " |")
    return lines


def diverged_table(records: Sequence[Record]) -> list[str]:
    """The candidates whose training diverged, apart from every ranking."""
    rows = [r for r, d in zip(records, diverged(records), strict=True) if d]
    if not rows:
        return []
    lines = [
        "## Diverged candidates (not feasible, not ranked)",
        "",
        "| model | final training loss |",
        "|---|---|",
    ]
    for r in rows:
        loss = (r.get("train") or {}).get("final_loss")
        lines.append(
            f"| {results.model_name(r)} | {loss if loss is not None else '–'} |"
        )
    return lines


def write_summary(
    records: Sequence[Record],
    outdir: str | Path,
    *,
    memory_budget: float | None = None,
    latency_budget: float | None = None,
    memory_sweep: Iterable[float] = DEFAULT_SWEEP_BYTES,
    targets: Iterable[float] = (),
    split: str | None = None,
    dataset: str | None = None,
) -> Path:
    """Writes ``summary.md``: counts, best feasible models, budget sweeps.

    Sections: candidates and feasible counts per format; the best feasible
    model per format (memory budget alone and with the latency budget); the
    best model at each budget of ``memory_sweep``; the smallest memory at which
    each format's front reaches each accuracy in ``targets`` (when given);
    the diverged candidates, apart.

    Args:
      records: result records.
      outdir: output folder.
      memory_budget: bytes, or None (no memory constraint).
      latency_budget: ms, or None (no latency constraint).
      memory_sweep: budgets in bytes for the sweep table.
      targets: accuracies (fractions) for the reach table; none by default
        (landmarks belong to their dataset: ``targets_for(dataset)``).
      split: "val" or "test"; default ``choose_split(records)``.
      dataset: the data's name, for the header (None: "not recorded").

    Returns:
      The path of summary.md.

    Raises:
      NoDataError: there are no records.
      ValueError: a non-positive budget.
    """
    memory_budget = check_budget("memory_budget", memory_budget)
    latency_budget = check_budget("latency_budget", latency_budget)
    if not records:
        raise NoDataError("write_summary: no records")
    split = split or choose_split(records)
    lat = latencies(records)
    everyone = np.ones(len(lat), bool)
    lat_ok = lat <= latency_budget if latency_budget is not None else everyone
    mem_cap = memory_budget if memory_budget is not None else math.inf
    acc, mem = {}, {}
    for f in FORMATS:
        a, m = accuracies(records, f, split), memories(records, f)
        if np.any(~np.isnan(a) & ~np.isnan(m)):
            acc[f], mem[f] = a, m
    constraint_sets = [("memory only", everyone)]
    if latency_budget is not None:
        constraint_sets.append((f"with latency ≤ {latency_budget:g} ms", lat_ok))
    sections = [
        header_lines(records, split, memory_budget, latency_budget, dataset),
        feasible_table(acc, mem, lat_ok, mem_cap),
        best_table(records, acc, mem, lat, lat_ok if latency_budget else None, mem_cap),
    ]
    sections += [
        sweep_table(records, acc, mem, lat, ok, title, memory_sweep)
        for title, ok in constraint_sets
    ]
    targets = tuple(targets)
    if targets:
        sections += [
            reach_table(acc, mem, ok, title, targets) for title, ok in constraint_sets
        ]
    if any(diverged(records)):
        sections.append(diverged_table(records))
    outdir = storage.path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / "summary.md"
    storage.atomic_write(path, "\n\n".join("\n".join(s) for s in sections) + "\n")
    return path
