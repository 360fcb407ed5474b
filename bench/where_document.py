"""What a where_document filter costs on one replica: the in-memory substring scan the engine
uses (shard/documents.py) against SQL instr() over the same rows in the store, alone, after a
metadata filter, and inside a search (exact and HNSW).

One ShardEngine of N random 64-d rows, each with a ~300-character document of 45 random words
out of 2,000 (every 97th row also holds "kafka", so `$contains: kafka` passes about 1 %) and
metadata `bucket = i % 100`. Timings are medians of repeated calls. Prints a table, writes
bench/results/where_document.json.

    shardvec bench where-document [--rows 100000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.results import write_results
from shardvec.contract.filters import parse_where, parse_where_document
from shardvec.contract.settings import IndexSettings
from shardvec.shard.engine import ShardEngine

DIM = 64
VOCAB = [f"w{i}" for i in range(2000)]
AND_OR: dict[str, Any] = {
    "$and": [{"$contains": "w1"}, {"$or": [{"$contains": "w2"}, {"$not_contains": "w3"}]}]
}


def _documents(n: int, rng: np.random.Generator) -> list[str]:
    words = rng.integers(0, len(VOCAB), size=(n, 45))
    out = []
    for i in range(n):
        row = [VOCAB[w] for w in words[i]]
        if i % 97 == 0:
            row[20] = "kafka"
        out.append(" ".join(row))
    return out


def _median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="shardvec bench where-document", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default bench/results/where_document.json)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    n = args.rows
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    docs = _documents(n, rng)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = ShardEngine(Path(tmp), IndexSettings(dim=DIM), checkpoint_rows=1 << 40)
        for start in range(0, n, 10_000):
            stop = min(n, start + 10_000)
            ids = [str(i) for i in range(start, stop)]
            mds = [{"bucket": i % 100} for i in range(start, stop)]
            engine.upsert(start // 10_000 + 1, ids, vecs[start:stop], mds, docs[start:stop])
        conn = sqlite3.connect(Path(tmp) / "store.sqlite")
        q = vecs[:1]
        cases: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = [
            ("contains kafka", {"$contains": "kafka"}, None),
            ("contains w7 (common)", {"$contains": "w7 "}, None),
            ("not_contains kafka", {"$not_contains": "kafka"}, None),
            ("and/or of 3", AND_OR, None),
            ("kafka + bucket < 10", {"$contains": "kafka"}, {"bucket": {"$lt": 10}}),
            ("kafka + bucket < 1", {"$contains": "kafka"}, {"bucket": {"$lt": 1}}),
        ]
        base = _median_ms(lambda: engine.count(), args.repeat)
        for label, wd, where in cases:
            f = parse_where_document(wd)
            w = parse_where(where) if where else None
            passing = engine.count(w, f)
            scan = _median_ms(partial(engine.count, w, f), args.repeat)
            row: dict[str, Any] = {"case": label, "passing": passing, "count_ms": scan}
            if label == "contains kafka":
                sql = "SELECT COUNT(*) FROM rows WHERE deleted = 0 AND instr(document, ?) > 0"
                got = conn.execute(sql, ("kafka",)).fetchone()[0]
                assert got == passing, (got, passing)
                row["sql_instr_ms"] = _median_ms(
                    partial(conn.execute, sql, ("kafka",)), args.repeat
                )
            row["search_exact_ms"] = _median_ms(
                partial(engine.search, q, 10, where=w, where_document=f, exact=True),
                args.repeat,
            )
            row["search_hnsw_ms"] = _median_ms(
                partial(engine.search, q, 10, where=w, where_document=f), args.repeat
            )
            results.append(row)
        unfiltered = _median_ms(lambda: engine.search(q, 10), args.repeat)
        conn.close()
        engine.close()
    print(f"where_document on one replica: {n} rows x {DIM}-d, ~300-char documents")
    print(f"unfiltered search: {unfiltered:.2f} ms; count without filter {base:.3f} ms")
    head = f"{'case':<24}{'passing':>9}{'count ms':>10}{'sql instr':>11}"
    print(f"{head}{'exact ms':>10}{'hnsw ms':>9}")
    for r in results:
        sql = f"{r['sql_instr_ms']:.1f}" if "sql_instr_ms" in r else "-"
        print(
            f"{r['case']:<24}{r['passing']:>9}{r['count_ms']:>10.1f}{sql:>11}"
            f"{r['search_exact_ms']:>10.1f}{r['search_hnsw_ms']:>9.1f}"
        )
    write_results("where_document", {"rows": n, "dim": DIM, "unfiltered_search_ms": unfiltered,
                                     "cases": results}, args.out)  # fmt: skip
    return 0

