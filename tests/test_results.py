"""jnas.results and the JSON-lines primitives of jnas.storage across torn tails.

A torn tail is what a writer killed mid-append leaves: a last line without its
newline. Readers skip it; writers cut it before appending, so the file never
holds a bad line in the middle (which readers refuse, naming the line).
"""

import json
import math
import os

import pytest

from jnas import results, storage

A = {"hash": "a", "value": 1}
B = {"hash": "b", "value": 2}
C = {"hash": "c", "value": 3}


def _write(path, text: str):
    path.write_bytes(text.encode())
    return path


def _lines(path) -> list[dict]:
    """Every line of the file parsed strictly (a torn or bad line fails)."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), repr(text[-40:])
    return [json.loads(line) for line in text.splitlines()]


# ----------------------------------------------------------------- primitives


def test_to_line_sorts_keys_ends_the_line_and_refuses_nan():
    assert storage.to_line({"b": 1, "a": [1.5, None]}) == '{"a": [1.5, null], "b": 1}\n'
    with pytest.raises(ValueError):
        storage.to_line({"a": math.nan})


def test_iter_records_skips_blank_lines_and_a_torn_last_line(tmp_path):
    path = _write(tmp_path / "r.jsonl", '{"hash": "a"}\n\n{"hash": "b"}\n{"hash": "c')
    assert list(storage.iter_records(path)) == [{"hash": "a"}, {"hash": "b"}]
    assert list(storage.iter_records(tmp_path / "missing.jsonl")) == []


def test_iter_records_names_a_bad_line_in_the_middle(tmp_path):
    path = _write(tmp_path / "r.jsonl", '{"hash": "a"}\n{"hash": "b\n{"hash": "c"}\n')
    with pytest.raises(ValueError, match=r"r\.jsonl:2 is not a JSON record"):
        list(storage.iter_records(path))
    # A bad last line that does end with a newline was written whole: not torn.
    _write(path, '{"hash": "a"}\nnot json\n')
    with pytest.raises(ValueError, match=r"r\.jsonl:2 is not a JSON record"):
        list(storage.iter_records(path))


@pytest.mark.parametrize(
    "before,after",
    [
        ('{"a": 1}\n{"a": 2}\n{"a": 3', '{"a": 1}\n{"a": 2}\n'),  # torn: cut
        ('{"a": 1}\n{"a": 2}\n', '{"a": 1}\n{"a": 2}\n'),  # whole: untouched
        ('{"a": 1', ""),  # only a torn line
        ("", ""),
    ],
)
def test_cut_torn_tail_keeps_only_whole_lines(tmp_path, before, after):
    path = _write(tmp_path / "r.jsonl", before)
    storage.cut_torn_tail(path)
    assert path.read_text() == after


def test_cut_torn_tail_of_a_missing_file_creates_nothing(tmp_path):
    storage.cut_torn_tail(tmp_path / "missing.jsonl")
    assert not (tmp_path / "missing.jsonl").exists()


def test_append_lines_cuts_a_torn_tail_first(tmp_path):
    path = _write(tmp_path / "r.jsonl", storage.to_line(A) + '{"hash": "to')
    storage.append_lines(path, [B, C])
    assert _lines(path) == [A, B, C]
    path.write_text(storage.to_line(A) + '{"hash": "to')
    storage.append_line(path, B)
    assert _lines(path) == [A, B]
    storage.append_lines(tmp_path / "new.jsonl", [A])  # creates the file
    assert _lines(tmp_path / "new.jsonl") == [A]


def test_append_lines_with_a_nan_record_writes_nothing(tmp_path):
    path = _write(tmp_path / "r.jsonl", storage.to_line(A))
    with pytest.raises(ValueError):
        storage.append_lines(path, [B, {"hash": "x", "loss": math.nan}])
    assert _lines(path) == [A]


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    storage.atomic_write(path, "old\n")
    assert path.read_text() == "old\n"
    assert not (tmp_path / "config.json.tmp").exists()
    storage.atomic_write(path, b"bytes\n")
    assert path.read_bytes() == b"bytes\n"

    def killed(fd):
        raise KeyboardInterrupt  # as if the process died before the rename

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        storage.atomic_write(path, "new\n")
    assert path.read_text() == "bytes\n"


# ---------------------------------------------------------------------- Store


def test_store_appends_and_reads_back(tmp_path):
    workdir = tmp_path / "work" / "deeper"
    store = results.Store(workdir)  # creates the workdir
    assert workdir.is_dir() and len(store) == 0 and store.records() == []
    store.append(A)
    store.append(B)
    assert "a" in store and "b" in store and "c" not in store
    again = results.Store(workdir)
    assert len(again) == 2 and again.records() == [A, B]
    assert _lines(workdir / results.RESULTS) == [A, B]
    shard = results.Store(workdir, results.shard_name(1, 2))
    shard.append(C)
    assert _lines(workdir / "results.1.jsonl") == [C]
    assert results.load(workdir) == [A, B, C]


def test_store_refuses_records_without_a_hash_or_already_stored(tmp_path):
    store = results.Store(tmp_path)
    store.append(A)
    with pytest.raises(ValueError, match="needs a 'hash'"):
        store.append({"value": 1})
    with pytest.raises(ValueError, match="needs a 'hash'"):
        store.append({"hash": "", "value": 1})
    with pytest.raises(ValueError, match="candidate a is already in"):
        store.append(dict(A, value=9))
    assert _lines(tmp_path / results.RESULTS) == [A]
    assert store.records() == [A]


def test_store_over_a_torn_tail_skips_it_then_cuts_it(tmp_path):
    path = _write(tmp_path / results.RESULTS, storage.to_line(A) + '{"hash": "b", "va')
    store = results.Store(tmp_path)
    assert store.records() == [A] and "b" not in store
    store.append(B)  # the candidate cut short is recorded again, whole
    store.append(C)
    assert _lines(path) == [A, B, C]
    assert results.Store(tmp_path).records() == [A, B, C]


def test_store_over_a_bad_middle_line_refuses_to_open(tmp_path):
    _write(
        tmp_path / results.RESULTS, storage.to_line(A) + "oops\n" + storage.to_line(B)
    )
    with pytest.raises(ValueError, match=rf"{results.RESULTS}:2 is not a JSON record"):
        results.Store(tmp_path)


def test_a_hash_recorded_twice_keeps_its_first_record(tmp_path):
    first, second = dict(A, value=1), dict(A, value=2)
    _write(tmp_path / results.RESULTS, storage.to_line(first) + storage.to_line(second))
    _write(tmp_path / "results.1.jsonl", storage.to_line(dict(A, value=3)))
    assert results.Store(tmp_path).records() == [first]
    assert results.load(tmp_path) == [first]


def test_merge_shards_orders_by_round_then_bucket(tmp_path):
    records = [
        {"hash": "x", "round": 1, "bucket": 0},
        {"hash": "y", "round": 0, "bucket": 1},
        {"hash": "z", "round": 0, "bucket": 0},
        {"hash": "w", "round": 0, "bucket": 1},
    ]
    path = results.merge_shards(tmp_path, records)
    assert path == tmp_path / results.RESULTS
    assert [r["hash"] for r in _lines(path)] == ["z", "y", "w", "x"]


def test_format_rows_are_appended_across_a_torn_tail(tmp_path):
    row = {"hash": "a", "format": "float32", "bits": 32, "val": 0.5}
    results.append_format_rows(tmp_path, [row])
    with open(tmp_path / results.FORMATS, "a") as f:
        f.write('{"hash": "a", "form')
    assert results.format_rows(tmp_path) == [row]
    results.append_format_rows(tmp_path, [dict(row, format="e4m3", bits=8)])
    assert _lines(tmp_path / results.FORMATS) == [row, dict(row, format="e4m3", bits=8)]


def test_config_is_written_once_and_a_different_one_is_refused(tmp_path):
    config = {"seed": 0, "train": {"steps": 10}, "name": "x"}
    results.write_config(tmp_path / "w", config)
    results.write_config(tmp_path / "w", json.loads(json.dumps(config)))  # same
    assert results.read_config(tmp_path / "w") == config
    changed = dict(config, seed=1, train={"steps": 20})
    # Differing leaves by their full path, with both values.
    with pytest.raises(
        results.ConfigMismatchError,
        match=r"seed: 0 in config.json, 1 now; train.steps: 10 in config.json, 20 now",
    ):
        results.write_config(tmp_path / "w", changed)
    assert results.read_config(tmp_path / "w") == config
    with pytest.raises(FileNotFoundError, match="a jnas workdir"):
        results.read_config(tmp_path / "elsewhere")


@pytest.mark.parametrize(
    "leftover", ["results.jsonl", "results.1.jsonl", "formats.jsonl", "checkpoints"]
)
def test_results_without_a_config_are_refused_unless_adopted(tmp_path, leftover):
    # Deleting config.json must not let another config take over the records.
    work = tmp_path / "w"
    work.mkdir()
    if leftover == "checkpoints":
        (work / "checkpoints" / "abc").mkdir(parents=True)
    else:
        storage.append_line(work / leftover, {"hash": "a"})
    config = {"train": {"lr": 0.5}}
    with pytest.raises(results.ConfigMismatchError, match=r"no config.json.*adopt"):
        results.write_config(work, config)
    assert not (work / results.CONFIG).exists()
    results.write_config(work, config, adopt=True)
    assert results.read_config(work) == config
    results.write_config(tmp_path / "fresh", config)  # nothing to tie: fine


def test_records_without_a_hash_name_the_file_and_line(tmp_path):
    storage.append_lines(tmp_path / results.RESULTS, [{"hash": "a"}, {"round": 0}])
    with pytest.raises(ValueError, match=r"results.jsonl:2: the record has no 'hash'"):
        results.load(tmp_path)
    with pytest.raises(ValueError, match=r"results.jsonl:2: the record has no 'hash'"):
        results.Store(tmp_path)
    (tmp_path / results.RESULTS).write_text("[1, 2]\n")
    with pytest.raises(
        ValueError, match=r"results.jsonl:1 is a JSON list, not a record"
    ):
        results.load(tmp_path)


def test_curves_merge_shards_and_keep_the_first_row_of_each_step(tmp_path):
    row = {"hash": "a", "step": 10, "loss": 1.0, "train_accuracy": 0.5, "lr": 0.1}
    results.append_curves(tmp_path, results.CURVES, [dict(row, step=1), row])
    # A retrained bucket writes its rows again (the same by determinism).
    results.append_curves(tmp_path, "curves.1.jsonl", [dict(row, loss=9.0)])
    with open(tmp_path / results.CURVES, "a") as f:
        f.write('{"hash": "a", "st')  # a kill mid-append
    results.append_curves(tmp_path, results.CURVES, [dict(row, hash="b")])
    got = results.load_curves(tmp_path)
    assert [(r["hash"], r["step"], r["loss"]) for r in got] == [
        ("a", 1, 1.0),
        ("a", 10, 1.0),
        ("b", 10, 1.0),
    ]


_RESTORE_ALONE = """
import sys
import jax
from jnas import distributed, results
pid, port, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
jax.devices()  # both processes' backends up, as in a search
client = distributed.coordination_client()
if pid == 0:
    variables = results.load_checkpoint(workdir, "abc")
    assert float(variables["params"]["w"].sum()) == 6.0
    client.key_value_set("restored", "yes")
else:  # busy elsewhere (training a bucket): never in a restore
    client.blocking_key_value_get("restored", 60_000)
"""


def test_one_process_of_a_job_restores_a_checkpoint_alone(tmp_path):
    # A one-process run writes orbax checkpoints; process 0 of a multi-process
    # rerun restores them at startup while the others train. orbax's default
    # restore meets every process, so process 0 waited for the others (found
    # in issue 17's QAT run: one worker idle for a whole bucket).
    import subprocess
    import sys

    import numpy as np

    from jnas import distributed

    results.save_checkpoint(tmp_path, "abc", {"params": {"w": np.arange(4.0)}})
    port = str(distributed.free_port())
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RESTORE_ALONE, str(pid), port, str(tmp_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in (0, 1)
    ]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err[-2000:]
    finally:
        for proc in procs:
            proc.kill()
