"""Giving the heap memory a write batch freed back to the system (glibc's `malloc_trim`).

A write batch allocates and frees many temporaries (NumPy arrays of a few MB, the batch's
Python objects). glibc raises its mmap threshold after large blocks are freed, so later
temporaries of up to 32 MB come from the heap, and memory freed in the middle of the heap stays
in the process: measured on one replica loaded with 100k rows x 384 in batches of 5,000, 714 B
a row of its 3,366 B of PSS was such freed memory (`shardvec bench rowmem`). `malloc_trim(0)`
returns those pages; it runs after every TRIM_ROWS rows written (a few ms each time, outside
the index lock). Elsewhere than glibc it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_ROWS = 1024  # rows written between trims


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _malloc_trim()


class HeapTrim:
    """Counts rows written and trims the heap after every TRIM_ROWS of them."""

    def __init__(self, every_rows: int = TRIM_ROWS) -> None:
        self._every = every_rows
        self._pending = 0

    def wrote(self, rows: int) -> None:
        self._pending += rows
        if self._pending >= self._every:
            self.trim()

    def trim(self) -> None:
        self._pending = 0
        if _TRIM is not None:
            _TRIM(0)
