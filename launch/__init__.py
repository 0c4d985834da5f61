"""Command-line launchers (absl apps); the library does the work."""

from __future__ import annotations

import sys
from typing import NoReturn


def fail(message: str) -> NoReturn:
    """Ends a launcher on bad input: the message alone on stderr, exit code 1.

    absl's `app.UsageError` prints the whole usage text before the message;
    a bad config value deserves just the line that names it.
    """
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "jnas"
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def workdir(value: str) -> str:
    """A ``--workdir`` value, checked before anything runs.

    A local folder, or an object-store URI (gs://, s3://, az://) whose fsspec
    library is installed; anything else ends the launcher with the message of
    ``jnas.storage.path`` (which scheme is wrong, or what to install).
    """
    from jnas import storage

    try:
        storage.path(value)
    except ValueError as e:
        fail(f"--workdir: {e}")
    return value
