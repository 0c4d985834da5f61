"""The search loop: config errors, the format search, constraints, resume."""

import json
import os
import shutil
import signal
import time

import jax
import ml_dtypes
import numpy as np
import pytest
from conftest import _comparable, _launch

from experiments import formats as formats_config
from experiments import quickstart
from jnas import data, population, precision, results, search, spaces, storage
from jnas.search import defaults, loop, posttraining, sampling


def _config(**overrides):
    cfg = quickstart.get_config("tiny")
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return cfg


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("search.mode", "grid", r"config.search.mode='grid'.*'random', 'narrow'"),
        ("search.spaces", ["resnext"], r"'resnext' must be 'space:law'"),
        ("search.spaces", ["resnext:s9"], r"law of resnext='s9'.*'s1'"),
        ("search.spaces", ["vgg:s1"], r"vgg"),
        ("train.strategy", "pmap", r"config.train.strategy='pmap'.*'vmap'"),
        ("train.steps", 0, r"config.train.steps=0 must be an integer > 0"),
        ("constraints.memory_format", "int8", r"memory_format='int8'.*'half'"),
        (
            "constraints.latency_ms",
            -1.0,
            r"constraints.latency_ms=-1.0 must be a number >= 0",
        ),
        ("latency.predictor", "nope.json", r"latency.predictor='nope.json'"),
        ("formats.min_bits_for_memory", 2, r"min_bits_for_memory=2 must be"),
        ("train.qat_format", "e0m3", r"train.qat_format='e0m3': exponent_bits=0"),
        ("train.qat_format", "e9m30", r"train.qat_format='e9m30'"),
        ("train.momentum", 1.0, r"train.momentum=1.0 must be in \[0, 1\)"),
        ("eval_batch_size", 0, r"config.eval_batch_size=0 must be an integer > 0"),
        ("data.fit", "crop", r"config.data.fit='crop'.*'pad', 'resize'"),
        ("data.num_val", -1, r"config.data.num_val=-1 must be an integer >= 0"),
        ("data.name", "", r"config.data.name='' must be a dataset name"),
    ],
)
def test_bad_config_values_name_the_key_and_the_allowed_values(key, value, message):
    with pytest.raises(ValueError, match=message):
        search.validate(_config(**{key: value}))


