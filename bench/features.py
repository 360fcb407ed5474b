"""What group-by, diverse results and facets cost on a real cluster (embedded Ray, gRPC on
loopback), each against a plain search of the same k measured in the same run:

- group-by, groups=10 and group_size=3 (k = 30), by two fields: `month` of the shared set (a
  dozen large groups) and `doc`, a stand-in for chunked documents (4 consecutive rows each,
  so a group's other rows are unrelated to the query: the case where groups fill slowest);
- MMR, k=10 out of N=100 candidates (diversity 0.5), against a plain k=10 search (the cost
  of fetching 100 candidates with their vectors, and of the reranking);
- a facet over every row (`month`, a string field) and under a filter (`popular`).

Single: one client, one query per call, for --seconds each, p50 and QPS. The shared set's
first --rows rows (default all 100k; the bundled sample when there is no shared set).
Prints a table and writes bench/results/features.json.

    shardvec bench features [--rows 100000] [--shards 4] [--queries 200] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import base_rows, default_data, load_metadata, load_vectors
from shardvec.bench.results import print_table, write_results
from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client, Collection
from shardvec.cluster.demo import load_sample

K = 10


def _load(data: Path, rows: int, n_queries: int) -> dict[str, Any]:
    if (data / "base.npy").exists():
        n = min(rows, base_rows(data))
        base, queries = load_vectors(data, n, n_queries)
        metas, source = load_metadata(data, n, ("month", "popular"))
        source = f"{data.name}, first {n} rows ({source})"
    else:
        vectors, _, queries, _ = load_sample()
        n = min(rows, len(vectors))
        base, queries = vectors[:n], queries[:n_queries]
        metas = [{"month": f"2026-{i % 12 + 1:02d}", "popular": i % 50 == 0} for i in range(n)]
        source = f"bundled sample, {n} rows"
    for i, md in enumerate(metas):
        md["doc"] = f"d{i // 4}"
    return {
        "base": np.ascontiguousarray(base, dtype=np.float32),
        "queries": np.ascontiguousarray(queries, dtype=np.float32),
        "metas": metas,
        "source": source,
    }


def _single(fn: Callable[[int], Any], n: int, seconds: float) -> dict[str, float]:
    """One call at a time over the queries for `seconds`: QPS and p50 / p99 in ms."""
    fn(0)
    took: list[float] = []
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn(i % n)
        took.append(time.perf_counter() - t)
        i += 1
    took.sort()
    return {
        "qps": len(took) / sum(took),
        "p50_ms": 1000 * statistics.median(took),
        "p99_ms": 1000 * took[min(len(took) - 1, int(0.99 * len(took)))],
        "calls": len(took),
    }


def _measure(col: Collection, q: np.ndarray, seconds: float) -> dict[str, Any]:
    n = len(q)

    def plain(k: int) -> Callable[[int], Any]:
        return lambda i: col.search(q[i : i + 1], k=k, include_metadata=False)

    def grouped(field: str) -> Callable[[int], Any]:
        return lambda i: col.search(q[i : i + 1], group_by=field, groups=10, group_size=3,
                                    include_metadata=False)  # fmt: skip

    def mmr(i: int) -> Any:
        return col.search(q[i : i + 1], k=K, diversity=0.5, candidates=100,
                          include_metadata=False)  # fmt: skip

    out: dict[str, Any] = {
        "plain_k30": _single(plain(30), n, seconds),
        "group_month_10x3": _single(grouped("month"), n, seconds),
        "group_doc_10x3": _single(grouped("doc"), n, seconds),
        "plain_k10": _single(plain(K), n, seconds),
        "mmr_k10_of_100": _single(mmr, n, seconds),
        "facet_month": _single(lambda i: col.facet("month", limit=10), n, seconds),
        "facet_month_popular": _single(
            lambda i: col.facet("month", where={"popular": True}, limit=10), n, seconds),
    }  # fmt: skip
    hits = col.search(q[:50], group_by="doc", groups=10, group_size=3, include_metadata=False)
    out["group_doc_hits_per_query"] = float(np.mean([len(r) for r in hits]))
    return out


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    d = _load(args.data or default_data(), args.rows, args.queries)
    base, metas, q = d["base"], d["metas"], d["queries"]
    log(f"data: {d['source']}, {len(q)} queries")
    result: dict[str, Any] = {"data": d["source"], "rows": len(base), "queries": len(q),
                              "shards": args.shards}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, ShardvecCluster(
        {"data_dir": tmp, "port": 0}, num_cpus=args.cpus
    ) as cluster, Client(cluster.address, timeout=600) as client:
        col = client.create_collection("features", base.shape[1], "cosine", args.shards)
        t = time.perf_counter()
        col.upsert([str(i) for i in range(len(base))], base, metas, batch_size=2000)
        result["load_s"] = time.perf_counter() - t
        log(f"loaded {len(base)} rows into {args.shards} shards in {result['load_s']:.0f} s")
        result["load_average_before"] = os.getloadavg()
        result["single"] = _measure(col, q, args.seconds)
        result["load_average_after"] = os.getloadavg()
    return result


def report(result: dict[str, Any]) -> None:
    s = result["single"]
    rows = []
    for key, label, base in (
        ("plain_k30", "search k=30", None),
        ("group_month_10x3", "group-by month, 10 x 3", "plain_k30"),
        ("group_doc_10x3", "group-by doc (4 rows), 10 x 3", "plain_k30"),
        ("plain_k10", "search k=10", None),
        ("mmr_k10_of_100", "MMR k=10 of 100 (0.5)", "plain_k10"),
        ("facet_month", "facet month, all rows", None),
        ("facet_month_popular", "facet month, popular only", None),
    ):
        m = s[key]
        cost = f"{m['p50_ms'] / s[base]['p50_ms']:.2f}x" if base else ""
        rows.append((label, f"{m['qps']:.0f}", f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}", cost))
    print(f"\n{result['data']}, {result['shards']} shards, {result['queries']} queries")
    print_table(rows, ("one query per call", "QPS", "p50 ms", "p99 ms", "p50 vs plain"))
    print(f"group-by doc: {s['group_doc_hits_per_query']:.1f} hits per query of 30 (a group's "
          "other rows lie far from the query)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="shardvec bench features",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--data", type=Path, default=None, help="the shared set (default: ../shared)")
    p.add_argument("--rows", type=int, default=100_000, help="base rows to load")
    p.add_argument("--queries", type=int, default=200, help="query vectors to use")
    p.add_argument("--shards", type=int, default=4, help="shards of the collection")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per measured call kind")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the embedded Ray")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/features.json)")
    args = p.parse_args(argv)
    result = run(args)
    report(result)
    write_results("features", result, args.out)
    return 0
