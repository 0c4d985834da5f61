"""Figures and summary from synthetic result records."""

import re

import numpy as np
import pytest

from jnas import report as plots
from jnas.report import pareto

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _records(n=30, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        params = int(rng.integers(1_000, 200_000))
        acc = float(rng.uniform(0.4, 0.9))
        measured = float(rng.uniform(2, 200))
        bits = int(rng.integers(6, 12))
        out.append(
            {
                "hash": f"h{i}",
                "space": "resnet",
                "law": "s1",
                "index": i,
                "memory_bytes": {
                    "float32": 4 * params,
                    "half": 2 * params,
                    "custom": -(-params * bits // 8),
                },
                "latency_ms": {
                    "predicted": measured * float(rng.uniform(0.8, 1.2)),
                    "measured": measured if i % 3 else None,
                },
                "accuracy": {
                    "float32": {"val": acc, "test": acc - 0.01},
                    "half": {"val": acc - 0.002, "test": acc - 0.012},
                    "custom": {"val": acc - 0.01, "test": acc - 0.02},
                },
                "custom_format": f"e4m{bits - 5}",
                "format_grid": [
                    # screened out by the format search: a bound, no value
                    {
                        "format": "e3m0",
                        "bits": 4,
                        "val": None,
                        "val_at_most": 0.3,
                        "val_examples": 50,
                    },
                    *(
                        {"format": f"e4m{m}", "bits": 5 + m, "val": acc - 0.3 / (m + 1)}
                        for m in range(1, 8)
                    ),
                ],
            }
        )
    return out


def test_write_all_writes_every_figure_and_summary(tmp_path):
    records = _records()
    paths = plots.write_all(
        records, tmp_path, memory_budget=64 * 1024, latency_budget=50.0
    )
    names = [p.name for p in paths]
    for stem in (
        "accuracy_vs_memory",
        "accuracy_vs_latency",
        "latency_predicted_vs_measured",
        "accuracy_vs_bits",
    ):
        assert f"{stem}.png" in names and f"{stem}.svg" in names
    assert names[-1] == "summary.md"
    for path in paths:
        assert path.exists() and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC
        if path.suffix == ".svg":
            assert "<svg" in path.read_text()[:1000]


def test_summary_names_the_best_feasible_model(tmp_path):
    records = _records()
    budget, lat_budget = 256 * 1024, 100.0
    path = plots.write_summary(
        records, tmp_path, memory_budget=budget, latency_budget=lat_budget
    )
    text = path.read_text()
    assert "candidates: 30" in text and "accuracy: test split" in text
    mem = plots.memories(records, "half")
    acc = plots.accuracies(records, "half", "test")
    lat = plots.latencies(records)
    i = pareto.best_under(mem, np.where(lat <= lat_budget, acc, np.nan), budget)
    assert i is not None
    row = f"| half | memory + latency | {100 * acc[i]:.2f}% (resnet s1 #{i},"
    assert row in text
    # Latency falls back to the prediction where nothing was measured.
    assert lat[0] == records[0]["latency_ms"]["predicted"]
    assert "e4m" in text  # the custom format is named next to its model


def test_empty_figures_raise_and_write_all_skips_them(tmp_path):
    records = _records(5)
    for r in records:
        r["latency_ms"]["predicted"] = None
        r["format_grid"] = None
        r["accuracy"]["custom"] = None
    with pytest.raises(plots.NoDataError, match="predicted and a measured"):
        plots.predicted_vs_measured(records, tmp_path)
    with pytest.raises(plots.NoDataError, match="format_grid"):
        plots.accuracy_vs_bits(records, tmp_path)
    # Bounds alone (every format screened out) are no accuracy to draw.
    records[0]["format_grid"] = [
        {"format": "e2m0", "bits": 3, "val": None, "val_at_most": 0.2}
    ]
    with pytest.raises(plots.NoDataError, match="format_grid"):
        plots.accuracy_vs_bits(records, tmp_path)
    names = [p.name for p in plots.write_all(records, tmp_path / "out")]
    assert names == [
        "accuracy_vs_memory.png",
        "accuracy_vs_memory.svg",
        "accuracy_vs_latency.png",
        "accuracy_vs_latency.svg",
        "summary.md",
    ]
    assert not (tmp_path / "latency_predicted_vs_measured.png").exists()


def test_no_accuracy_at_all_is_a_clear_error(tmp_path):
    records = [{"hash": "a", "memory_bytes": {"float32": 10}, "accuracy": None}]
    with pytest.raises(ValueError, match="none of 1 records has a memory"):
        plots.accuracy_vs_memory(records, tmp_path)
    with pytest.raises(ValueError, match="no records"):
        plots.write_all([], tmp_path)
    with pytest.raises(ValueError, match="memory_budget must be positive, got -1"):
        plots.accuracy_vs_memory(_records(3), tmp_path, memory_budget=-1)
    assert not list(tmp_path.iterdir())


def test_val_split_when_no_test_accuracy():
    records = _records(3)
    for r in records:
        for fmt in plots.FORMATS:
            r["accuracy"][fmt]["test"] = None
    assert plots.choose_split(records) == "val"
    assert plots.choose_split(_records(3)) == "test"


def test_options_from_config():
    config = {
        "constraints": {"memory_bytes": 2048, "latency_ms": 10.0},
        "memory_sweep_bytes": [1024, 4096],
    }
    assert plots.options_from_config(config) == {
        "memory_budget": 2048,
        "latency_budget": 10.0,
        "memory_sweep": (1024, 4096),
        "dataset": None,
    }
    assert plots.options_from_config({}) == {
        "memory_budget": None,
        "latency_budget": None,
        "dataset": None,
    }


def test_diverged_candidates_are_never_feasible_best_or_on_a_front(tmp_path):
    records = _records(6)
    # The diverged candidate claims the best accuracy and the least memory.
    bad = records[2]
    bad["train"] = {"diverged": True, "final_loss": float("nan")}
    for fmt in plots.FORMATS:
        bad["accuracy"][fmt] = {"val": 0.99, "test": 0.99}
        bad["memory_bytes"][fmt] = 10
    assert plots.diverged(records).tolist() == [False, False, True, False, False, False]
    assert np.isnan(plots.accuracies(records, "float32", "test")[2])
    text = plots.write_summary(records, tmp_path, memory_budget=1e9).read_text()
    assert "candidates: 6 (1 diverged" in text
    assert "99.00%" not in text  # never a best or a sweep entry
    tail = text.split("## Diverged candidates")[1]
    assert "resnet s1 #2" in tail and "resnet s1 #2" not in text.split("## Diverged")[0]
    feasible = text.split("## Feasible candidates")[1].split("##")[0]
    assert "| float32 | 5 | 5 |" in feasible
    # Every record diverged: no front to draw, and the error says why.
    for r in records:
        r["train"] = {"diverged": True}
    with pytest.raises(plots.NoDataError, match=r"\(6 diverged\)"):
        plots.accuracy_vs_memory(records, tmp_path / "all")


def test_summary_without_latency_or_foreign_landmarks(tmp_path):
    records = _records(4)
    for r in records:
        r["latency_ms"] = {"predicted": None, "measured": None}
    options = plots.options_from_config({"data": {"name": "digits"}})
    assert "targets" not in options and options["dataset"] == "digits"
    paths = plots.write_all(records, tmp_path, **options)
    text = paths[-1].read_text()
    assert "nan" not in text  # no "nan ms" for an unmeasured latency
    assert "KiB)" in text and "dataset: digits" in text
    assert "70.64%" not in text and "reaches an accuracy" not in text
    cifar = plots.options_from_config({"data": {"name": "cifar10"}})
    assert cifar["targets"] == plots.PAPER_TARGETS
    text = plots.write_summary(records, tmp_path / "c", **cifar).read_text()
    assert "| 70.64% |" in text and "dataset: cifar10" in text


def test_accuracy_vs_bits_counts_models_per_width_and_draws_float32(tmp_path):
    import matplotlib

    records = _records(6)
    records[0]["format_grid"] = records[0]["format_grid"][:3]  # stops early
    records[1]["train"] = {"diverged": True}  # left out
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text
        paths = plots.accuracy_vs_bits(records, tmp_path, dataset="digits")
    svg = next(p for p in paths if p.suffix == ".svg").read_text()
    assert "digits: 5 models" in svg
    assert "float32, median of 5 models" in svg
    assert "count above" in svg
    # widths 6..12 of the 5 models: 5 at every width but 8+ (4: one stopped).
    counts = [int(t) for t in re.findall(r">(\d+)</text>", svg)]
    assert counts.count(5) >= 2 and 4 in counts
    assert not re.search(r">\d+\.5</text>", svg)  # integer ticks only


def test_learning_curves_figure_and_write_all(tmp_path):
    records = _records(3)
    curves = [
        {
            "hash": r["hash"],
            "step": step,
            "loss": 2.3 / step**0.3,
            "train_accuracy": min(1.0, 0.1 + step / 400),
            "lr": 0.05,
        }
        for r in records
        for step in (1, 50, 100, 150)
    ]
    curves[1]["loss"] = None  # a diverged window: a gap, not a crash
    with pytest.raises(plots.NoDataError, match="no training-curve rows"):
        plots.learning_curves([], tmp_path)
    paths = plots.write_all(records, tmp_path, curves=curves, dataset="digits")
    names = [p.name for p in paths]
    assert "learning_curves.png" in names and "learning_curves.svg" in names
    png = tmp_path / "learning_curves.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
