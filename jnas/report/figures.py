"""The figures of a search, from its result records alone.

Every function takes the records of ``jnas.results.load(workdir)`` (schema in
``jnas.results``, readers in ``records``) and writes into ``outdir``; figures
are written as PNG and SVG through matplotlib's Agg canvas (no pyplot, no
global backend switch). A figure with nothing to draw raises ``NoDataError``
(a ValueError) instead of writing an empty plot; ``write_all`` skips those
and writes the rest, then ``summary.md``.

Accuracy is shown in percent, memory in KiB.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.backends import backend_agg
from matplotlib.figure import Figure

from jnas import storage
from jnas.report import pareto
from jnas.report.records import (
    FORMATS,
    KIB,
    NoDataError,
    Record,
    accuracies,
    choose_split,
    diverged,
    get,
    latencies,
    latency_label,
    memories,
    num,
)
from jnas.report.summary import (
    DEFAULT_SWEEP_BYTES,
    check_budget,
    targets_for,
    write_summary,
)

_COLORS = {"float32": "C0", "half": "C1", "custom": "C2"}
_LABELS = {"float32": "float32", "half": "half (e5m10)", "custom": "custom ⟨E,M⟩"}
# Where launch/search.py and launch/figures.py put a workdir's figures.
FIGURES_DIR = "figures"
FRONT_AXES = ("memory", "latency")


def _plain_log_ticks(axis) -> None:
    """Log-axis labels as plain numbers (1, 2, 5, 10, 20, ...), never 3x10^0.

    Matplotlib labels every minor tick of a log axis spanning less than a
    decade in scientific notation, and the labels overlap.
    """

    def minor(value: float, _) -> str:
        lead = round(value / 10 ** math.floor(math.log10(value)))
        return f"{value:g}" if lead in (2, 5) else ""

    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.FuncFormatter(minor))


def _new_figure(figsize=(6.4, 4.6), ncols: int = 1) -> tuple[Figure, Any]:
    """A Figure on an Agg canvas and its axes (an array of `ncols` if > 1)."""
    fig = Figure(figsize=figsize, layout="constrained")
    backend_agg.FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def _save(fig: Figure, outdir: str | Path, name: str) -> list[Path]:
    """Writes `name`.png and .svg whole (``storage.atomic_write``: a kill leaves
    the old figure or the new one; an object-store workdir gets one upload)."""
    outdir = storage.path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, options in (
        ("png", {"dpi": 150, "metadata": {"Software": None}}),
        ("svg", {"metadata": {"Date": None}}),
    ):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, **options)
        paths.append(outdir / f"{name}.{fmt}")
        storage.atomic_write(paths[-1], buffer.getvalue())
    return paths


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
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{split} accuracy [%]")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def accuracy_front(
    records: Sequence[Record],
    outdir: str | Path,
    *,
    axis: str,
    budget: float | None = None,
    split: str | None = None,
    dataset: str | None = None,
) -> list[Path]:
    """Accuracy against a cost, one scatter and Pareto front per format.

    Args:
      records: result records.
      outdir: output folder.
      axis: "memory" (parameter memory in each format) or "latency"
        (measured, else predicted; the same for every format).
      budget: bytes (memory) or ms (latency); drawn as a vertical line.
      split: "val" or "test"; default ``choose_split(records)``.
      dataset: the data's name, for the title.

    Returns:
      The written paths (``accuracy_vs_<axis>.png`` and ``.svg``).

    Raises:
      NoDataError: no record has both the cost and an accuracy in any format.
      ValueError: an unknown axis or a non-positive budget.
    """
    if axis not in FRONT_AXES:
        raise ValueError(f"axis={axis!r}; allowed: {', '.join(FRONT_AXES)}")
    budget = check_budget(f"{axis}_budget", budget)
    split = split or choose_split(records)
    if axis == "memory":
        costs = {fmt: memories(records, fmt) / KIB for fmt in FORMATS}
        xlabel, unit, scale = "parameter memory [KiB]", "KiB", KIB
    else:
        costs = dict.fromkeys(FORMATS, latencies(records))
        xlabel, unit, scale = latency_label(records), "ms", 1
    fig, ax = _new_figure()
    accs = {fmt: accuracies(records, fmt, split) for fmt in FORMATS}
    n_diverged = int(diverged(records).sum())
    if not _fronts(ax, costs, accs):
        raise NoDataError(
            f"accuracy_vs_{axis}: none of {len(records)} records has a {axis} "
            f"and a {split} accuracy in any of {FORMATS}"
            + (f" ({n_diverged} diverged)" if n_diverged else "")
        )
    line = None
    if budget is not None:
        line = (budget / scale, f"{axis} budget {budget / scale:g} {unit}")
    _finish_front_axes(ax, xlabel, split, line)
    if dataset:
        ax.set_title(dataset, fontsize=10)
    if n_diverged:  # shown apart: summary.md lists them
        ax.annotate(
            f"{n_diverged} diverged candidate(s) not shown",
            xy=(0.01, 0.01),
            xycoords="axes fraction",
            fontsize=8,
            color="0.35",
        )
    return _save(fig, outdir, f"accuracy_vs_{axis}")


def accuracy_vs_memory(
    records, outdir, *, memory_budget=None, split=None, dataset=None
):
    """``accuracy_front(axis="memory")``."""
    return accuracy_front(
        records,
        outdir,
        axis="memory",
        budget=memory_budget,
        split=split,
        dataset=dataset,
    )


def accuracy_vs_latency(
    records, outdir, *, latency_budget=None, split=None, dataset=None
):
    """``accuracy_front(axis="latency")``."""
    return accuracy_front(
        records,
        outdir,
        axis="latency",
        budget=latency_budget,
        split=split,
        dataset=dataset,
    )


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
    pred = np.array([num(get(r, "latency_ms", "predicted")) for r in records])
    meas = np.array([num(get(r, "latency_ms", "measured")) for r in records])
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
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis)
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


def accuracy_vs_bits(
    records: Sequence[Record], outdir: str | Path, *, dataset: str | None = None
) -> list[Path]:
    """Validation accuracy against format bits, from each record's format_grid.

    One faint line per model (its best accuracy at each bit count) and, in
    bold, the median over the models evaluated at each bit count, with that
    count written at each point (the format search stops early per model, so
    the counts differ). A dashed line is the same models' median float32
    accuracy. Formats the search screened out early (an upper bound,
    "val_at_most", instead of "val") are drawn as hollow down-triangles at
    their bound, apart from the lines. Diverged candidates are left out.

    Args:
      records: result records; those with a non-empty "format_grid" are drawn.
      outdir: output folder.
      dataset: the data's name, for the title.

    Returns:
      The written paths (``accuracy_vs_bits.png`` and ``.svg``).

    Raises:
      NoDataError: no record has a format_grid entry with bits and val.
    """
    per_model = []
    float32 = []
    bounds: list[tuple[int, float]] = []
    for r, gone in zip(records, diverged(records), strict=True):
        if gone:
            continue
        best: dict[int, float] = {}
        for entry in r.get("format_grid") or ():
            bits, val = entry.get("bits"), entry.get("val")
            if (
                bits is not None
                and val is None
                and entry.get("val_at_most") is not None
            ):
                bounds.append((int(bits), float(entry["val_at_most"])))
            if bits is None or val is None or math.isnan(val):
                continue
            best[int(bits)] = max(best.get(int(bits), -math.inf), float(val))
        if best:
            per_model.append(best)
            reference = get(r, "accuracy", "float32", "val")
            if reference is not None:
                float32.append(float(reference))
    if not per_model:
        raise NoDataError(
            f"accuracy_vs_bits: none of {len(records)} records has a format_grid"
        )
    fig, ax = _new_figure()
    if bounds:
        ax.scatter(
            [b for b, _ in bounds],
            [100 * v for _, v in bounds],
            marker="v",
            facecolors="none",
            edgecolors="0.6",
            s=18,
            lw=0.7,
            label=f"screened out early: at most ({len(bounds)})",
        )
    by_bits: dict[int, list[float]] = {}
    for best in per_model:
        bits = sorted(best)
        ax.plot(bits, [100 * best[b] for b in bits], color="C0", alpha=0.15, lw=0.8)
        for b in bits:
            by_bits.setdefault(b, []).append(best[b])
    bits = sorted(by_bits)
    medians = [100 * np.median(by_bits[b]) for b in bits]
    ax.plot(
        bits,
        medians,
        color="C3",
        lw=2,
        marker="o",
        label="median of the models evaluated at each width (count above)",
    )
    for b, m in zip(bits, medians, strict=True):
        ax.annotate(
            str(len(by_bits[b])),
            (b, m),
            textcoords="offset points",
            xytext=(0, 5),
            ha="center",
            fontsize=7,
            color="C3",
        )
    if float32:
        ax.axhline(
            100 * np.median(float32),
            color="0.3",
            ls="--",
            lw=1,
            label=f"float32, median of {len(float32)} models",
        )
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("format bits (sign + E + M)")
    ax.set_ylabel("val accuracy [%]")
    if dataset:
        ax.set_title(f"{dataset}: {len(per_model)} models", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, outdir, "accuracy_vs_bits")


def learning_curves(
    curves: Sequence[Mapping[str, Any]],
    outdir: str | Path,
    *,
    records: Sequence[Record] = (),
    dataset: str | None = None,
) -> list[Path]:
    """Training loss and training accuracy against step, one line per candidate.

    Args:
      curves: rows of ``curves.jsonl`` (``jnas.results.load_curves``).
      outdir: output folder.
      records: the result records, to colour lines by search space (optional).
      dataset: the data's name, for the title.

    Returns:
      The written paths (``learning_curves.png`` and ``.svg``).

    Raises:
      NoDataError: no curve rows.
    """
    by_hash: dict[str, list[Mapping[str, Any]]] = {}
    for row in curves:
        by_hash.setdefault(row["hash"], []).append(row)
    if not by_hash:
        raise NoDataError("learning_curves: no training-curve rows (curves.jsonl)")
    space_of = {r.get("hash"): r.get("space") for r in records}
    spaces = sorted({str(space_of.get(h)) for h in by_hash})
    colours = {s: f"C{i % 10}" for i, s in enumerate(spaces)}
    fig, (loss_ax, acc_ax) = _new_figure(figsize=(9.6, 4.2), ncols=2)
    for h, rows in by_hash.items():
        rows = sorted(rows, key=lambda r: r["step"])
        steps = [r["step"] for r in rows]
        colour = colours[str(space_of.get(h))]
        loss = [np.nan if r.get("loss") is None else r["loss"] for r in rows]
        acc = [
            np.nan if r.get("train_accuracy") is None else 100 * r["train_accuracy"]
            for r in rows
        ]
        loss_ax.plot(steps, loss, color=colour, alpha=0.5, lw=0.9)
        acc_ax.plot(steps, acc, color=colour, alpha=0.5, lw=0.9)
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss (mean over the logging window)")
    acc_ax.set_xlabel("step")
    acc_ax.set_ylabel("training accuracy [%] (over the window)")
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
    if records:
        for s in spaces:
            acc_ax.plot([], [], color=colours[s], label=s)
        acc_ax.legend(loc="lower right", fontsize=8)
    title = f"{len(by_hash)} candidates"
    fig.suptitle(f"{dataset}: {title}" if dataset else title, fontsize=10)
    return _save(fig, outdir, "learning_curves")


# -- Everything. -------------------------------------------------------------------


def options_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Returns ``write_all`` keyword arguments from a workdir's config.json dict.

    Reads ``constraints.memory_bytes`` and ``constraints.latency_ms`` (budgets),
    ``data.name`` (the dataset) and, when present, ``memory_sweep_bytes`` and
    ``target_accuracies``; a missing or null key keeps ``write_all``'s default.
    Without ``target_accuracies`` the targets are the paper's landmarks when
    the dataset is theirs (CIFAR-10), else none (`summary.targets_for`).
    """
    constraints = config.get("constraints") or {}
    dataset = (config.get("data") or {}).get("name") or None
    out: dict[str, Any] = {
        "memory_budget": constraints.get("memory_bytes") or None,
        "latency_budget": constraints.get("latency_ms") or None,
        "dataset": dataset,
    }
    if config.get("memory_sweep_bytes"):
        out["memory_sweep"] = tuple(config["memory_sweep_bytes"])
    if config.get("target_accuracies"):
        out["targets"] = tuple(config["target_accuracies"])
    elif targets_for(dataset):
        out["targets"] = targets_for(dataset)
    return out


def write_all(
    records: Sequence[Record],
    outdir: str | Path,
    *,
    memory_budget: float | None = None,
    latency_budget: float | None = None,
    memory_sweep: Iterable[float] = DEFAULT_SWEEP_BYTES,
    targets: Iterable[float] = (),
    dataset: str | None = None,
    curves: Sequence[Mapping[str, Any]] = (),
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
      targets: accuracies (fractions) for the summary's reach table (none by
        default: landmarks belong to their dataset).
      dataset: the data's name, for the summary's header.
      curves: training-curve rows (``results.load_curves``), for the
        learning-curve figure.

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
            records, outdir, memory_budget=memory_budget, split=split, dataset=dataset
        ),
        lambda: accuracy_vs_latency(
            records,
            outdir,
            latency_budget=latency_budget,
            split=split,
            dataset=dataset,
        ),
        lambda: predicted_vs_measured(records, outdir),
        lambda: accuracy_vs_bits(records, outdir, dataset=dataset),
        lambda: learning_curves(curves, outdir, records=records, dataset=dataset),
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
            dataset=dataset,
            split=split,
        )
    )
    return paths
