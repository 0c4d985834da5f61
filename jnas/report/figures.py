"""Figures and the summary table of a search, from its result records alone.

Every function takes the records of ``jnas.results.load(workdir)`` (schema in
``jnas.results``) and writes into ``outdir``; figures are written as PNG and
SVG through matplotlib's Agg canvas (no pyplot, no global backend switch).
A figure with nothing to draw raises ``NoDataError`` (a ValueError) instead
of writing an empty plot; ``write_all`` skips those and writes the rest.

Conventions: memory is in KiB (1 KiB = 1024 bytes); accuracy is shown in
percent; a record's latency is its measured value where it has one, else its
prediction; the accuracy split is "test" when any record has a test accuracy,
else "val" (never mixed within one call).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends import backend_agg
from matplotlib.figure import Figure

from jnas.report import pareto

Record = Mapping[str, Any]
FORMATS = ("float32", "half", "custom")
KIB = 1024
_COLORS = {"float32": "C0", "half": "C1", "custom": "C2"}
_LABELS = {"float32": "float32", "half": "half (e5m10)", "custom": "custom ⟨E,M⟩"}
# The paper's CIFAR-10 accuracies at its memory budget: the established IoT
# model, then the search's best float32, half and per-model-format models.
PAPER_TARGETS = (0.7064, 0.7487, 0.8207, 0.8345)
DEFAULT_SWEEP_BYTES = tuple(kib * KIB for kib in (16, 32, 64, 128, 256, 1024))
# Where launch/search.py and launch/figures.py put a workdir's figures.
FIGURES_DIR = "figures"


class NoDataError(ValueError):
    """The records hold nothing that a figure or table could show."""


# -- Reading records. ------------------------------------------------------------


def _get(record: Record, *keys: str) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def choose_split(records: Sequence[Record]) -> str:
    """Returns "test" if any record has a test accuracy, else "val"."""
    for record in records:
        for fmt in FORMATS:
            if _get(record, "accuracy", fmt, "test") is not None:
                return "test"
    return "val"


def accuracies(records: Sequence[Record], fmt: str, split: str) -> np.ndarray:
    """Returns the accuracy of every record in ``fmt`` (NaN where missing)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if split not in ("val", "test"):
        raise ValueError(f"unknown split {split!r}; allowed: val, test")
    return np.array([_num(_get(r, "accuracy", fmt, split)) for r in records])


def memories(records: Sequence[Record], fmt: str) -> np.ndarray:
    """Returns the memory of every record in ``fmt``, in bytes (NaN if missing)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    return np.array([_num(_get(r, "memory_bytes", fmt)) for r in records])


def latencies(records: Sequence[Record]) -> np.ndarray:
    """Returns each record's latency in ms: measured, else predicted, else NaN."""
    out = []
    for r in records:
        measured = _get(r, "latency_ms", "measured")
        out.append(
            _num(
                measured if measured is not None else _get(r, "latency_ms", "predicted")
            )
        )
    return np.array(out)


def _latency_label(records: Sequence[Record]) -> str:
    measured = any(_get(r, "latency_ms", "measured") is not None for r in records)
    predicted = any(_get(r, "latency_ms", "predicted") is not None for r in records)
    if measured and predicted:
        return "latency [ms] (measured, else predicted)"
    return "measured latency [ms]" if measured else "predicted latency [ms]"


def _model_name(record: Record) -> str:
    return f"{record.get('space')} {record.get('law')} #{record.get('index')}"


# -- Figures. ------------------------------------------------------------------------


def _new_figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    backend_agg.FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, outdir: str | Path, name: str) -> list[Path]:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = [outdir / f"{name}.png", outdir / f"{name}.svg"]
    fig.savefig(paths[0], dpi=150, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"Date": None})
    return paths


