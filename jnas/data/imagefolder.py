"""Image-folder datasets: `<root>/<split>/<class>/<image>.{png,jpg,jpeg}`.

The layout is read from a directory or straight from a .tar / .tar.gz / .tgz
archive of it, without extracting anything to disk. All splits are decoded in
one pass because a compressed tar can only be read front to back: reading the
test split costs a full pass anyway, so the train split comes for free.

Archive safety: every member name is checked before its bytes are read. An
absolute name, a `..` component, a link, a device or FIFO, or an image outside
the archive's single root folder raises `UnsafeArchiveError` naming the member.
Nothing is ever written to disk here, so a hostile archive can at most fail.

Conventions (documented because they fix the labels):
- Labels are indices into the sorted class-folder names, the torchvision
  ImageFolder rule. For CIFAR-10 the sorted names are the standard label order.
- Images within a class are sorted by file name, so the order of examples does
  not depend on the file system or on the order of the archive.
- Every image is decoded to RGB (grayscale is replicated), and all images must
  share one height and width.
- Files without an image suffix (README, .DS_Store) are ignored.

Decoding runs in this process: in the calling thread by default, or in a
pool of `num_workers` threads (Pillow releases the GIL while it decodes, which
pays for large images). Never in worker processes: a process pool must spawn
(forking a process that has started JAX's threads can deadlock), and spawned
workers re-import the caller's script, which crashes (or reruns) a plain
script without an `if __name__ == "__main__":` guard. Tiny images such as
CIFAR-10's are dominated by per-image Python overhead that holds the GIL, so
threads do not help them (docs/data.md has the timings); the decoded arrays
are cached (`jnas.data.datasets`), so this is paid once.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import io
import os
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
LAYOUT = "<root>/<split>/<class>/<image>.{png,jpg,jpeg}"

# Images per task sent to a worker: large enough to amortise the inter-process
# transfer, small enough that two workers stay busy on a 10k-image split.
_CHUNK = 2048
# A CIFAR-sized image is a few KB; a member this large is not one of ours and
# is refused before its bytes are read into memory.
_MAX_MEMBER_BYTES = 64 << 20


class UnsafeArchiveError(ValueError):
    """An archive member would be read from outside the archive's root."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One decoded split of an image folder.

    Attributes:
      images: uint8 [N, H, W, 3].
      labels: int32 [N], indices into `class_names`.
      class_names: sorted class-folder names.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]


def is_archive(path: str | os.PathLike) -> bool:
    """Whether `path` names a tar archive this module reads (by its suffix)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def looks_like_image_folder(path: str | os.PathLike) -> bool:
    """Cheap test used by source auto-detection: an archive file, or a directory
    whose sub-directories contain class directories."""
    path = Path(path)
    if path.is_file():
        return is_archive(path)
    if not path.is_dir():
        return False
    for split_dir in _subdirs(path):
        if any(True for _ in _subdirs(split_dir)):
            return True
    return False


def read(
    path: str | os.PathLike, *, num_workers: int | None = None
) -> dict[str, Split]:
    """Decodes every split of an image folder or archive.

    Args:
      path: the `<root>` directory, or a .tar/.tar.gz/.tgz archive whose members
        are `<root>/<split>/<class>/<image>` (or `<split>/<class>/<image>`).
      num_workers: decoding threads; None or 1 decodes in the calling thread.
        A pool is only started once more than one chunk of images is found.

    Returns:
      {split name: Split}, every split with the same class names.

    Raises:
      FileNotFoundError: `path` does not exist or holds no images.
      UnsafeArchiveError: an archive member is unsafe (see the module doc).
      ValueError: an image cannot be decoded (the message names the file), image
        sizes differ, or the class folders differ between splits.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no image folder or archive at {path}")
    if num_workers is None:
        num_workers = 1  # threads only pay for large images (module doc)
    if path.is_dir():
        entries = _walk_directory(path)
    elif is_archive(path):
        entries = _walk_archive(path)
    else:
        raise ValueError(
            f"{path} is neither a directory nor a .tar/.tar.gz/.tgz archive with "
            f"the layout {LAYOUT}"
        )
    return _decode_all(entries, num_workers, origin=str(path))


