"""Shared by the search tests: the `launch.search` subprocess and its reference run.

tests/test_search.py (kill and resume, the post-training sweep) and
tests/test_distributed.py (two processes) compare their searches with one
uninterrupted search of the tiny quickstart in one process on one device. It
runs once per session (once per worker under pytest-xdist; the README's
`--dist loadgroup` puts every test that uses it on one worker, see
`REFERENCE_GROUP`). Every search shares one persistent compilation cache.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jnas import results

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 900
# The xdist group of the tests that use `reference_search`.
REFERENCE_GROUP = "reference_search"


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
def xla_cache(tmp_path_factory) -> Path:
    """The persistent compilation cache of every search in the session."""
    return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture(scope="session")
def reference_search(tmp_path_factory, xla_cache) -> Reference:
    """The uninterrupted tiny search: one process, one device.

    Tests must not write into its workdir; copy it first.
    """
    work = tmp_path_factory.mktemp("reference_search")
    _finish(_launch(work, xla_cache))
    records = {r["hash"]: r for r in results.load(work)}
    assert len(records) == 4
    return Reference(work, records)
