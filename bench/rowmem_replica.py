"""Where a row's memory goes in a replica process (part of `shardvec bench rowmem`).

`shardvec bench rowmem` loads one engine in its own process; a replica process of the
cluster holds more per row. This loads the grown set (datasets.grow_rows, as `bench rows`
does) through the public API into an embedded cluster of `--shards` shards x 1 replica and
asks replica 0 of shard 0 (ShardReplica.memory, shard/process_memory.py) what its process
holds by kind, empty and loaded: PSS and anonymous memory, glibc's heap in use and free,
the objects the cyclic GC tracks, SQLite's page cache; then the same after malloc_trim(0),
and after a few searches (timed: batch QPS, single and filtered single p50). Twice in one
run: replicas on glibc's dynamic mmap threshold (SHARDVEC_MMAP_THRESHOLD=0), then on the
fixed one they start with (contract/heap.py). With PYTHONTRACEMALLOC set, the replica also
reports its top allocation sites.

    python -m shardvec.bench.rowmem_replica [--n 250000] [--shards 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import grow_rows
from shardvec.bench.rows import real_rows
from shardvec.contract.heap import THRESHOLD_ENV

NAME = "rowmem"
BUCKETS = 10


def _per_row(after: dict[str, Any], before: dict[str, Any], n: int) -> dict[str, float]:
    return {k: round((after.get(k, 0) - before.get(k, 0)) / n, 1) for k in after}


def one(args: argparse.Namespace, base: np.ndarray, threshold: str) -> dict[str, Any]:
    """One embedded cluster whose replicas start with SHARDVEC_MMAP_THRESHOLD=`threshold`
    ("" for the default: fixed at contract/heap.py MMAP_THRESHOLD; "0": glibc's dynamic rule),
    loaded with `base`; what replica 0 of shard 0 holds, idle, loaded, trimmed, searched."""
    import ray

    from shardvec.cluster.bringup import ShardvecCluster
    from shardvec.cluster.client import Client
    from shardvec.coordinator.replicas.ray_control import NAMESPACE, actor_name

    n = len(base)
    out: dict[str, Any] = {"SHARDVEC_MMAP_THRESHOLD": threshold}
    os.environ[THRESHOLD_ENV] = threshold  # Ray's workers inherit it from this driver
    with tempfile.TemporaryDirectory(prefix="shardvec-rowmem-") as tmp:
        settings = {"data_dir": tmp, "port": 0}
        with ShardvecCluster(settings, num_cpus=2) as cluster, Client(
            cluster.address, timeout=600
        ) as c:
            col = c.create_collection(NAME, int(base.shape[1]), "cosine", args.shards, 1)
            c.wait_live(NAME, 300)
            replica = ray.get_actor(actor_name(NAME, 0, 0), namespace=NAMESPACE)
            idle: dict[str, Any] = dict(ray.get(replica.memory.remote()))
            ids = [str(i) for i in range(n)]
            metas = [{"bucket": i % BUCKETS} for i in range(n)]
            t0 = time.perf_counter()
            col.upsert(ids, base, metas, batch_size=args.batch)
            out["load_s"] = round(time.perf_counter() - t0, 1)
            c.wait_live(NAME, 600)
            loaded = ray.get(replica.memory.remote(trim=True))
            held = int(loaded["count"])
            before, after = loaded["before"], loaded["after_trim"]
            out["replica_rows"] = held
            out["idle"], out["loaded"] = idle, loaded
            out["per_row_loaded"] = {
                "smaps": _per_row(before["smaps"], idle["before"]["smaps"], held),
                "heap": _per_row(before["heap"], idle["before"]["heap"], held),
            }
            out["per_row_after_trim"] = {
                "smaps": _per_row(after["smaps"], idle["before"]["smaps"], held),
                "heap": _per_row(after["heap"], idle["before"]["heap"], held),
            }
            # what a search load leaves (the gRPC and search threads' arenas), and its times
            q = base[:200].astype(np.float32)
            t0 = time.perf_counter()
            for _ in range(5):
                col.search_ids(q, k=10)
            out["batch_qps"] = round(5 * len(q) / (time.perf_counter() - t0), 1)
            for label, kw in (("single", {}), ("filtered_single", {"where": {"bucket": 3}})):
                lat = []
                for i in range(len(q)):
                    t1 = time.perf_counter()
                    col.search_ids(q[i : i + 1], k=10, **kw)
                    lat.append(time.perf_counter() - t1)
                out[f"{label}_p50_ms"] = round(float(np.median(lat)) * 1e3, 2)
            searched = ray.get(replica.memory.remote(trim=True))
            out["searched"] = searched
            out["per_row_after_searches"] = {
                "smaps": _per_row(searched["before"]["smaps"], idle["before"]["smaps"], held),
                "heap": _per_row(searched["before"]["heap"], idle["before"]["heap"], held),
            }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    real, _, source = real_rows(args.data, 1)
    base = grow_rows(real, args.n)
    del real
    out: dict[str, Any] = {"n": len(base), "dim": int(base.shape[1]), "shards": args.shards,
                           "data": source, "load_average_start": list(os.getloadavg())}  # fmt: skip
    saved = os.environ.get(THRESHOLD_ENV)
    try:
        for label, threshold in (("dynamic", "0"), ("fixed", "")):
            out[label] = one(args, base, threshold)
    finally:
        if saved is None:
            os.environ.pop(THRESHOLD_ENV, None)
        else:
            os.environ[THRESHOLD_ENV] = saved
    out["load_average_end"] = list(os.getloadavg())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shardvec.bench.rowmem_replica",
                                 description=__doc__.split("\n\n")[0])  # fmt: skip
    ap.add_argument("--n", type=int, default=250_000, help="rows to grow the set to and load")
    ap.add_argument("--shards", type=int, default=1, help="shards (1 replica each)")
    ap.add_argument("--batch", type=int, default=5_000, help="rows per upsert")
    ap.add_argument("--data", type=Path, default=None, help="the data set to grow")
    ap.add_argument("--out", type=Path, default=Path("bench/results/rowmem_replica.json"))
    args = ap.parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for label in ("dynamic", "fixed"):
        r = result[label]
        print(label, json.dumps({k: v for k, v in r.items() if k.startswith("per_row")
                                 or k.endswith(("_s", "_ms", "_qps"))}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