def test_a_missing_dataset_is_found_before_anything_runs(tmp_path):
    config = _config(**{"data.name": "no_such_set"})
    search.validate(config)  # a valid config, on a machine without the data
    with pytest.raises(
        data.DatasetNotFoundError,
        match=r"(?s)config.data.name='no_such_set'.*not found",
    ):
        search.config.check_data(config)
    with pytest.raises(data.DatasetNotFoundError):
        search.run(config, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_launcher_refuses_bad_input_in_one_line_before_writing(tmp_path):
    # Nothing may be written before every key is checked (a written
    # config.json would refuse the corrected rerun), and the user gets the
    # message, not a traceback or the usage text.
    work = tmp_path / "w"
    proc = _launch(work, "", "--config.train.qat_format=e9m30")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.strip().splitlines() == [
        "search.py: error: config.train.qat_format='e9m30': exponent_bits=9 is "
        "outside the emulated range 1..8 (formats must fit a float32 carrier); "
        "'' turns quantisation-aware training off"
    ]
    assert not work.exists()
    # Results whose config.json is gone are not taken over by another config.
    work.mkdir()
    storage.append_line(work / results.RESULTS, {"hash": "x", "round": 0})
    proc = _launch(work, "", "--config.train.lr=0.5")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "holds results (results.jsonl) but no config.json" in err
    assert "--adopt_records" in err and "Traceback" not in err
    assert not (work / results.CONFIG).exists()
    # List-valued keys can be set from the command line (tuples, which
    # ml_collections' flags parse): the override reaches the validation.
    proc = _launch(tmp_path / "w2", "", "--config.search.spaces=('mobilenetv2:s9',)")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "law of mobilenetv2='s9'" in err, err


def _sequence_leaves(node, path=""):
    for key, value in node.items():
        if hasattr(value, "items"):
            yield from _sequence_leaves(value, f"{path}{key}.")
        elif isinstance(value, (list, tuple)):
            yield f"{path}{key}", value


@pytest.mark.parametrize(
    "module,variant",
    [
        ("quickstart", None),
        ("paper", "half"),
        ("narrowing", "narrow"),
        ("formats", None),
        ("calibrate", None),
        ("iotnets_replay", None),
        ("reproduce", "phase1"),
    ],
)
def test_every_list_valued_key_can_be_overridden(module, variant):
    import importlib

    config = importlib.import_module(f"experiments.{module}").get_config(variant)
    lists = [k for k, v in _sequence_leaves(config) if isinstance(v, list)]
    assert not lists, f"{lists} are lists; --config.KEY cannot override a list"


def _leaf_keys(node, prefix=""):
    for key, value in node.items():
        if hasattr(value, "items"):
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_every_default_key_has_one_line_of_documentation():
    keys = set(_leaf_keys(defaults.get_config()))
    undocumented = sorted(k for k in keys if not defaults.DOCS.get(k, "").strip())
    assert not undocumented, undocumented
    assert not set(defaults.DOCS) - keys, "DOCS names keys the config lacks"
    assert all("\n" not in doc for doc in defaults.DOCS.values())


def test_show_config_lists_every_key_with_value_and_documentation(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.search",
            "--config=experiments/paper.py:half",
            "--show_config",
            "--config.train.lr=0.2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    config = quickstart.get_config()
    want = set()

    def walk(node, prefix=""):
        for key, value in node.items():
            if hasattr(value, "items"):
                walk(value, f"{prefix}{key}.")
            else:
                want.add(f"{prefix}{key}")

    walk(config)
    shown = {line.split(" = ", 1)[0] for line in lines}
    assert want <= shown  # every key of the base config
    undocumented = [line for line in lines if "  # " not in line]
    assert not undocumented, undocumented
    assert "train.lr = 0.2  # peak learning rate" in lines  # overrides apply
    assert "data.name = 'cifar10'  # " in "\n".join(lines)  # paper.py's value


@pytest.mark.parametrize(
    "spec,module,variant",
    [("quickstart.py", "quickstart", None), ("paper.py:half", "paper", "half")],
)
def test_show_config_works_from_any_directory(tmp_path, spec, module, variant):
    # The config file is given by its absolute path, from a directory that is
    # not the repository's: neither it nor the launcher may need the
    # repository on the import path (the package install provides launch).
    import importlib
    import subprocess
    import sys

    from conftest import REPO

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.search",
            f"--config={REPO / 'experiments' / spec}",
            "--show_config",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    config = importlib.import_module(f"experiments.{module}").get_config(variant)
    want = [
        f"{key} = {value!r}  # {defaults.DOCS[key]}"
        for key, value in defaults.leaves(config)
    ]
    assert proc.stdout.splitlines() == want


def test_config_json_leaves_out_how_a_search_runs(tmp_path):
    config = quickstart.get_config("tiny")
    config.distributed.local_workers = 2
    config.train.snapshot_every_s = 5.0
    loop._write_config(config, tmp_path, 0, False)
    saved = results.read_config(tmp_path)
    assert "distributed" not in saved and "snapshot_every_s" not in saved["train"]
    assert saved["train"]["steps"] == config.train.steps
    # Another sitting may run it differently, but not compute something else.
    config.distributed.local_workers = 0
    config.train.snapshot_every_s = 600.0
    loop._write_config(config, tmp_path, 0, False)
    config.train.lr = 2 * config.train.lr
    with pytest.raises(results.ConfigMismatchError, match=r"train.lr: "):
        loop._write_config(config, tmp_path, 0, False)


def test_latency_budget_without_a_predictor_is_refused():
    with pytest.raises(ValueError, match="latency.predictor is 'none'"):
        search.validate(_config(**{"constraints.latency_ms": 10.0}))


def test_format_search_finds_the_fewest_bits_of_the_grid():
    # A made-up accuracy surface, not monotone in bits: the walk must still
    # return the grid's true minimum, which a brute force over all 168 finds.
    rng = np.random.default_rng(0)
    table = {
        precision.FloatFormat(e, m): rng.uniform(0.5, 1.0, size=3)
        for e in search.E_GRID
        for m in search.M_GRID
    }
    reference = np.array([0.95, 0.9, 0.99])
    asked = []

    def evaluate(fmt, need):  # exact everywhere, like a full evaluation
        asked.append(need)
        return population.Screening(table[fmt], np.ones(3, bool), np.full(3, 100))

    chosen, grids = search.format_search(evaluate, reference, 0.01)
    for i in range(3):
        passing = [f for f, acc in table.items() if acc[i] >= reference[i] - 0.01]
        fewest = min(f.bits for f in passing)
        best = max(table[f][i] for f in passing if f.bits == fewest)
        assert chosen[i].bits == fewest
        assert table[chosen[i]][i] == best
        assert all(g["bits"] <= fewest for g in grids[i])
    # A decided candidate is not wanted again (need +inf) and nobody else is
    # let off: the needs are the reference minus the tolerance.
    assert all(
        np.isinf(n[i]) or n[i] == pytest.approx(reference[i] - 0.01)
        for n in asked
        for i in range(3)
    )
    assert any(np.isinf(n).any() for n in asked)

    # Screened like `engine.screen`: a failing format may come back as a bound
    # below the need. The choice is the same; the grid says what is a bound.
    def screened(fmt, need):
        acc = table[fmt]
        fails = acc < need
        bound = np.where(fails, (acc + need) / 2, acc)  # in [acc, need)
        return population.Screening(bound, ~fails, np.where(fails, 30, 100))

    chosen_screened, grids_screened = search.format_search(screened, reference, 0.01)
    assert chosen_screened == chosen
    for i in range(3):
        for g, exact in zip(grids_screened[i], grids[i], strict=True):
            assert g["format"] == exact["format"]
            if g["val"] is None:
                assert exact["val"] <= g["val_at_most"] < reference[i] - 0.01
                assert g["val_examples"] == 30
            else:
                assert g["val"] == exact["val"]


def test_quantize_variables_rounds_every_stored_value():
    # Oracle: ml_dtypes' IEEE-style float8_e4m3 (an independent implementation).
    rng = np.random.default_rng(1)
    weights = rng.normal(0, 3, 1000).astype(np.float32)
    variances = rng.uniform(0, 2, 17).astype(np.float32)
    tree = {"params": {"w": weights}, "batch_stats": {"var": variances}}
    got = search.quantize_variables(tree, precision.FloatFormat(4, 3))
    for leaf_got, leaf in zip(jax.tree.leaves(got), jax.tree.leaves(tree), strict=True):
        want = leaf.astype(ml_dtypes.float8_e4m3).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(leaf_got), want)


def test_constraints_that_nothing_meets_give_a_clear_error(tmp_path):
    cfg = _config(**{"constraints.memory_bytes": 100})
    with pytest.raises(
        search.NoFeasibleCandidatesError, match=r"smallest seen: memory \d+ B"
    ):
        search.run(cfg, tmp_path)


def test_narrowed_box_spans_the_best_feasible_arguments():
    records = [
        {
            "space": "resnext",
            "law": "s3",
            "index": i,
            "feasible": True,
            "accuracy": {"float32": {"val": acc}},
        }
        for i, acc in [(0, 0.9), (1, 0.8), (2, 0.1), (3, 0.2)]
    ]
    box = search.narrowed_box(records, top_fraction=0.5, margin=0.0)[("resnext", "s3")]
    flats = [
        sampling._flat_args(spaces.sampled_args("resnext", "s3", i)) for i in (0, 1)
    ]
    for key, (lo, hi) in box.items():
        assert lo == min(f[key] for f in flats) - 1
        assert hi == max(f[key] for f in flats) + 1


def test_killed_search_resumes_without_loss_duplication_or_change(
    tmp_path, xla_cache, reference_search
):
    cache = xla_cache
    # Reference: an uninterrupted run (tests/conftest.py).
    want = reference_search.records
    assert len(want) == 4
    # Trained past chance level (0.1; one binomial sd on 100 images is 0.03),
    # so equal results below mean something.
    assert max(r["accuracy"]["float32"]["val"] for r in want.values()) > 0.15

    # Killed with SIGKILL as soon as the first bucket's records are on disk.
    work = tmp_path / "killed"
    proc = _launch(work, cache)
    path = work / results.RESULTS
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= 1:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    partial = results.load(work)
    assert 1 <= len(partial) < 4

    # A snapshot left by a kill between a bucket's records and the snapshot's
    # deletion (its bucket is skipped on rerun) goes once the search is done.
    stale = results.snapshot_path(work, "0" * 24)
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"left by a kill")

    rerun = _launch(work, cache)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    assert not stale.exists()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 4, "a candidate was lost or recorded twice"
    got = {r["hash"]: r for r in lines}
    assert set(got) == set(want)
    for h in want:
        assert _comparable(got[h]) == _comparable(want[h])
    # Every finished candidate has its checkpoint; the figures were written.
    for h in want:
        restored = search.load_checkpoint(work, h)
        assert set(restored) == {"params", "batch_stats"}
        # The same variables as the uninterrupted run's (the post-training
        # sweep of the reference, below, checks those against the records).
        ref = search.load_checkpoint(reference_search.workdir, h)
        assert jax.tree.structure(restored) == jax.tree.structure(ref)
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(ref), strict=True):
            np.testing.assert_array_equal(a, b)
    assert (work / "figures" / "summary.md").exists()
    # Training curves survive the kill too: every candidate's rows (step 1,
    # then every log_every = 10 steps of 30), equal to the uninterrupted run's.
    curves = results.load_curves(work)
    assert curves == results.load_curves(reference_search.workdir)
    assert sorted({(r["hash"], r["step"]) for r in curves}) == sorted(
        (h, s) for h in want for s in (1, 10, 20, 30)
    )
    for h in want:
        (last,) = [r for r in curves if r["hash"] == h and r["step"] == 30]
        assert last["loss"] == pytest.approx(want[h]["train"]["final_loss"])
    assert (work / "figures" / "learning_curves.png").exists()


