"""An object-store workdir (gs://) against a fake store behind fsspec's interface.

The fake (tests/fake_object_store.py) serves the gs:// protocol to
``etils.epath``'s fsspec backend, the path gcsfs serves on a pod: whole-object
uploads, no append, no rename, no directories, and uploads that can be killed
half-way. The same guarantees as on a local disk are checked on it: a killed
write leaves the old file, a torn tail is skipped and cut, a killed search
resumes without loss or duplicates, equal to the uninterrupted local run.
"""

import importlib.util
import logging
import sys

import jax
import numpy as np
import pytest
from conftest import _comparable
from etils.epath import backend as epath_backend
from etils.epath import gpath
from fake_object_store import FakeObjectStore, Killed

from experiments import formats as formats_config
from experiments import quickstart
from jnas import report, results, search, storage
from jnas.report import html
from jnas.search import posttraining

WORKDIR = "gs://bucket/run"


@pytest.fixture
def fake_gcs(monkeypatch):
    """gs:// served by the fake store (empty) for the test's duration."""
    registry = sys.modules["fsspec.registry"]._registry  # fsspec's protocol table
    monkeypatch.setitem(registry, "gs", FakeObjectStore)
    monkeypatch.setitem(registry, "gcs", FakeObjectStore)
    # epath prefers TensorFlow's gfile for gs:// where TF is installed.
    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    storage._check_backend.cache_clear()
    FakeObjectStore.reset()
    yield FakeObjectStore
    FakeObjectStore.reset()
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    storage._check_backend.cache_clear()


def _object(key: str) -> bytes:
    return FakeObjectStore.objects[key.removeprefix("gs://")]


def test_paths_local_stay_pathlib_and_bad_schemes_are_refused():
    assert storage.path("runs/a") == __import__("pathlib").Path("runs/a")
    assert not storage.is_remote("/tmp/x") and storage.is_remote("gs://b/x")
    with pytest.raises(ValueError) as err:
        storage.path("http://host/run")
    assert "'http://host/run'" in str(err.value) and "http://" in str(err.value)
    assert "gs://, s3://, az://" in str(err.value)


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) for m in ("s3fs", "tensorflow")),
    reason="s3fs or TensorFlow is installed: s3:// has a backend",
)
def test_an_object_store_without_its_library_says_what_to_install():
    storage._check_backend.cache_clear()
    with pytest.raises(ValueError, match=r's3fs.*pip install "jnas\[s3\]"'):
        storage.path("s3://bucket/run")


def test_writes_and_appends_are_whole_objects(fake_gcs):
    path = storage.path(f"{WORKDIR}/results.jsonl")
    storage.append_lines(path, [{"hash": "a"}])
    storage.append_lines(path, [{"hash": "b"}, {"hash": "c"}])
    assert _object(str(path)) == b'{"hash": "a"}\n{"hash": "b"}\n{"hash": "c"}\n'
    assert [r["hash"] for r in storage.iter_records(path)] == ["a", "b", "c"]
    storage.atomic_write(f"{WORKDIR}/config.json", "{}\n")
    assert _object(f"{WORKDIR}/config.json") == b"{}\n"
    # Three uploads of results.jsonl (no append mode, no rename: the fake has
    # neither and would have raised) and one of config.json.
    assert fake_gcs.uploads == 3


def test_a_killed_upload_leaves_the_old_object_whole(fake_gcs):
    path = f"{WORKDIR}/results.jsonl"
    storage.append_lines(path, [{"hash": "a"}])
    fake_gcs.kill_upload("results.jsonl")
    with pytest.raises(Killed):
        storage.append_lines(path, [{"hash": "b"}])
    assert _object(path) == b'{"hash": "a"}\n'
    fake_gcs.kill_upload("config.json")
    with pytest.raises(Killed):
        storage.atomic_write(f"{WORKDIR}/config.json", "{}\n")
    assert not storage.path(f"{WORKDIR}/config.json").exists()


def test_a_torn_tail_is_skipped_then_cut_before_the_next_append(fake_gcs):
    # E.g. a shard copied to the bucket from the disk of a killed local run.
    path = f"{WORKDIR}/results.0.jsonl"
    fake_gcs.objects[path.removeprefix("gs://")] = b'{"hash": "a"}\n{"hash": "b", "x'
    assert [r["hash"] for r in storage.iter_records(path)] == ["a"]
    storage.append_lines(path, [{"hash": "c"}])
    assert _object(path) == b'{"hash": "a"}\n{"hash": "c"}\n'
    # A bad line that is not the last is corruption, named, not skipped.
    fake_gcs.objects[path.removeprefix("gs://")] = b'{"hash": "a"}\n{"ha\n{}\n'
    with pytest.raises(ValueError, match=r"results.0.jsonl:2 is not a JSON record"):
        list(storage.iter_records(path))


