"""shard/process_memory.py: what a replica's process reports of its memory (ShardReplica.memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from shardvec.contract.heap import THRESHOLD_ENV
from shardvec.shard import process_memory

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc and glibc")


def test_the_report_names_pss_the_heap_and_sqlite() -> None:
    held = [bytearray(1000) for _ in range(20_000)]  # 20 MB of small blocks on the heap
    got = process_memory.report()
    assert got["smaps"]["Pss"] > 20_000_000 and got["smaps"]["Anonymous"] > 20_000_000
    assert got["heap"]["in_use"] >= 20_000_000
    assert {"memory_used", "pagecache_overflow"} <= set(got["sqlite"])
    assert got["gc_objects"] and got["gc_tracked"] >= sum(got["gc_objects"].values())
    del held


def test_trim_gives_freed_heap_pages_back() -> None:
    held = [bytearray(1000) for _ in range(50_000)]
    keep = held[::50]  # a block kept every 50 KB: the freed ones cannot shrink the heap's top
    del held
    before = process_memory.smaps_rollup()["Anonymous"]
    assert process_memory.trim() in (True, False)
    after = process_memory.smaps_rollup()["Anonymous"]
    assert after < before - 20_000_000, (before, after)
    assert len(keep) == 1000


def test_tracemalloc_sites_when_tracing() -> None:
    assert process_memory.tracemalloc_top() == [] or tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        arr = np.ones(1_000_000)
        top = process_memory.report(objects=False)["tracemalloc_top"]
        assert top[0]["bytes"] >= arr.nbytes  # the array, at the line NumPy allocated it
        assert top[0]["blocks"] >= 1 and ":" in top[0]["where"]
    finally:
        tracemalloc.stop()


FRAGMENT = """
import ctypes, json
from shardvec.contract import heap
from shardvec.shard import process_memory
{SETUP}
first = ctypes.create_string_buffer(4 << 20)  # a batch's temporary: its own mapping ...
del first  # ... freed: glibc's dynamic rule raises the threshold to 4 MiB
before = process_memory.heap()
second = ctypes.create_string_buffer(4 << 20)  # the next batch's
after = process_memory.heap()
print(json.dumps({"fixed": fixed, "mapped": after["mmapped"] - before["mmapped"],
                  "heap": after["in_use"] - before["in_use"]}))
"""


SERVER = """
from shardvec.coordinator.api.server import LoopServer

class Idle(LoopServer):
    async def _start(self):
        self._ready.set_result("idle")

Idle()._begin("idle")
fixed = True
"""


def _second_temporary(threshold: str, setup: str = "fixed = heap.fix_mmap_threshold()"
                      ) -> dict[str, int]:  # fmt: skip
    env = {**os.environ, THRESHOLD_ENV: threshold}
    code = FRAGMENT.replace("{SETUP}", setup)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    got: dict[str, int] = json.loads(out.stdout)
    return got


def test_a_fixed_mmap_threshold_keeps_batch_temporaries_out_of_the_heap() -> None:
    """glibc raises its mmap threshold once a large block is freed, so the next batch's
    temporaries come from the heap (where blocks that stay, allocated meanwhile, keep their
    pages from going back); a replica keeps it fixed (contract/heap.py), so each gets its own
    mapping, given back when freed."""
    dynamic, fixed = _second_temporary("0"), _second_temporary("")
    assert not dynamic["fixed"] and fixed["fixed"]
    assert dynamic["mapped"] == 0 and dynamic["heap"] >= 4 << 20, dynamic
    assert fixed["mapped"] >= 4 << 20 and fixed["heap"] < 1 << 20, fixed  # a few small blocks


def test_a_coordinator_or_front_process_fixes_the_threshold_when_it_starts_serving() -> None:
    """The coordinator and each front decode write batches as a replica does: their server
    (LoopServer) fixes the threshold when it starts (proto/shardvec/contract/heap.py)."""
    served = _second_temporary("", setup=SERVER)
    assert served["mapped"] >= 4 << 20 and served["heap"] < 1 << 20, served