def test_post_training_sweep_reproduces_the_records_and_resumes(
    tmp_path, reference_search
):
    # Post-training sweep of the checkpoints (launch.formats), resumable. It
    # appends formats.jsonl: into a copy of the reference workdir.
    work = tmp_path / "work"
    shutil.copytree(reference_search.workdir, work)
    want = reference_search.records
    sweep_cfg = formats_config.get_config()
    sweep_cfg.exponents, sweep_cfg.mantissas = [4, 5], [2]
    # A CPU-sized batch: one candidate at a time, XLA:CPU evaluates 16 images
    # a batch 3-5x faster than the runbook's 500 (which pads val's 100 to 500).
    sweep_cfg.eval_batch_size = 16
    rows = posttraining.sweep(sweep_cfg, work)
    assert len(rows) == 4 * 3  # float32, e4m2, e5m2 per candidate
    assert posttraining.sweep(sweep_cfg, work) == rows  # nothing recomputed
    for h, record in want.items():
        (f32,) = [r for r in rows if r["hash"] == h and r["format"] == "float32"]
        # The checkpoint reproduces the recorded float32 accuracies.
        assert f32["val"] == pytest.approx(record["accuracy"]["float32"]["val"])
        assert f32["test"] == pytest.approx(record["accuracy"]["float32"]["test"])

    # One checkpoint deleted, one corrupted: the sweep goes on with the others
    # and then names both; a search rerun reports them by name.
    work = tmp_path / "damaged"
    shutil.copytree(reference_search.workdir, work)
    gone, bad, *fine = list(want)
    shutil.rmtree(results.checkpoint_path(work, gone))
    for path in results.checkpoint_path(work, bad).rglob("*"):
        if path.is_file():
            path.write_bytes(b"\xff\xfe not a checkpoint")
    with pytest.raises(results.CheckpointError) as err:
        posttraining.sweep(sweep_cfg, work)
    message = str(err.value)
    assert "swept 2 of 4 candidates" in message
    assert f"candidate {gone}: no checkpoint at" in message
    assert f"candidate {bad}: the checkpoint at" in message and "unreadable" in message
    assert {r["hash"] for r in results.format_rows(work)} == set(fine)
    problems = loop._report_bad_checkpoints(work)
    assert len(problems) == 2 and all("resnext s3 #" in p for p in problems)


