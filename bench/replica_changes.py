"""Replica change figures: time to go 1 -> 2 replicas and back, reads and writes
failed meanwhile, rows copied per second, recall before and after.

Loads `--n` rows of the shared set (or random vectors when it is absent) into a collection of
`--shards` shards x 1 replica on an embedded Ray, then raises it to 2 replicas and lowers it
back to 1 (CoordinatorRuntime.scale_replicas) while a reader searches and a writer upserts
all the while. The reference, measured in the same run, is loading the same rows through the
API. Prints a table and writes JSON.

    shardvec bench replica-changes [--n 20000] [--shards 2] \
        [--out bench/results/replica_changes.json]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import default_data, load_vectors
from shardvec.bench.measure import recall_at_k
from shardvec.bench.results import print_table, write_results
from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from shardvec.contract.errors import ShardvecError


def recall(col: Any, queries: np.ndarray, truth: list[list[str]]) -> float:
    got, _ = col.search_ids(queries, k=10)
    return round(recall_at_k(got, truth, 10), 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="shardvec bench replica-changes", description=(__doc__ or "").splitlines()[0]
    )
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default bench/results/replica_changes.json)")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(15)
    if (args.data / "base.npy").exists():
        base, queries = load_vectors(args.data, args.n, 100)
        source = str(args.data.name)
    else:
        base = rng.standard_normal((args.n, 64)).astype(np.float32)
        queries = rng.standard_normal((100, 64)).astype(np.float32)
        source = "random 64-d"
    dim = base.shape[1]
    result: dict[str, Any] = {"n": len(base), "dim": dim, "data": source, "shards": args.shards}
    with tempfile.TemporaryDirectory() as tmp, ShardvecCluster(
        {"data_dir": tmp, "port": 0}
    ) as cluster, Client(cluster.address, timeout=120) as client:
        col = client.create_collection("rc", dim=dim, shards=args.shards, replicas=1)
        t0 = time.monotonic()
        col.upsert([str(i) for i in range(len(base))], base, batch_size=2000)
        load_s = time.monotonic() - t0
        result["load_seconds"] = round(load_s, 2)
        result["load_rows_per_s"] = round(len(base) / load_s)
        client.wait_live("rc", 300)
        truth, _ = col.search_ids(queries, k=10, exact=True)
        result["recall_before"] = recall(col, queries, truth)

        stop = threading.Event()
        counts = {"reads": 0, "writes": 0}
        failures: list[str] = []

        def reader() -> None:
            with Client(cluster.address, timeout=30) as c:
                rcol = c.get_collection("rc")
                i = 0
                while not stop.is_set():
                    try:
                        rcol.search_ids(queries[i % len(queries)], k=10)
                        counts["reads"] += 1
                    except ShardvecError as exc:
                        failures.append(f"read {exc.code.name}: {exc.message}")
                    i += 1

        def writer() -> None:
            wrng = np.random.default_rng(16)
            with Client(cluster.address, timeout=30) as c:
                wcol = c.get_collection("rc")
                i = 0
                while not stop.is_set():
                    # far from every query: recall is measured against the loaded rows
                    vec = wrng.standard_normal((10, dim)).astype(np.float32) + 100
                    try:
                        wcol.upsert([f"w{i}-{j}" for j in range(10)], vec)
                        counts["writes"] += 10
                    except ShardvecError as exc:
                        failures.append(f"write {exc.code.name}: {exc.message}")
                    i += 1

        threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            t0 = time.monotonic()
            cluster.scale_replicas("rc", 2, timeout=600)
            up_s = time.monotonic() - t0
            copied = col.count()  # every row the new replicas hold, one per shard
            time.sleep(1.0)
            t0 = time.monotonic()
            cluster.scale_replicas("rc", 1, timeout=600)
            down_s = time.monotonic() - t0
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        result.update(
            up_seconds=round(up_s, 2),
            rows_copied=copied,
            copy_rows_per_s=round(copied / up_s),
            down_seconds=round(down_s, 2),
            reads=counts["reads"],
            writes_acked=counts["writes"],
            failed=len(failures),
            failures=failures[:5],
        )
        client.wait_live("rc", 300, level=True)
        result["rows_after"] = col.count()
        result["rows_expected"] = len(base) + counts["writes"]
        result["recall_after"] = recall(col, queries, truth)

    rows = [
        ("rows loaded", f"{result['n']} x {dim} ({source}), {args.shards} shards"),
        ("load through the API (reference), rows/s", result["load_rows_per_s"]),
        ("1 -> 2 replicas, seconds", result["up_seconds"]),
        ("rows copied to the new replicas", result["rows_copied"]),
        ("rows copied per second", result["copy_rows_per_s"]),
        ("2 -> 1 replicas, seconds", result["down_seconds"]),
        ("reads / rows written during the changes",
         f"{result['reads']} / {result['writes_acked']}"),
        ("reads or writes failed", result["failed"]),
        ("rows after / expected", f"{result['rows_after']} / {result['rows_expected']}"),
        ("recall@10 before / after", f"{result['recall_before']} / {result['recall_after']}"),
    ]
    print_table(rows, ("figure", "value"))
    write_results("replica_changes", result, args.out)
    return 0