# -- Walking the layout. ---------------------------------------------------------
# Both walkers yield (split, class, file name, display name, bytes), display name
# being what an error message shows.

Entry = tuple[str, str, str, str, bytes]


def _subdirs(path: Path) -> list[Path]:
    return sorted(
        p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _walk_directory(root: Path) -> Iterator[Entry]:
    for split_dir in _subdirs(root):
        for class_dir in _subdirs(split_dir):
            for file in sorted(class_dir.iterdir()):
                if file.is_file() and _is_image(file.name):
                    yield (
                        split_dir.name,
                        class_dir.name,
                        file.name,
                        str(file),
                        (file.read_bytes()),
                    )


def check_member(member: tarfile.TarInfo) -> tuple[str, ...]:
    """Validates one archive member and returns its path components.

    Args:
      member: a member as `tarfile` reports it (PAX/GNU long names resolved).

    Returns:
      The components of its normalised name (a leading "./" removed).

    Raises:
      UnsafeArchiveError: absolute name, `..` component, empty name, or a member
        that is neither a regular file nor a directory (links, devices, FIFOs:
        a link is how an archive points outside its root).
    """
    name = member.name
    # Backslashes are refused too: on Windows they are separators, so such a
    # name could mean a different path than it seems to here.
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(
            f"archive member {name!r} contains '..' and would escape the archive root"
        )
    if not parts and not member.isdir():  # "./" itself is a harmless directory
        raise UnsafeArchiveError(f"archive member {name!r} has an empty name")
    if not (member.isfile() or member.isdir()):
        kind = "link" if (member.issym() or member.islnk()) else "special file"
        raise UnsafeArchiveError(
            f"archive member {name!r} is a {kind}; only regular files and "
            "directories are read"
        )
    return parts


def _walk_archive(path: Path) -> Iterator[Entry]:
    # Only tarfile's reading raises these (this module's own errors are
    # ValueErrors): a truncated or corrupt archive, reported with its path.
    try:
        yield from _archive_entries(path)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise _unreadable(path, e) from None


def _archive_entries(path: Path) -> Iterator[Entry]:
    root: str | None = None  # decided by the first image: "" or a folder name
    # "r:*" would seek; "r|*" streams, which is what a .tar.gz needs anyway.
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            parts = check_member(member)
            if member.isdir() or not _is_image(parts[-1]):
                continue
            if len(parts) == 4:
                member_root, rest = parts[0], parts[1:]
            elif len(parts) == 3:
                member_root, rest = "", parts
            else:
                raise ValueError(
                    f"archive member {member.name!r} in {path} does not match the "
                    f"layout {LAYOUT}"
                )
            if root is None:
                root = member_root
            elif member_root != root:
                raise UnsafeArchiveError(
                    f"archive member {member.name!r} lies outside the archive root "
                    f"{root or '.'!r} of {path}"
                )
            if member.size > _MAX_MEMBER_BYTES:
                raise ValueError(
                    f"archive member {member.name!r} is {member.size} bytes, larger "
                    f"than any image this loader expects ({_MAX_MEMBER_BYTES})"
                )
            data = archive.extractfile(member).read()
            yield rest[0], rest[1], rest[2], f"{path}:{member.name}", data


def _unreadable(path: Path, err: Exception) -> ValueError:
    """A truncated or corrupt archive, named, with what to do about it."""
    return ValueError(
        f"cannot read the archive {path}: {type(err).__name__}: {err or 'no detail'} "
        "(truncated or corrupt? copy or download it again; expected a tar archive, "
        "optionally gzip/bz2/xz-compressed)"
    )


# -- Decoding. ---------------------------------------------------------------------


def _decode_chunk(names: list[str], blobs: list[bytes]) -> np.ndarray:
    """Decodes images to one uint8 [n, H, W, 3] array (runs in a pool thread)."""
    out = None
    for i, (name, blob) in enumerate(zip(names, blobs, strict=True)):
        try:
            with Image.open(io.BytesIO(blob)) as image:
                if image.mode != "RGB":
                    image = image.convert("RGB")
                pixels = np.asarray(image)  # forces the decode: errors surface here
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError...
            raise ValueError(f"cannot decode image {name}: {e}") from None
        if out is None:
            out = np.empty((len(names), *pixels.shape), np.uint8)
        elif pixels.shape != out.shape[1:]:
            raise ValueError(
                f"image {name} has shape {pixels.shape}, but {names[0]} has "
                f"{out.shape[1:]}; all images of a dataset must have one size"
            )
        out[i] = pixels
    return out


def _decode_all(entries: Iterator[Entry], num_workers: int, origin: str) -> dict:
    keys: list[tuple[str, str, str]] = []  # (split, class, file) per image
    first_names: list[str] = []  # per chunk, for error messages
    chunks: list = []  # np.ndarray or Future, per chunk
    names: list[str] = []
    blobs: list[bytes] = []
    pool = None

    def flush():
        nonlocal pool
        if not names:
            return
        first_names.append(names[0])
        if pool is None and num_workers > 1 and len(names) == _CHUNK:
            pool = concurrent.futures.ThreadPoolExecutor(num_workers)
        if pool is not None:
            chunks.append(pool.submit(_decode_chunk, list(names), list(blobs)))
        else:
            chunks.append(_decode_chunk(names, blobs))
        names.clear()
        blobs.clear()

    try:
        for split, cls, file, display, data in entries:
            keys.append((split, cls, file))
            names.append(display)
            blobs.append(data)
            if len(names) == _CHUNK:
                flush()
        flush()
        arrays = [
            c.result() if isinstance(c, concurrent.futures.Future) else c
            for c in chunks
        ]
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    if not keys:
        raise FileNotFoundError(f"no images found in {origin}; expected {LAYOUT}")
    for name, array in zip(first_names, arrays, strict=True):
        if array.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(
                f"image {name} has shape {array.shape[1:]}, but {first_names[0]} has "
                f"{arrays[0].shape[1:]}; all images of a dataset must have one size"
            )
    images = np.concatenate(arrays)
    return _group(keys, images, origin)


def _group(keys: list[tuple[str, str, str]], images: np.ndarray, origin: str) -> dict:
    classes_by_split: dict[str, set[str]] = {}
    for split, cls, _ in keys:
        classes_by_split.setdefault(split, set()).add(cls)
    class_sets = {frozenset(c) for c in classes_by_split.values()}
    if len(class_sets) > 1:
        every = set().union(*classes_by_split.values())
        lines = [
            f"  {split}: missing {sorted(every - c)}"
            for split, c in sorted(classes_by_split.items())
            if every - c
        ]
        raise ValueError(
            f"the class folders differ between the splits of {origin}:\n"
            + "\n".join(lines)
        )
    if len(set(keys)) != len(keys):  # an archive can hold one name twice
        duplicate = collections.Counter(keys).most_common(1)[0][0]
        raise ValueError(f"{origin} holds {'/'.join(duplicate)} more than once")
    class_names = tuple(sorted(next(iter(class_sets))))
    class_index = {c: i for i, c in enumerate(class_names)}
    splits = {}
    for split in sorted(classes_by_split):
        # Sorted by label, then file name: the order of the file system or of
        # the archive does not leak into the arrays.
        members = sorted(
            (class_index[cls], file, i)
            for i, (s, cls, file) in enumerate(keys)
            if s == split
        )
        idx = np.asarray([i for _, _, i in members], np.int64)
        splits[split] = Split(
            images=images[idx],
            labels=np.asarray([label for label, _, _ in members], np.int32),
            class_names=class_names,
        )
    return splits