@pytest.mark.parametrize(
    "module,variant",
    [
        ("paper", "float"),
        ("paper", "half"),
        ("paper", "reduced"),
        ("narrowing", "random"),
        ("narrowing", "narrow"),
        ("quickstart", None),
        ("reproduce", "phase1"),
        ("reproduce", "seeds"),
        ("reproduce", "phase2"),
        ("reproduce", "qat"),
    ],
)
def test_shipped_experiment_configs_are_valid(module, variant):
    import importlib

    config = importlib.import_module(f"experiments.{module}").get_config(variant)
    pairs = search.validate(config)
    assert pairs and all(law in spaces.laws(space) for space, law in pairs)
    if module == "paper":
        assert config.constraints.latency_ms == 10.0
        kinds = {"float": "float32", "half": "half", "reduced": "custom"}
        assert config.constraints.memory_format == kinds[variant]


def test_progress_line_counts_every_shard_of_the_workdir(tmp_path, caplog):
    # A workdir made by two workers and continued by one process: the
    # continuing process writes results.jsonl, but the round's count, the
    # store's size and the ETA must cover the workers' shards too.
    from jnas.search import progress

    def record(index, acc):
        return {
            "hash": f"h{index}",
            "round": 0,
            "feasible": True,
            "space": "mobilenetv2",
            "law": "s6",
            "index": index,
            "accuracy": {"float32": {"val": None, "test": acc}},
            "custom_format": None,
            "memory_bytes": {},
        }

    for shard, indices in (("results.0.jsonl", (0, 1)), ("results.1.jsonl", (2,))):
        for i in indices:
            storage.append_line(tmp_path / shard, record(i, 0.3 + i / 100))
    line = progress.Progress(tmp_path)
    results.Store(tmp_path).append(record(3, 0.2))
    with caplog.at_level("INFO", logger="absl"):
        line.log(0, 4)
    text = caplog.records[-1].getMessage()
    assert "round 0: 4/4 feasible candidates trained (4 in the store)" in text
    assert "ETA of the round 0 s" in text
    assert "best feasible: mobilenetv2:s6#2 test 0.320" in text
