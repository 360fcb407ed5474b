"""What a replica's process holds in memory, by kind, for profiling (ShardReplica.memory).

The engine's own parts are counted by `shardvec bench rowmem`; this names what the process
holds beside them: PSS and its anonymous share (/proc/self/smaps_rollup), glibc's heap
(mallinfo2: bytes in use and free in its arenas, bytes in blocks of their own mmap), the
Python objects the cyclic GC tracks, by type (a per-row dict or list would show here), SQLite's
page caches, and tracemalloc's top allocation sites when the process was started with it
(PYTHONTRACEMALLOC=1). Linux and glibc only; elsewhere the figures it cannot read are absent.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import tracemalloc
from typing import Any

from shardvec.contract.heap import libc_function, malloc_trim

ROLLUP_FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Anonymous", "Private_Dirty")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def smaps_rollup() -> dict[str, int]:
    """Bytes of this process by kind (the ROLLUP_FIELDS of /proc/self/smaps_rollup)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/smaps_rollup", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ROLLUP_FIELDS:
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def heap() -> dict[str, int]:
    """glibc's heap over all its arenas: `arena` bytes taken from the system by sbrk and
    arena mmaps, `in_use` and `free` of them, `mmapped` blocks of their own."""
    fn = libc_function("mallinfo2", [], _MallInfo2)
    if fn is None:
        return {}
    m = fn()
    return {
        "arena": m.arena, "in_use": m.uordblks, "free": m.fordblks,
        "top_releasable": m.keepcost, "mmapped": m.hblkhd, "mmapped_blocks": m.hblks,
    }  # fmt: skip


def trim() -> bool:
    """glibc's malloc_trim(0): free pages of every arena back to the system."""
    return malloc_trim()


def gc_objects(top: int = 12) -> dict[str, int]:
    """Counts of the objects the cyclic GC tracks, by type, the `top` most common."""
    counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
    return dict(counts.most_common(top))


def sqlite_cache() -> dict[str, int]:
    """SQLite's page-cache bytes of this process (every connection), and the most it held."""
    lib = ctypes.util.find_library("sqlite3")  # the library the sqlite3 module links to
    try:
        so = ctypes.CDLL(lib or "libsqlite3.so.0")
    except OSError:
        return {}
    fn = getattr(so, "sqlite3_status64", None)
    if fn is None:
        return {}
    cur, high = ctypes.c_int64(), ctypes.c_int64()
    out = {}
    for name, op in (("memory_used", 0), ("pagecache_overflow", 2)):
        if fn(op, ctypes.byref(cur), ctypes.byref(high), 0) == 0:
            out[name] = cur.value
            out[name + "_highwater"] = high.value
    return out


def tracemalloc_top(top: int = 15) -> list[dict[str, Any]]:
    """The `top` allocation sites by bytes held now, when tracemalloc traces (else [])."""
    if not tracemalloc.is_tracing():
        return []
    stats = tracemalloc.take_snapshot().statistics("lineno")[:top]
    return [{"where": str(s.traceback[0]), "bytes": s.size, "blocks": s.count} for s in stats]


def report(objects: bool = True) -> dict[str, Any]:
    """Everything above for this process, now."""
    out: dict[str, Any] = {"smaps": smaps_rollup(), "heap": heap(), "sqlite": sqlite_cache()}
    if objects:
        out["gc_objects"] = gc_objects()
        out["gc_tracked"] = len(gc.get_objects())
    if tracemalloc.is_tracing():
        out["tracemalloc_total"] = tracemalloc.get_traced_memory()[0]
        out["tracemalloc_top"] = tracemalloc_top()
    return out
