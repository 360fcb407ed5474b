"""Giving the heap memory a write batch freed back to the system (glibc's `malloc_trim`).

A write batch allocates and frees many temporaries (NumPy arrays of a few MB, the batch's
Python objects). glibc raises its mmap threshold after large blocks are freed, so later
temporaries of up to 32 MB come from the heap, and memory freed in the middle of the heap stays
in the process: measured on one replica loaded with 100k rows x 384 in batches of 5,000, 714 B
a row of its 3,366 B of PSS was such freed memory (`shardvec bench rowmem`). `malloc_trim(0)`
returns those pages; it runs after every TRIM_ROWS rows written (a few ms each time, outside
the index lock). Elsewhere than glibc it is a no-op.

Trimming is not enough in a replica's own process: there a batch arrives through gRPC and is
decoded on the server's threads, and once glibc has raised its threshold those temporaries
land in the heap between blocks that stay, whose pages then cannot be given back. Measured
(bench/rowmem_replica.py, 100k rows x 384 through the public API into one replica, both
variants in one run): with glibc's dynamic rule the replica's heap kept 2,013 B a row free
(200 MB; 150 MB at 250k rows: a cost per process more than per row), malloc_trim gave
back 100 B a row of it, and the process held 3,415 B a row of anonymous memory. So a replica
keeps the threshold fixed (`fix_mmap_threshold`, called once when its actor starts): blocks
above MMAP_THRESHOLD always get their own mapping, given back when freed. Same run: 2,704 B a
row, heap free 287. At 128 KiB the exact scan's per-block buffers (196 and 786 KB) were mapped
and unmapped on every block, and filtered single queries took 13 % longer in two runs; at
1 MiB they stay in the heap (reused, same size each time): p50s within noise in one run.

Every server process keeps it fixed, not only a replica: the coordinator and each query front
decode every write batch too (coordinator/api/server.py `LoopServer`). Measured through
`shardvec up`, 200k rows x 384 loaded in batches of 5,000 into 4 shards, the coordinator's
PSS grew by 77 MB on glibc's dynamic rule (malloc_trim gave back 3.5 MB of it) and by 5 MB
with the threshold fixed; the replicas' growth was the same either way. The module lives in
the contract layer because processes of both sides set it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

TRIM_ROWS = 1024  # rows written between trims
MMAP_THRESHOLD = 1 << 20  # bytes; blocks above get their own mapping (glibc starts at 128 KiB)
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
THRESHOLD_ENV = "SHARDVEC_MMAP_THRESHOLD"  # bytes; 0 leaves glibc's dynamic rule (benchmarks)


def libc_function(name: str, argtypes: list[Any], restype: Any = ctypes.c_int) -> Any:
    """The C library's function `name` with its signature set, or None where there is no
    such function (a C library other than glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    fn = getattr(libc, name, None)
    if fn is not None:
        fn.argtypes, fn.restype = argtypes, restype
    return fn


_TRIM = libc_function("malloc_trim", [ctypes.c_size_t])


def malloc_trim() -> bool:
    """glibc's malloc_trim(0): free pages of every arena back to the system; whether any
    were (False where there is no malloc_trim)."""
    return _TRIM is not None and bool(_TRIM(0))


def fix_mmap_threshold(threshold: int | None = None) -> bool:
    """Keep glibc's mmap threshold at `threshold` bytes for this whole process (None: the
    environment's SHARDVEC_MMAP_THRESHOLD, else MMAP_THRESHOLD; 0: leave glibc's dynamic
    rule). Setting it turns off glibc's raising it; returns whether it was set."""
    if threshold is None:
        raw = os.environ.get(THRESHOLD_ENV, "")
        threshold = int(raw) if raw.strip().isdigit() else MMAP_THRESHOLD
    if threshold <= 0:
        return False
    mallopt = libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    log.debug("mmap threshold fixed at %d bytes: %s", threshold, done)
    return done


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
        malloc_trim()
