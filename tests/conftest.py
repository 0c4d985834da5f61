"""Shared by every test: one compilation cache per run, and the reference searches.

Compiling dominates this suite (XLA compiles the same tiny programs in many
processes: two pytest-xdist workers and the `launch.search` subprocesses of
the search tests), so:

- `pytest_configure` makes one jnas cache folder for the whole run, a fresh
  temporary folder (cold: every run compiles each program once and decodes
  each data set once), and puts it in the environment before xdist starts
  its workers: `$JNAS_CACHE_DIR`, whose `xla/` is JAX's persistent
  compilation cache (also what a search's `compilation_cache="auto"` means),
  so every worker and every subprocess they start reads and writes the same
  caches, and nothing of the user's ~/.cache/jnas is read or written. It is
  deleted when the run ends. `JNAS_TEST_CACHE_DIR=DIR` uses DIR instead and
  keeps it (a warm cache for repeated local runs).
- Every worker keeps freed memory as the launchers do (`jnas.hostmem`).
- The searches that tests compare against (`reference_search`, the tiny
  quickstart in one process on one device, and `one_per_bucket`) run once per
  run, not once per xdist worker: the first worker to need one runs it under
  a file lock in the run's shared temporary folder, the others wait for it
  and read it (`run_once`). Tests must not write into their workdirs.
"""

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from jnas import hostmem, results
from jnas.population import engine

REPO = Path(__file__).resolve().parents[1]
# This process's cores before `_pin_worker` narrows them.
_ALL_CORES = frozenset(os.sched_getaffinity(0))
TIMEOUT = 900
# JAX reads these at import: every process of the run caches every program
# (the defaults skip programs that compile in under a second, most of ours).
_JAX_CACHE_ENV = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}
# The cache folder this run made (and deletes at its end), in the controller.
_OWNED_CACHE = pytest.StashKey[str]()


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        path = os.environ.get("JNAS_TEST_CACHE_DIR")
        if not path:
            path = tempfile.mkdtemp(prefix="jnas-test-cache-")
            config.stash[_OWNED_CACHE] = path
        os.environ["JNAS_CACHE_DIR"] = path
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(Path(path) / "xla")
        os.environ.update(_JAX_CACHE_ENV)
    else:
        _pin_worker(config.workerinput["workerid"])
    # This process imported JAX before the environment was set (above).
    engine.enable_compilation_cache(os.environ["JAX_COMPILATION_CACHE_DIR"])
    # The in-process tests run programs as the launchers do (jnas.hostmem);
    # the searches they start set it up themselves.
    hostmem.tune_malloc()


def _pin_worker(worker_id: str) -> None:
    """Pins xdist worker gwN to core N (mod the cores), before JAX starts.

    XLA:CPU sizes its thread pools by the process's cores: unpinned, each of
    the two workers (and each search it starts) runs a pool as wide as the
    machine, and on 2 cores they spin against each other. Pinned, a worker
    and everything it starts use one core, as the quickstart's local workers
    do; the processes a test starts inherit the pin.
    """
    if os.environ.get("JNAS_TEST_PIN", "1") == "0":
        return
    cores = sorted(os.sched_getaffinity(0))
    index = int(worker_id.removeprefix("gw"))
    os.sched_setaffinity(0, {cores[index % len(cores)]})


def pytest_unconfigure(config):
    owned = config.stash.get(_OWNED_CACHE, None)
    if owned:
        shutil.rmtree(owned, ignore_errors=True)


def _launch(workdir, cache, *flags, devices=1) -> subprocess.Popen:
    """`launch.search` of the tiny quickstart on CPU with `devices` devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    cmd = [
        sys.executable,
        "-m",
        "launch.search",
        "--config=experiments/quickstart.py:tiny",
        f"--workdir={workdir}",
        f"--config.compilation_cache={cache}",
        *flags,
    ]
    if devices > 1:
        # A search over several fake devices gets every core back from its
        # worker's pin (`_pin_worker`): XLA:CPU runs each device's share on
        # its own thread, and 8 of them on one core left it idle half the
        # time (measured: 109 s wall for 46 s of CPU, against 41 s on 2
        # cores). `taskset`, not a preexec_fn: this process has threads.
        cores = ",".join(str(c) for c in sorted(_ALL_CORES))
        cmd = ["taskset", "--cpu-list", cores, *cmd]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(*procs) -> list[str]:
    """Waits for the searches; each must succeed. Returns their stderr."""
    errs = []
    for proc in procs:
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err[-3000:]
        errs.append(err)
    return errs


def _comparable(record):
    record = json.loads(json.dumps(record))
    record["train"].pop("seconds")  # wall time differs between runs
    return record


@dataclasses.dataclass(frozen=True)
class Reference:
    """A finished search: its workdir (read only) and records by hash."""

    workdir: Path
    records: dict


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory, worker_id) -> Path:
    """A temporary folder shared by every xdist worker of this run."""
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is <run folder>/popen-gwN.
    return base if worker_id == "master" else base.parent


def run_once(folder: Path, name: str, make) -> Path:
    """`folder/name`, made by `make(path)` once per run, whichever worker asks first.

    The others block on the lock meanwhile. A `make` that fails leaves no
    "done" mark, so the next worker to ask tries (and fails) on its own.
    """
    path = folder / name
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (folder / f"{name}.done").exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            make(path)
            (folder / f"{name}.done").touch()
    return path


@pytest.fixture(scope="session")
def xla_cache() -> Path:
    """The persistent compilation cache of every process of the run."""
    return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])


def _reference(run_folder, xla_cache, name, *flags) -> Reference:
    work = run_once(
        run_folder, name, lambda path: _finish(_launch(path, xla_cache, *flags))
    )
    records = {r["hash"]: r for r in results.load(work)}
    assert len(records) == 4
    return Reference(work, records)


@pytest.fixture(scope="session")
def reference_search(run_folder, xla_cache) -> Reference:
    """The uninterrupted tiny search: one process, one device.

    Tests must not write into its workdir; copy it first.
    """
    return _reference(run_folder, xla_cache, "reference_search")


# The tiny search with one candidate per bucket (the multi-process kill tests
# need more buckets than processes).
ONE_PER_BUCKET = "--config.train.max_bucket=1"


@pytest.fixture(scope="session")
def one_per_bucket(run_folder, xla_cache) -> Reference:
    """The tiny search with one candidate per bucket, in one process."""
    return _reference(run_folder, xla_cache, "one_per_bucket", ONE_PER_BUCKET)
