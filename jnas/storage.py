"""Files that survive kills, on a local disk or on an object store.

A workdir is a local folder or an object-store prefix (``gs://bucket/run``,
``s3://...``, ``az://...``), as TPU pods have no shared POSIX filesystem.
Object-store paths go through ``etils.epath`` (the path library of tfds and
orbax) and its fsspec backend (``pip install "jnas[gcs]"`` for gcsfs, or
TensorFlow's gfile where TensorFlow is installed); local paths stay
``pathlib.Path`` so that a local run keeps its fsync'd appends.

Two primitives keep every file whole across kills, with the same guarantee on
both kinds of storage:

- ``atomic_write`` (a whole file). Local: a temporary name, fsync, rename.
  Object store: one upload of the whole object, which the store makes visible
  whole or not at all (its rename is a copy then a delete, not atomic, so it
  is never used).
- ``append_lines`` (JSON lines). Local: a torn last line left by a killed
  writer is cut, then the lines are appended and fsynced. Object store: there
  is no append, so the object is rewritten whole (old lines + new ones) by one
  upload; each such file has a single writer (a process's own shard), so no
  update is lost. The cost is the file's size per append; shards are per
  process, so a few MB at most.

``iter_records`` skips a torn last line (a file cut by a killed local writer,
or one copied from such a disk to a bucket).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from etils import epath

# The object stores epath routes through fsspec, and the fsspec package that
# serves each (what to pip install when it is missing).
OBJECT_STORES = {"gs": "gcsfs", "s3": "s3fs", "az": "adlfs"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

AnyPath = Path | epath.Path


def scheme(location: str | os.PathLike) -> str | None:
    """The URI scheme of a location ("gs" for gs://b/x), None for a local path."""
    match = _SCHEME.match(os.fspath(location))
    return match.group(1) if match else None


def is_remote(location: str | os.PathLike) -> bool:
    """Whether a location is on an object store (a gs://, s3:// or az:// URI)."""
    return scheme(location) is not None


def path(location: str | os.PathLike) -> AnyPath:
    """A location as a path: ``pathlib.Path`` if local, ``epath.Path`` if remote.

    Raises:
      ValueError: a URI whose scheme is not an object store jnas can write to
        (the message names it and the allowed ones), or one whose fsspec
        package is missing (the message says what to install).
    """
    if isinstance(location, Path):
        return location
    name = scheme(location)
    if name is None:
        return Path(location)
    if name not in OBJECT_STORES:
        allowed = ", ".join(f"{s}://" for s in OBJECT_STORES)
        raise ValueError(
            f"{os.fspath(location)!r}: the {name}:// scheme is not supported; a "
            f"workdir is a local folder or an object-store URI ({allowed})"
        )
    _check_backend(name)
    return epath.Path(os.fspath(location))


@functools.cache
def _check_backend(name: str) -> None:
    """Fails early, with what to install, when no library serves `name`://."""
    import importlib.util

    import fsspec

    try:
        fsspec.get_filesystem_class(name)
        return
    except (ImportError, ValueError):
        pass
    # epath prefers TensorFlow's gfile for gs:// and s3:// where TF exists.
    if name != "az" and importlib.util.find_spec("tensorflow") is not None:
        return
    package = OBJECT_STORES[name]
    raise ValueError(
        f"a {name}:// workdir needs the {package} package (or TensorFlow): "
        f'pip install "jnas[{"gcs" if name == "gs" else name}]"'
    )


def atomic_write(location: str | os.PathLike, data: str | bytes) -> None:
    """Writes a whole file so that a kill leaves the old file or the new one.

    Local: the data goes to ``<name>.tmp``, is flushed and fsynced, then
    renamed. Object store: one upload of the whole object.
    """
    target = path(location)
    if not isinstance(target, Path):  # an object store: one upload
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        return
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def to_line(record: Mapping[str, Any]) -> str:
    """One record as a JSON line (sorted keys; NaN refused, JSON has none)."""
    return json.dumps(record, sort_keys=True, allow_nan=False) + "\n"


def iter_records(
    location: str | os.PathLike, require: tuple[str, ...] = ()
) -> Iterator[dict[str, Any]]:
    """Yields the records of a JSON-lines file; a torn last line is skipped.

    Args:
      location: the file (missing: no records).
      require: keys every record must have (it must be a JSON object then).

    Raises:
      ValueError: a line other than the last is not valid JSON, or a record
        lacks a required key (the file was edited or corrupted; the message
        names the file and line).
    """
    file = path(location)
    if not file.exists():
        return
    lines = file.read_bytes().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: a torn append
                return
            raise ValueError(f"{file}:{number} is not a JSON record: {e}") from None
        if require:
            if not isinstance(record, dict):
                raise ValueError(
                    f"{file}:{number} is a JSON {type(record).__name__}, not a "
                    "record (an object)"
                )
            missing = [k for k in require if k not in record]
            if missing:
                names = ", ".join(map(repr, missing))
                raise ValueError(
                    f"{file}:{number}: the record has no {names} (every record "
                    f"needs {', '.join(map(repr, require))})"
                )
        yield record


def _whole_lines(data: bytes) -> bytes:
    """`data` without a partial last line (what a killed append leaves)."""
    if not data or data.endswith(b"\n"):
        return data
    return data[: data.rfind(b"\n") + 1]


def cut_torn_tail(location: str | os.PathLike) -> None:
    """Cuts a partial last line (a killed append) so the next append is whole."""
    file = path(location)
    if not file.exists():
        return
    if not isinstance(file, Path):  # an object: rewritten whole if torn
        data = file.read_bytes()
        if _whole_lines(data) != data:
            atomic_write(file, _whole_lines(data))
        return
    with open(file, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        f.truncate(len(_whole_lines(f.read())))


def append_lines(
    location: str | os.PathLike, records: Iterable[Mapping[str, Any]]
) -> None:
    """Appends JSON records to a JSON-lines file, flushed and fsynced.

    A torn last line of an earlier, killed writer is cut first, so every line
    of the file stays a whole record. On an object store the object is
    rewritten whole by one upload (the file must have a single writer).
    """
    text = "".join(to_line(r) for r in records)
    file = path(location)
    if not isinstance(file, Path):
        old = file.read_bytes() if file.exists() else b""
        atomic_write(file, _whole_lines(old) + text.encode())
        return
    cut_torn_tail(file)
    with open(file, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def append_line(location: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Appends one JSON record (``append_lines`` of one)."""
    append_lines(location, [record])


def nonempty(file: AnyPath) -> bool:
    """Whether a file exists and holds at least one byte (local or object)."""
    if isinstance(file, Path):
        return file.exists() and file.stat().st_size > 0
    return file.exists() and bool(file.stat().length)
