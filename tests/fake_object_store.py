"""A fake object store behind fsspec's interface, serving gs:// in tests.

It keeps what the workdir code may rely on from Cloud Storage (or S3) and no
more, so a test on it fails where the real store would:

- objects are written whole: an upload becomes visible when it closes
  normally; an upload interrupted by an exception (a killed process) leaves
  the old object, or none;
- no append (``"ab"`` is refused, as gcsfs refuses it), no rename (the real
  one is a copy then a delete, not atomic), no directories (a "directory" is
  the prefix of some object; mkdir does nothing);
- `kill_upload(suffix, nth)`: the nth upload from now of an object whose
  name ends with `suffix` dies half-way through, raising `Killed` (a
  BaseException, like the SIGKILL it stands for: nothing catches it), as a
  process killed mid-upload.

Registered for the "gs" and "gcs" protocols by the `fake_gcs` fixture (in
tests/test_storage.py), so ``etils.epath.Path("gs://bucket/run")`` goes
through epath's fsspec backend to it: the same code path as with gcsfs.
"""

from __future__ import annotations

import io

from fsspec.spec import AbstractFileSystem


class Killed(BaseException):
    """The process died during an upload (raised by the fake store)."""


class FakeObjectStore(AbstractFileSystem):
    """An in-memory object store: {"bucket/key": bytes}."""

    protocol = ("gs", "gcs")
    cachable = False
    objects: dict[str, bytes] = {}
    uploads = 0  # uploads completed, for tests that count them
    _kill: list | None = None  # [suffix, uploads of it still to let through]

    def __init__(self, *args, **kwargs):  # e.g. finalize_on_close=True
        super().__init__()

    @classmethod
    def reset(cls) -> None:
        cls.objects, cls.uploads, cls._kill = {}, 0, None

    @classmethod
    def kill_upload(cls, suffix: str, nth: int = 1) -> None:
        """The nth upload from now of an object named *`suffix` dies half-way."""
        cls._kill = [suffix, nth - 1]

    def _key(self, path) -> str:
        return self._strip_protocol(path).strip("/")

    def _open(self, path, mode="rb", **kwargs):
        key = self._key(path)
        if mode == "rb":
            if key not in self.objects:
                raise FileNotFoundError(path)
            return io.BytesIO(self.objects[key])
        if mode == "wb":
            return _Upload(type(self), key)
        raise NotImplementedError(
            f"mode {mode!r}: an object store reads and writes whole objects "
            "('rb', 'wb')"
        )

    def _entries(self, key: str) -> dict[str, dict]:
        prefix = key + "/" if key else ""
        out = {}
        for name, data in self.objects.items():
            if not name.startswith(prefix):
                continue
            head, sep, _ = name[len(prefix) :].partition("/")
            child = prefix + head
            if sep:
                out[child] = {"name": child, "type": "directory", "size": 0}
            else:
                out[child] = {"name": child, "type": "file", "size": len(data)}
        return out

    def ls(self, path, detail=True, **kwargs):
        key = self._key(path)
        if key in self.objects:
            entries = [{"name": key, "type": "file", "size": len(self.objects[key])}]
        else:
            entries = sorted(self._entries(key).values(), key=lambda e: e["name"])
            if not entries:
                raise FileNotFoundError(path)
        return entries if detail else [e["name"] for e in entries]

    def info(self, path, **kwargs):
        key = self._key(path)
        if key in self.objects:
            return {"name": key, "type": "file", "size": len(self.objects[key])}
        if self._entries(key):
            return {"name": key, "type": "directory", "size": 0}
        raise FileNotFoundError(path)

    def mkdir(self, path, create_parents=True, **kwargs):
        pass  # no directories on an object store

    def makedirs(self, path, exist_ok=False):
        pass

    def rm_file(self, path):
        key = self._key(path)
        if key not in self.objects:
            raise FileNotFoundError(path)
        del self.objects[key]

    def _rm(self, path):
        self.rm_file(path)

    def rm(self, path, recursive=False, maxdepth=None):
        key = self._key(path)
        if key in self.objects:
            del self.objects[key]
            return
        inside = [k for k in self.objects if k.startswith(key + "/")]
        if not inside:
            raise FileNotFoundError(path)
        if not recursive:
            raise IsADirectoryError(path)
        for k in inside:
            del self.objects[k]

    def mv(self, *args, **kwargs):
        raise NotImplementedError(
            "the fake object store has no rename: a real one copies then "
            "deletes, which is not atomic"
        )

    rename = mv


class _Upload(io.BytesIO):
    """A write: committed as one object on a normal close, dropped otherwise."""

    def __init__(self, store: type[FakeObjectStore], key: str):
        super().__init__()
        self.store, self.key, self.dropped, self.doomed = store, key, False, False
        kill = store._kill
        if kill is not None and key.endswith(kill[0]):
            if kill[1] == 0:
                store._kill, self.doomed = None, True
            kill[1] -= 1

    def write(self, data) -> int:
        if self.doomed:
            super().write(data[: len(data) // 2])
            self.dropped = True  # the upload never completes
            raise Killed(f"killed while uploading {self.key}")
        return super().write(data)

    def __exit__(self, exc_type, *rest):
        if exc_type is not None:
            self.dropped = True
        return super().__exit__(exc_type, *rest)

    def close(self) -> None:
        if not self.closed and not self.dropped:
            self.store.objects[self.key] = self.getvalue()
            self.store.uploads += 1
        super().close()