def _check_budget(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return float(value)


def _fronts(ax, costs_by_fmt: Mapping[str, np.ndarray], accs_by_fmt) -> int:
    """Scatters every format's points and draws its front; returns points drawn.

    Formats with identical points (e.g. half keeping float32's accuracy on a
    latency axis) are drawn once, with a joint label.
    """
    groups: list[tuple[list[str], np.ndarray, np.ndarray]] = []
    for fmt, cost in costs_by_fmt.items():
        acc = accs_by_fmt[fmt]
        ok = ~np.isnan(cost) & ~np.isnan(acc) & (cost > 0)
        if not ok.any():
            continue
        cost, acc = np.where(ok, cost, np.nan), np.where(ok, acc, np.nan)
        for names, c, a in groups:
            if np.array_equal(c, cost, equal_nan=True) and np.array_equal(
                a, acc, equal_nan=True
            ):
                names.append(fmt)
                break
        else:
            groups.append(([fmt], cost, acc))
    drawn = 0
    for names, cost, acc in groups:
        ok = ~np.isnan(cost)
        drawn += int(ok.sum())
        color = _COLORS[names[0]]
        ax.scatter(cost[ok], 100 * acc[ok], s=8, alpha=0.3, color=color, lw=0)
        idx = pareto.front(cost, acc)
        label = " = ".join(_LABELS[f] for f in names)
        ax.step(
            cost[idx],
            100 * acc[idx],
            where="post",
            color=color,
            marker="o",
            ms=3,
            label=f"{label} front ({int(ok.sum())} models)",
        )
    return drawn


def _finish_front_axes(
    ax, xlabel: str, split: str, budget: tuple[float, str] | None
) -> None:
    """Log cost axis, labels, grid, legend and the budget line (x, label)."""
    if budget is not None:
        ax.axvline(budget[0], color="k", ls="--", lw=1, label=budget[1])
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{split} accuracy [%]")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def accuracy_vs_memory(
    records: Sequence[Record],
    outdir: str | Path,
    *,
    memory_budget: float | None = None,
    split: str | None = None,
) -> list[Path]:
    """Accuracy against parameter memory, with float32, half and custom fronts.

    Args:
      records: result records.
      outdir: output folder.
      memory_budget: bytes; drawn as a vertical line when given.
      split: "val" or "test"; default ``choose_split(records)``.

    Returns:
      The written paths (``accuracy_vs_memory.png`` and ``.svg``).

    Raises:
      NoDataError: no record has both a memory and an accuracy in any format.
      ValueError: a non-positive budget.
    """
    memory_budget = _check_budget("memory_budget", memory_budget)
    split = split or choose_split(records)
    fig, ax = _new_figure()
    costs = {fmt: memories(records, fmt) / KIB for fmt in FORMATS}
    accs = {fmt: accuracies(records, fmt, split) for fmt in FORMATS}
    if not _fronts(ax, costs, accs):
        raise NoDataError(
            f"accuracy_vs_memory: none of {len(records)} records has a memory and "
            f"a {split} accuracy in any of {FORMATS}"
        )
    budget = None
    if memory_budget is not None:
        budget = (memory_budget / KIB, f"memory budget {memory_budget / KIB:g} KiB")
    _finish_front_axes(ax, "parameter memory [KiB]", split, budget)
    return _save(fig, outdir, "accuracy_vs_memory")


def accuracy_vs_latency(
    records: Sequence[Record],
    outdir: str | Path,
    *,
    latency_budget: float | None = None,
    split: str | None = None,
) -> list[Path]:
    """Accuracy against latency (measured, else predicted), fronts per format.

    Args:
      records: result records.
      outdir: output folder.
      latency_budget: ms; drawn as a vertical line when given.
      split: "val" or "test"; default ``choose_split(records)``.

    Returns:
      The written paths (``accuracy_vs_latency.png`` and ``.svg``).

    Raises:
      NoDataError: no record has both a latency and an accuracy.
      ValueError: a non-positive budget.
    """
    latency_budget = _check_budget("latency_budget", latency_budget)
    split = split or choose_split(records)
    fig, ax = _new_figure()
    lat = latencies(records)
    costs = {fmt: lat for fmt in FORMATS}
    accs = {fmt: accuracies(records, fmt, split) for fmt in FORMATS}
    if not _fronts(ax, costs, accs):
        raise NoDataError(
            f"accuracy_vs_latency: none of {len(records)} records has a latency "
            f"and a {split} accuracy"
        )
    budget = None
    if latency_budget is not None:
        budget = (latency_budget, f"latency budget {latency_budget:g} ms")
    _finish_front_axes(ax, _latency_label(records), split, budget)
    return _save(fig, outdir, "accuracy_vs_latency")


