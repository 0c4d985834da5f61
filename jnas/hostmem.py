"""Host memory: glibc's allocator set up for XLA:CPU's buffer churn.

XLA:CPU allocates every intermediate buffer of a program run with the C
allocator and frees it at the end of the run. With glibc's defaults the top
of the heap is handed back to the kernel as soon as 128 KiB of it is free
(``M_TRIM_THRESHOLD``, which the dynamic mmap threshold doubles as it
adapts), so the next run faults the same pages in again: the tiny quickstart
search took 2.26 million minor page faults and 5.5 s of system time in a
30.4 s run on one core. Keeping freed memory in the process
(`tune_malloc`) cut that to 0.16-0.31 million faults and 0.9 s of system
time, 21.6-24.9 s in all, with bit-identical records (docs/results.md, "CI
and test-suite time"). The cost is resident memory that stays at the process's
peak instead of shrinking between runs.

Not an environment variable (``MALLOC_TRIM_THRESHOLD_`` and friends): those
are read when the process starts, and a launcher is already running; glibc's
``mallopt`` changes the same settings at run time, for every arena.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

# Blocks under 32 MiB (glibc's largest allowed threshold on 64-bit) come from
# the heap, not from a fresh mmap each time; up to 1 GiB of free heap top is
# kept; the heap grows 256 MiB at a time (address space, not resident memory,
# until touched).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 256 << 20


def tune_malloc() -> bool:
    """Keeps freed heap memory in this process (glibc on Linux only).

    Returns:
      True if glibc accepted every setting; False where the C library is not
      glibc (macOS, musl), which keeps its own defaults.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    # gnu_get_libc_version exists only in glibc: mallopt then means glibc's.
    if not hasattr(libc, "gnu_get_libc_version"):
        return False
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_TOP_PAD, TOP_PAD),
    )
    return all(libc.mallopt(param, value) == 1 for param, value in settings)
