"""The on-disk cache of decoded dataset splits: .npy arrays plus JSON, no pickles.

An entry is a directory `<cache_dir>/<name>-<key>/<split>/` holding images.npy,
labels.npy and info.json. `<key>` digests what identifies the source's content
(`fingerprint`), so a changed source is decoded again instead of served stale.

Writes are atomic: an entry is written into a temporary directory beside it and
renamed into place, so a process killed mid-write leaves no entry (only a
`.tmp-*` directory that nothing reads). Two processes that race to write the
same entry both succeed; the first rename wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

# Bump when the meaning of an entry changes (decoding, ordering, file format).
CACHE_VERSION = 1

log = logging.getLogger(__name__)


def fingerprint(path: Path) -> dict:
    """What identifies a source's content: its path plus size/mtime of its files.

    Args:
      path: a file (an archive, a tfds dataset_info.json) or a directory.

    Returns:
      A JSON-serialisable dict.
    """
    path = path.resolve()
    if path.is_file():
        st = path.stat()
        return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    # A directory's own mtime misses in-place edits of its files, so every file
    # counts; stat-ing 60,000 files costs about 0.2 s.
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for fname in sorted(filenames):
            full = os.path.join(dirpath, fname)
            st = os.stat(full)
            rel = os.path.relpath(full, path)
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"path": str(path), "files": digest.hexdigest()}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def entry_dir(cache_dir: Path, name: str, key_data: dict) -> Path:
    """The directory holding the cached splits of one source.

    Args:
      cache_dir: the cache root.
      name: dataset name, for people reading the directory listing.
      key_data: JSON-serialisable identity of the source (see `fingerprint`).

    Returns:
      `<cache_dir>/<name>-<16 hex digits>`.
    """
    key = dict(key_data, cache_version=CACHE_VERSION)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_dir / f"{_safe(name)}-{digest[:16]}"


def split_dir(entry: Path, split: str) -> Path:
    """The directory of one split inside an entry."""
    return entry / _safe(split)


def read_split(path: Path) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """Reads a cached split, or returns None if there is none.

    Args:
      path: from `split_dir`.

    Returns:
      (images, labels, info) or None.
    """
    if not (path / "info.json").is_file():
        return None
    try:
        info = json.loads((path / "info.json").read_text())
        images = np.load(path / "images.npy", allow_pickle=False)
        labels = np.load(path / "labels.npy", allow_pickle=False)
    except (OSError, ValueError) as e:
        # Only a hand-edited or damaged entry gets here (writes are atomic):
        # drop it and decode again rather than fail.
        log.warning("ignoring unreadable cache entry %s: %s", path, e)
        shutil.rmtree(path, ignore_errors=True)
        return None
    return images, labels, info


def read_info(path: Path) -> dict | None:
    """Reads only the info.json of a cached split (cheap), or None."""
    try:
        return json.loads((path / "info.json").read_text())
    except FileNotFoundError:
        return None


def write_split(path: Path, images: np.ndarray, labels: np.ndarray, info: dict):
    """Writes a split atomically (see the module doc).

    Args:
      path: from `split_dir`.
      images: array to store as images.npy.
      labels: array to store as labels.npy.
      info: JSON-serialisable metadata.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        np.save(tmp / "images.npy", images, allow_pickle=False)
        np.save(tmp / "labels.npy", labels, allow_pickle=False)
        (tmp / "info.json").write_text(json.dumps(info))
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "info.json").is_file():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, value) -> None:
    """Writes a small JSON file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def read_json(path: Path):
    """Reads a JSON file, or returns None if it does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