def predicted_vs_measured(records: Sequence[Record], outdir: str | Path) -> list[Path]:
    """Predicted against measured latency, with y = x and ±10% lines.

    Args:
      records: result records; those with both latencies are drawn.
      outdir: output folder.

    Returns:
      The written paths (``latency_predicted_vs_measured.png`` and ``.svg``).

    Raises:
      NoDataError: no record has both a predicted and a measured latency.
    """
    pred = np.array([_num(_get(r, "latency_ms", "predicted")) for r in records])
    meas = np.array([_num(_get(r, "latency_ms", "measured")) for r in records])
    ok = ~np.isnan(pred) & ~np.isnan(meas) & (pred > 0) & (meas > 0)
    if not ok.any():
        raise NoDataError(
            f"predicted_vs_measured: none of {len(records)} records has both a "
            "predicted and a measured latency"
        )
    pred, meas = pred[ok], meas[ok]
    rel = pred / meas - 1
    within = float(np.mean(np.abs(rel) <= 0.1))
    rmspe = float(np.sqrt(np.mean(rel**2)))
    fig, ax = _new_figure()
    ax.scatter(meas, pred, s=10, alpha=0.6, lw=0, label=f"{ok.sum()} models")
    lo, hi = min(meas.min(), pred.min()) / 1.2, max(meas.max(), pred.max()) * 1.2
    line = np.array([lo, hi])
    ax.plot(line, line, color="k", lw=1, label="y = x")
    ax.plot(line, 1.1 * line, color="k", lw=0.8, ls="--", label="±10%")
    ax.plot(line, 0.9 * line, color="k", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency [ms]")
    ax.set_ylabel("predicted latency [ms]")
    ax.set_title(
        f"within ±10%: {100 * within:.1f}%, RMSPE {100 * rmspe:.1f}%", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, outdir, "latency_predicted_vs_measured")


def accuracy_vs_bits(records: Sequence[Record], outdir: str | Path) -> list[Path]:
    """Validation accuracy against format bits, from each record's format_grid.

    One faint line per model (its best accuracy at each bit count) and the
    median over models in bold.

    Args:
      records: result records; those with a non-empty "format_grid" are drawn.
      outdir: output folder.

    Returns:
      The written paths (``accuracy_vs_bits.png`` and ``.svg``).

    Raises:
      NoDataError: no record has a format_grid entry with bits and val.
    """
    per_model = []
    for r in records:
        best: dict[int, float] = {}
        for entry in r.get("format_grid") or ():
            bits, val = entry.get("bits"), entry.get("val")
            if bits is None or val is None or math.isnan(val):
                continue
            best[int(bits)] = max(best.get(int(bits), -math.inf), float(val))
        if best:
            per_model.append(best)
    if not per_model:
        raise NoDataError(
            f"accuracy_vs_bits: none of {len(records)} records has a format_grid"
        )
    fig, ax = _new_figure()
    by_bits: dict[int, list[float]] = {}
    for best in per_model:
        bits = sorted(best)
        ax.plot(bits, [100 * best[b] for b in bits], color="C0", alpha=0.15, lw=0.8)
        for b in bits:
            by_bits.setdefault(b, []).append(best[b])
    bits = sorted(by_bits)
    ax.plot(
        bits,
        [100 * np.median(by_bits[b]) for b in bits],
        color="C3",
        lw=2,
        marker="o",
        label=f"median of {len(per_model)} models",
    )
    ax.set_xlabel("format bits (sign + E + M)")
    ax.set_ylabel("val accuracy [%]")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, outdir, "accuracy_vs_bits")


