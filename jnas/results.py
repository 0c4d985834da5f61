"""The workdir's results store: one JSON line per finished candidate.

A search's workdir holds:

- ``config.json``: the resolved config (written once; a rerun with a different
  config is refused, so a resumed search cannot silently mix two setups);
- ``results.jsonl``: one record per finished candidate, appended and flushed
  to disk (``os.fsync``) as soon as the candidate is done, so a kill loses at
  most the candidates still training. A torn last line (a kill mid-write) is
  ignored on reading and overwritten by the next append;
- ``checkpoints/<hash>/``: orbax checkpoints of the trained variables.

``pandas.read_json(path, lines=True)`` reads ``results.jsonl``. Record fields
(all JSON types; missing values are null):

=================  ==========================================================
hash               ``Arch.hash()`` of the candidate (unique per store)
space, law, index  where it was sampled (``spaces.sample(space, law, index)``)
arch               the architecture's JSON (``Arch.to_json``)
round              search round (0 for plain random sampling)
params, flops,     counts from ``jnas.cost``
macs
memory_bytes       {format name: bytes of the params in that format}, with
                   keys "float32", "half" and "custom" (the per-model format)
latency_ms         {"predicted": ms or null, "measured": ms or null}
accuracy           {format name: {"val": acc, "test": acc}} for "float32",
                   "half" and "custom"
custom_format      the per-model format, e.g. "e4m5" (``FloatFormat`` text)
format_grid        [{"format", "bits", "val"}] the format search's evaluations
train              {"steps", "lr", "seed", "final_loss", "diverged", "seconds",
                   "strategy", "bucket"}
=================  ==========================================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

RESULTS = "results.jsonl"
CONFIG = "config.json"


class ConfigMismatchError(ValueError):
    """The workdir was made by a different config."""


def write_config(workdir: str | Path, config: Mapping[str, Any]) -> None:
    """Writes ``config.json`` once; refuses a different config on rerun.

    Args:
      workdir: the search's folder (created if missing).
      config: the resolved config as plain JSON types.

    Raises:
      ConfigMismatchError: the workdir holds a different config; the message
        names the first differing keys.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / CONFIG
    text = json.dumps(config, indent=2, sort_keys=True)
    if path.exists():
        old = json.loads(path.read_text())
        new = json.loads(text)
        if old != new:
            keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigMismatchError(
                f"{path} was written by a different config (keys differ: "
                f"{', '.join(keys[:8])}); use a new --workdir or the same config"
            )
        return
    atomic_write(path, text + "\n")


def read_config(workdir: str | Path) -> dict[str, Any]:
    """Returns the workdir's ``config.json``."""
    path = Path(workdir) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a jnas workdir?")
    return json.loads(path.read_text())


def atomic_write(path: Path, data: str | bytes) -> None:
    """Writes a whole file so that a kill leaves the old file or the new one.

    The data goes to ``<name>.tmp``, is flushed and fsynced, then renamed.
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def to_line(record: Mapping[str, Any]) -> str:
    """One record as a JSON line (sorted keys; NaN refused, JSON has none)."""
    return json.dumps(record, sort_keys=True, allow_nan=False) + "\n"


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yields the records of a JSON-lines file; a torn last line is skipped.

    Raises:
      ValueError: a line other than the last is not valid JSON (the file was
        edited or corrupted; the message names the line).
    """
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: a torn append
                return
            raise ValueError(f"{path}:{number} is not a JSON record: {e}") from None
        yield record


def append_line(path: str | Path, record: Mapping[str, Any]) -> None:
    """Appends one JSON record to a JSON-lines file, flushed and fsynced."""
    with open(path, "a") as f:
        f.write(to_line(record))
        f.flush()
        os.fsync(f.fileno())


class Store:
    """Append-only results of one workdir (or one process's shard of it).

    Attributes:
      path: the JSON-lines file.
      done: hash -> record of the candidates already finished.
    """

    def __init__(self, workdir: str | Path, name: str = RESULTS):
        self.path = Path(workdir) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict[str, Any]] = {}
        for record in iter_records(self.path):
            self.done.setdefault(record["hash"], record)
        self._truncate_torn_tail()

    def _truncate_torn_tail(self) -> None:
        # Cut a partial last line so the next append starts on a fresh line.
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def __contains__(self, arch_hash: str) -> bool:
        return arch_hash in self.done

    def __len__(self) -> int:
        return len(self.done)

    def records(self) -> list[dict[str, Any]]:
        """The finished records, in the order they were written."""
        return list(self.done.values())

    def append(self, record: Mapping[str, Any]) -> None:
        """Writes one finished candidate to disk (flushed and fsynced).

        Raises:
          ValueError: the record has no "hash", or that hash is already stored.
        """
        arch_hash = record.get("hash")
        if not arch_hash:
            raise ValueError("a result record needs a 'hash'")
        if arch_hash in self.done:
            raise ValueError(f"candidate {arch_hash} is already in {self.path}")
        append_line(self.path, record)
        self.done[arch_hash] = dict(record)


def load(workdir: str | Path) -> list[dict[str, Any]]:
    """All finished records of a workdir, merging per-process shards.

    Reads ``results.jsonl`` and any ``results.*.jsonl`` shards (multi-host
    runs); a candidate recorded twice keeps its first record.
    """
    workdir = Path(workdir)
    paths = [workdir / RESULTS, *sorted(workdir.glob("results.*.jsonl"))]
    seen: dict[str, dict[str, Any]] = {}
    for path in paths:
        for record in iter_records(path):
            seen.setdefault(record["hash"], record)
    return list(seen.values())
