"""Replay of the iotnets release: records, resume, headline numbers, figures."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jnas import report as plots
from jnas import results
from jnas.report import pareto
from jnas.search import replay

SHARED = Path(__file__).resolve().parents[2] / "shared"
IOTNETS = SHARED / "iotnets"
REPO = Path(__file__).resolve().parents[1]
# Loaded from its path (as config_flags does), whatever the working directory.
_spec = importlib.util.spec_from_file_location(
    "iotnets_replay", REPO / "experiments" / "iotnets_replay.py"
)
iotnets_replay = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(iotnets_replay)


def _config(arg="small", **overrides):
    cfg = iotnets_replay.get_config(arg)
    cfg.netconfigs = str(IOTNETS / "NetConfigs.json")
    cfg.pi_table = str(IOTNETS / "results_RaspPi.json")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def release():
    if not (IOTNETS / "NetConfigs.json").exists():
        pytest.skip(f"{IOTNETS} absent (CI places the checkout beside shared/)")
    return json.loads((IOTNETS / "results_RaspPi.json").read_text())


def test_small_replay_records_resume_and_figures(release, tmp_path):
    paths = replay.run(_config(), tmp_path)
    records = results.load(tmp_path)
    assert len(records) == 40
    for r, row in zip(records, release[:40], strict=True):
        assert (r["law"], r["index"]) == (row["law"], row["id"])
        assert r["space"] == row["spacename"].removeprefix("random_net_")
        assert r["params"] == row["params"] and r["flops"] == row["flops"]
        assert r["memory_bytes"]["float32"] == 4 * row["params"]
        assert r["memory_bytes"]["half"] == 2 * row["params"]
        assert r["latency_ms"] == {"predicted": None, "measured": row["t_avg"]}
        assert r["accuracy"]["float32"] == {"val": None, "test": row["acc"]}
        assert r["accuracy"]["half"] == r["accuracy"]["float32"]
        assert r["hash"].startswith(r["arch_hash"] + "@")
        assert r["arch"] is None  # the small variant stores no architectures
    assert {p.name for p in paths} >= {"accuracy_vs_memory.png", "summary.md"}
    # A rerun resumes without duplicating; another config is refused.
    replay.run(_config(), tmp_path)
    assert len(results.load(tmp_path)) == 40
    with pytest.raises(results.ConfigMismatchError, match="limit"):
        replay.run(_config(limit=41), tmp_path)
    # launch.figures rebuilds the same summary from the workdir alone.
    figures = tmp_path / "figures"
    summary = (figures / "summary.md").read_text()
    (figures / "summary.md").unlink()
    subprocess.run(
        [sys.executable, "-m", "launch.figures", f"--workdir={tmp_path}"],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    assert (figures / "summary.md").read_text() == summary
    # Export needs trained weights: a replay record is refused, saying how.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.export",
            f"--workdir={tmp_path}",
            f"--candidate={records[0]['hash']}",
            f"--out={tmp_path / 'export'}",
        ],  # fmt: skip
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "is a replay record" in proc.stderr
    assert f"--config.search.candidates=\"('{records[0]['space']}:" in proc.stderr


def test_densenet_rows_reproduce_the_papers_float32_model(release, tmp_path):
    # DenseNet comes first in the release (297 rows); it holds the paper's
    # best float32 model under the memory budget, 74.87% (74.88% released).
    assert all(r["spacename"] == "random_net_densenet" for r in release[:297])
    replay.run(_config(limit=297), tmp_path)
    records = results.load(tmp_path)
    mem = plots.memories(records, "float32")
    acc = plots.accuracies(records, "float32", "test")
    best = records[pareto.best_under(mem, acc, 32 * 1024)]
    assert (best["space"], best["law"], best["index"]) == ("densenet", "s3", 36)
    assert best["accuracy"]["float32"]["test"] == pytest.approx(0.7488, abs=1e-4)
    assert pareto.budget_to_reach(mem, acc, 0.7487) == 4 * 7654
    assert (
        "| 74.87% | 29.9 KiB | 14.9 KiB |"
        in (tmp_path / "figures" / "summary.md").read_text()
    )


def test_missing_data_names_the_path_and_the_source(tmp_path):
    cfg = _config(netconfigs=str(tmp_path / "nowhere" / "NetConfigs.json"))
    with pytest.raises(
        FileNotFoundError, match=r"config.netconfigs=.*nowhere.*iotnets"
    ):
        replay.run(cfg, tmp_path / "work")


def test_join_matches_rows_and_refuses_disagreeing_tables():
    nets = [
        {"spacename": "random_net_resnext", "law": "s1", "id": 3, "acc": 0.5},
        {"spacename": "random_net_resnext", "law": "s1", "id": 4, "acc": 0.6},
    ]
    pi = [{**nets[1], "t_avg": 12.0, "t_std": 1.0}]
    joined = replay.join(nets, pi)
    assert [r["t_avg"] for r in joined] == [None, 12.0]
    with pytest.raises(ValueError, match="accuracy 0.6 in netconfigs but 0.7"):
        replay.join(nets, [{**pi[0], "acc": 0.7}])
    with pytest.raises(ValueError, match="repeats row"):
        replay.join(nets + nets[:1], pi)
    with pytest.raises(ValueError, match="lacks"):
        replay.join([{"law": "s1", "id": 0, "acc": 0.1}], [])


def test_replay_launcher_runs_the_config_from_any_directory(release, tmp_path):
    # The config's default paths are resolved by the config file, not the cwd.
    work = tmp_path / "work"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.replay",
            f"--config={REPO / 'experiments' / 'iotnets_replay.py'}:small",
            f"--workdir={work}",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        capture_output=True,
    )
    assert len(results.load(work)) == 40
    assert (work / "figures" / "summary.md").exists()


def test_search_launcher_points_a_replay_config_to_its_launcher(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.search",
            "--config=experiments/iotnets_replay.py:small",
            f"--workdir={tmp_path / 'work'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "python -m launch.replay" in done.stderr
    assert not (tmp_path / "work").exists()  # refused before writing anything