# -- Summary table. --------------------------------------------------------------


def _fmt_acc(a: float) -> str:
    return f"{100 * a:.2f}%"


def _cell(records, i, acc, mem, lat, fmt) -> str:
    if i is None:
        return "–"
    custom = records[i].get("custom_format") if fmt == "custom" else None
    suffix = f" {custom}" if custom else ""
    return (
        f"{_fmt_acc(acc[i])} ({_model_name(records[i])}{suffix}, "
        f"{mem[i] / KIB:.1f} KiB, {lat[i]:.1f} ms)"
    )


def write_summary(
    records: Sequence[Record],
    outdir: str | Path,
    *,
    memory_budget: float | None = None,
    latency_budget: float | None = None,
    memory_sweep: Iterable[float] = DEFAULT_SWEEP_BYTES,
    targets: Iterable[float] = PAPER_TARGETS,
    split: str | None = None,
) -> Path:
    """Writes ``summary.md``: counts, best feasible models, budget sweeps.

    A model is feasible in a format when its memory in that format is within
    ``memory_budget`` and its latency within ``latency_budget`` (a missing
    latency fails a given latency budget). Sections: candidates and feasible
    counts per format; the best feasible model per format (memory budget alone
    and with the latency budget); the best model at each budget of
    ``memory_sweep``; the smallest memory at which each format's front reaches
    each accuracy in ``targets``.

    Args:
      records: result records.
      outdir: output folder.
      memory_budget: bytes, or None (no memory constraint).
      latency_budget: ms, or None (no latency constraint).
      memory_sweep: budgets in bytes for the sweep table.
      targets: accuracies (fractions) for the reach table.
      split: "val" or "test"; default ``choose_split(records)``.

    Returns:
      The path of summary.md.

    Raises:
      NoDataError: there are no records.
      ValueError: a non-positive budget.
    """
    memory_budget = _check_budget("memory_budget", memory_budget)
    latency_budget = _check_budget("latency_budget", latency_budget)
    if not records:
        raise NoDataError("write_summary: no records")
    split = split or choose_split(records)
    lat = latencies(records)
    lat_ok = (
        lat <= latency_budget if latency_budget is not None else np.ones(len(lat), bool)
    )
    mem_cap = memory_budget if memory_budget is not None else math.inf
    formats = [
        f
        for f in FORMATS
        if np.any(
            ~np.isnan(accuracies(records, f, split)) & ~np.isnan(memories(records, f))
        )
    ]
    acc = {f: accuracies(records, f, split) for f in formats}
    mem = {f: memories(records, f) for f in formats}
    lines = ["# Search summary", ""]
    budget_text = f"{memory_budget / KIB:g} KiB" if memory_budget else "none"
    lat_text = f"{latency_budget:g} ms" if latency_budget else "none"
    lines += [
        f"- candidates: {len(records)}",
        f"- accuracy: {split} split",
        f"- memory budget: {budget_text} (1 KiB = 1024 bytes of parameters)",
        f"- latency budget: {lat_text} ({_latency_label(records)})",
        "",
        "## Feasible candidates",
        "",
        "| format | with accuracy | memory ≤ budget | latency ≤ budget | both |",
        "|---|---|---|---|---|",
    ]
    for f in formats:
        has = ~np.isnan(acc[f]) & ~np.isnan(mem[f])
        m_ok = has & (mem[f] <= mem_cap)
        lines.append(
            f"| {f} | {int(has.sum())} | {int(m_ok.sum())} | "
            f"{int((has & lat_ok).sum())} | {int((m_ok & lat_ok).sum())} |"
        )
    lines += [
        "",
        "## Best feasible model per format",
        "",
        "| format | constraints | accuracy (model, memory, latency) |",
        "|---|---|---|",
    ]
    for f in formats:
        i = pareto.best_under(mem[f], acc[f], mem_cap)
        lines.append(f"| {f} | memory | {_cell(records, i, acc[f], mem[f], lat, f)} |")
        if latency_budget is not None:
            j = pareto.best_under(mem[f], np.where(lat_ok, acc[f], np.nan), mem_cap)
            lines.append(
                f"| {f} | memory + latency | "
                f"{_cell(records, j, acc[f], mem[f], lat, f)} |"
            )
    constraint_sets = [("memory only", np.ones(len(lat), bool))]
    if latency_budget is not None:
        constraint_sets.append((f"with latency ≤ {latency_budget:g} ms", lat_ok))
    header = "| " + " | ".join(formats) + " |"
    rule = "|---" * (len(formats) + 1) + "|"
    for title, ok in constraint_sets:
        lines += [
            "",
            f"## Memory budget sweep ({title})",
            "",
            "| memory budget " + header,
            rule,
        ]
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
                for f in formats
            ]
            lines.append(f"| {budget / KIB:g} KiB | " + " | ".join(cells) + " |")
    for title, ok in constraint_sets:
        lines += [
            "",
            f"## Memory at which the front reaches an accuracy ({title})",
            "",
            "| accuracy " + header,
            rule,
        ]
        for target in targets:
            cells = []
            for f in formats:
                reach = pareto.budget_to_reach(
                    mem[f], np.where(ok, acc[f], np.nan), target
                )
                cells.append(
                    "not reached" if reach is None else f"{reach / KIB:.1f} KiB"
                )
            lines.append(f"| {_fmt_acc(target)} | " + " | ".join(cells) + " |")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- Everything. -------------------------------------------------------------------