def test_shards_merge_and_tie_to_the_config_on_an_object_store(fake_gcs):
    records = [
        {"hash": f"h{i}", "round": 0, "bucket": i % 2, "space": "s"} for i in range(4)
    ]
    for pid in range(2):
        store = results.Store(WORKDIR, results.shard_name(pid, 2))
        for r in records[pid::2]:
            store.append(r)
    assert results.results_without_config(WORKDIR) == [
        "results.0.jsonl",
        "results.1.jsonl",
    ]
    with pytest.raises(results.ConfigMismatchError, match="no config.json"):
        results.write_config(WORKDIR, {"seed": 0})
    merged = results.merge_shards(WORKDIR, results.load(WORKDIR))
    assert str(merged) == f"{WORKDIR}/results.jsonl"
    assert [r["hash"] for r in results.load(WORKDIR)] == ["h0", "h2", "h1", "h3"]
    # A shard appended again after the merge: load still has each hash once.
    results.Store(WORKDIR, results.shard_name(1, 2))  # reads, appends nothing
    assert len(results.load(WORKDIR)) == 4


def test_a_search_killed_mid_bucket_resumes_from_its_snapshot_on_the_object_store(
    fake_gcs, xla_cache, reference_search, caplog
):
    config = quickstart.get_config("tiny")
    config.compilation_cache = str(xla_cache)
    config.train.snapshot_every_s = 1e-9  # a snapshot at every fetch
    want = reference_search.records
    # Two buckets of 30 steps; curve rows are uploaded at steps 1, 10, 20 and
    # 30 of each. Killed while uploading the second bucket's step-20 rows:
    # its snapshot of step 10 is on the store, the first bucket's records too.
    fake_gcs.kill_upload("/curves.jsonl", nth=7)
    with pytest.raises(Killed):
        search.run(config, WORKDIR)
    assert len(results.load(WORKDIR)) == 2
    (snapshot,) = storage.path(f"{WORKDIR}/snapshots").iterdir()

    caplog.set_level(logging.INFO)
    records = search.run(config, WORKDIR)
    assert "resumed from its snapshot at step 10 of 30" in caplog.text
    assert not snapshot.exists()  # dropped once the bucket's records are stored
    assert len(records) == 4
    lines = list(storage.iter_records(f"{WORKDIR}/results.jsonl"))
    assert len(lines) == 4, "a candidate was lost or recorded twice"
    got = {r["hash"]: r for r in lines}
    assert set(got) == set(want)
    # Bit-identical to the uninterrupted local run: losses, accuracies,
    # formats, everything but the wall time.
    for h in want:
        assert _comparable(got[h]) == _comparable(want[h])
    # Curves equal the uninterrupted local run's (the killed bucket's rows,
    # written again, are deduplicated); checkpoints hold its very variables.
    assert results.load_curves(WORKDIR) == results.load_curves(reference_search.workdir)
    for h in want:
        restored = results.load_checkpoint(WORKDIR, h)
        ref = results.load_checkpoint(reference_search.workdir, h)
        assert jax.tree.structure(restored) == jax.tree.structure(ref)
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(ref), strict=True):
            np.testing.assert_array_equal(a, b)

    # Figures, the report and the format sweep, written to the store.
    figures = report.write_all(
        records, f"{WORKDIR}/figures", curves=results.load_curves(WORKDIR)
    )
    for path in figures:
        assert storage.nonempty(path), path
    assert _object(f"{WORKDIR}/figures/accuracy_vs_memory.png").startswith(b"\x89PNG")
    assert b"plotly" in _object(str(html.write_report(WORKDIR)))
    sweep = formats_config.get_config()
    sweep.exponents, sweep.mantissas, sweep.splits = [5], [2], ["val"]
    sweep.eval_batch_size = 16  # CPU-sized (tests/test_search.py's sweep)
    rows = posttraining.sweep(sweep, WORKDIR)
    assert len(rows) == 4 * 2
    for h, record in want.items():
        (f32,) = [r for r in rows if r["hash"] == h and r["format"] == "float32"]
        assert f32["val"] == pytest.approx(record["accuracy"]["float32"]["val"])
