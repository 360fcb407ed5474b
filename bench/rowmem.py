"""Memory per row of one shard replica, part by part, against raw hnswlib's bytes per element
in the same run; and exact and filtered single-query times over it (issue #26 part 2).

Grows the shared set to `--n` rows (datasets.grow_rows, as `shardvec bench rows` does; one
shard of a 1M-row, 4-shard collection is 250k rows), each row's metadata {"bucket": i % 10},
and loads them into one ShardEngine in this process (batches of `--batch`). Then:
  - memory: this process's PSS (/proc/self/smaps_rollup) after the load minus before it, per
    row, and each part's bytes per row: hnswlib's index (index_file_size: vectors, links,
    labels), the compact vector copy, the id -> slot map and slot arrays (sys.getsizeof of
    the dict, its keys and values), the filter columns, the metadata texts (a pointer and a
    str object each), the documents (a pointer each; this set has none); the rest is the
    allocators' and SQLite's (its page cache is fixed per connection, not per row);
  - raw hnswlib builds the same rows in a child process (bench/rows.py `run_raw`): the PSS it
    grew by per element, measured in this run;
  - exact (exact=True) and filtered (bucket == 3, 10 %) single queries: p50 and p90 ms over
    `--queries` real queries, and whether each answer equals the exact top-10 (NumPy).

Prints a table and writes JSON (default bench/results/rowmem.json).

    shardvec bench rowmem [--n 250000] [--queries 50] [--batch 5000] [--data DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import chunked_topk, grow_rows
from shardvec.bench.results import format_table, write_results
from shardvec.bench.rows import pss_bytes, real_rows, run_raw
from shardvec.contract.filters import parse_where
from shardvec.contract.limits import DEFAULT_BUILD_THREADS
from shardvec.contract.settings import IndexSettings
from shardvec.shard.engine import ShardEngine

K = 10
BUCKETS = 10
FILTER = {"bucket": 3}


def _objects_bytes(values: list[Any]) -> int:
    """sys.getsizeof of each distinct object (by identity) in `values`."""
    seen: set[int] = set()
    total = 0
    for v in values:
        if id(v) not in seen:
            seen.add(id(v))
            total += sys.getsizeof(v)
    return total


def parts(eng: ShardEngine) -> dict[str, int]:
    """Bytes each in-memory part of a replica holds (see the module docstring)."""
    n_slots = eng._slots.n_slots
    table = eng._slots
    rows = eng._rows
    compact = getattr(rows, "compact", None)
    if compact is not None:
        vectors = compact.nbytes(n_slots)
    else:  # the float32 copy and norm of earlier versions
        vectors = n_slots * (4 * eng.settings.dim + 4)
    id_map = table.id_to_slot
    if isinstance(id_map, dict):  # earlier versions: a dict and an int object a row
        ids = sys.getsizeof(id_map) + _objects_bytes(list(id_map.values()))
    else:
        ids = id_map.nbytes()
    ids += _objects_bytes([i for i in table.slot_to_id[:n_slots].tolist() if i])  # the strs
    ids += n_slots * (8 + 1 + 2)  # slot_to_id pointers, alive, bucket
    out = {
        "hnswlib index": eng._index.nbytes(),
        "compact vectors" if compact is not None else "float32 vectors": vectors,
        "ids and slots": ids,
        "filter columns": eng._columns.nbytes(),
    }
    if getattr(rows, "on_disk", False):  # payload_on_disk: no text, a seq a row
        return {**out, "metadata texts": 0, "documents": 0, "row seqs": 8 * n_slots}
    texts = rows._texts[:n_slots].tolist()
    docs = rows._docs[:n_slots].tolist()
    return {
        **out,
        "metadata texts": 8 * n_slots + _objects_bytes([t for t in texts if t]),
        "documents": 8 * n_slots + _objects_bytes([d for d in docs if d]),
    }


def _timed(eng: ShardEngine, queries: np.ndarray, want: np.ndarray, **kwargs: Any
           ) -> dict[str, Any]:  # fmt: skip
    eng.search(queries[:1], K, **kwargs)  # warm
    lat, same = [], 0
    for j in range(len(queries)):
        t0 = time.perf_counter()
        res = eng.search(queries[j : j + 1], K, **kwargs)
        lat.append(time.perf_counter() - t0)
        same += [int(i) for i in res.ids[0]] == want[j].tolist()
    ms = np.asarray(lat) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "answers_equal_to_numpy_exact": f"{same}/{len(queries)}",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    real, queries, source = real_rows(args.data, args.queries)
    base = grow_rows(real, args.n)
    del real
    n, dim = base.shape
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    buckets = np.arange(n) % BUCKETS
    gt, _ = chunked_topk(base, queries, K)
    rows_f = np.flatnonzero(buckets == FILTER["bucket"])
    gt_f, _ = chunked_topk(base, queries, K, rows=rows_f)
    print(f"{n:,} x {dim} rows ({source}); raw hnswlib in a child process", flush=True)
    raw = run_raw(args.data, n, args.batch, DEFAULT_BUILD_THREADS)
    out: dict[str, Any] = {"n": n, "dim": dim, "source": source, "raw_hnswlib": raw}
    with tempfile.TemporaryDirectory() as tmp:
        gc.collect()
        before = pss_bytes([os.getpid()])
        eng = ShardEngine(Path(tmp), IndexSettings(dim=dim), checkpoint_rows=1 << 40)
        t0 = time.perf_counter()
        for seq, s in enumerate(range(0, n, args.batch), start=1):
            e = min(n, s + args.batch)  # ids and metadata made here: the engine holds them
            ids = [str(i) for i in range(s, e)]
            eng.upsert(seq, ids, base[s:e], [{"bucket": int(b)} for b in buckets[s:e]])
        load_s = time.perf_counter() - t0
        gc.collect()
        grown = pss_bytes([os.getpid()]) - before
        split = parts(eng)
        per_row = {k: round(v / n, 1) for k, v in split.items()}
        per_row["rest (allocators, SQLite, Python)"] = round((grown - sum(split.values())) / n, 1)
        raw_row = raw["pss_bytes_per_row"]
        out["load_s"] = round(load_s, 1)
        out["memory"] = {
            "pss_bytes_per_row": round(grown / n, 1),
            "raw_hnswlib_pss_bytes_per_row": round(raw_row, 1),
            "ratio_to_raw": round(grown / n / raw_row, 3),
            "parts_bytes_per_row": per_row,
        }
        print(f"loaded in {load_s:,.0f} s: {grown / n:,.0f} B/row, raw {raw_row:,.0f}", flush=True)
        out["exact_single"] = _timed(eng, queries, gt, exact=True)
        out["filtered_single"] = _timed(eng, queries, gt_f, where=parse_where(FILTER))
        eng.close()
    return out


def table(r: dict[str, Any]) -> str:
    m = r["memory"]
    lines = [["memory per row (PSS, one engine)", f"{m['pss_bytes_per_row']:,.0f} B"],
             ["raw hnswlib per element (same run)", f"{m['raw_hnswlib_pss_bytes_per_row']:,.0f} B"],
             ["ratio", f"{m['ratio_to_raw']:.2f}x"]]  # fmt: skip
    lines += [[f"  {k}", f"{v:,.1f} B"] for k, v in m["parts_bytes_per_row"].items()]
    for name in ("exact_single", "filtered_single"):
        t = r[name]
        same = t["answers_equal_to_numpy_exact"]
        lines.append([f"{name} p50 / p90 ms (equal to NumPy exact)",
                      f"{t['p50_ms']} / {t['p90_ms']} ({same})"])  # fmt: skip
    return format_table(lines, [f"{r['n']:,} x {r['dim']}", "measured"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="shardvec bench rowmem", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--n", type=int, default=250_000, help="rows in the one engine")
    p.add_argument("--queries", type=int, default=50, help="real queries timed")
    p.add_argument("--batch", type=int, default=5_000, help="rows per upsert")
    p.add_argument("--data", type=Path, default=None, help="the shared set's directory")
    p.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/rowmem.json)")
    args = p.parse_args(argv)
    result = run(args)
    print(table(result))
    write_results("rowmem", result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