def options_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Returns ``write_all`` keyword arguments from a workdir's config.json dict.

    Reads ``constraints.memory_bytes`` and ``constraints.latency_ms`` (budgets)
    and, when present, ``memory_sweep_bytes`` and ``target_accuracies``; a
    missing or null key keeps ``write_all``'s default.
    """
    constraints = config.get("constraints") or {}
    out: dict[str, Any] = {
        "memory_budget": constraints.get("memory_bytes") or None,
        "latency_budget": constraints.get("latency_ms") or None,
    }
    if config.get("memory_sweep_bytes"):
        out["memory_sweep"] = tuple(config["memory_sweep_bytes"])
    if config.get("target_accuracies"):
        out["targets"] = tuple(config["target_accuracies"])
    return out


def write_all(
    records: Sequence[Record],
    outdir: str | Path,
    *,
    memory_budget: float | None = None,
    latency_budget: float | None = None,
    memory_sweep: Iterable[float] = DEFAULT_SWEEP_BYTES,
    targets: Iterable[float] = PAPER_TARGETS,
) -> list[Path]:
    """Writes every figure the records support, and ``summary.md``.

    Figures without data (e.g. no measured latencies, no format grid) are
    skipped; the others are (re)written.

    Args:
      records: result records (``jnas.results.load(workdir)``).
      outdir: output folder.
      memory_budget: bytes, or None.
      latency_budget: ms, or None.
      memory_sweep: budgets in bytes for the summary's sweep table.
      targets: accuracies (fractions) for the summary's reach table.

    Returns:
      The written paths: figures (PNG and SVG) then summary.md.

    Raises:
      NoDataError: there are no records.
    """
    if not records:
        raise NoDataError(f"write_all: no records to plot into {outdir}")
    split = choose_split(records)
    figures = [
        lambda: accuracy_vs_memory(
            records, outdir, memory_budget=memory_budget, split=split
        ),
        lambda: accuracy_vs_latency(
            records, outdir, latency_budget=latency_budget, split=split
        ),
        lambda: predicted_vs_measured(records, outdir),
        lambda: accuracy_vs_bits(records, outdir),
    ]
    paths: list[Path] = []
    for figure_fn in figures:
        try:
            paths += figure_fn()
        except NoDataError:
            continue
    paths.append(
        write_summary(
            records,
            outdir,
            memory_budget=memory_budget,
            latency_budget=latency_budget,
            memory_sweep=memory_sweep,
            targets=targets,
            split=split,
        )
    )
    return paths
