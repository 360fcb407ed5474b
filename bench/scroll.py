"""Paging and bulk data in and out: scroll and export rows/s, and Ray Data ingest rows/s with
1, 2 and 4 writer tasks against one client's `shardvec load` of the same rows, in one run.

Brings up an embedded cluster (a temporary data directory, Ray given --ray-cpus logical CPUs
so 4 writer tasks can be scheduled at once), takes the first --n rows of the shared set (or
seeded Gaussian rows when it is absent) with their metadata, then:
- `shardvec load` (the CLI in a subprocess, one client, --batch rows a request) into a new
  collection, timed from the process start to its exit;
- the Ray Data sink's `write` called in this process on the Dataset's blocks (its own code
  without Ray Data around it);
- Ray Data `write_dataset` of the same rows (a materialized Dataset of --blocks blocks) into
  a new collection with concurrency 1, 2 and 4, after a warm-up write of 64 rows that starts
  the worker processes (its time is reported apart);
- on the loaded collection: scroll (ids + metadata; then with vectors), `export` to JSON
  Lines + .npy, and the Ray Data source read (one task per shard), each best of --repeats.
The ingest runs twice: with the default index (m 16, ef_construction 200) and with a cheap one
(m 8, ef_construction 32), which tells the index build's CPU from the ingest path's.
Every collection has --shards shards, one replica, the default index settings.

Usage: shardvec bench scroll [--n 20000] [--shards 2] [--out bench/results/scroll.json]
Targets: ingest with 4 writer tasks faster than one client's load; scroll >= 10k rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import default_data, load_jsonl, load_vectors
from shardvec.bench.results import write_results
from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from shardvec.cluster.export import export_collection


def load_rows(n: int, seed: int) -> tuple[np.ndarray, list[dict[str, Any]], str]:
    d = default_data()
    if (d / "base.npy").exists():
        vecs, _ = load_vectors(d, n, 0)
        metas = load_jsonl(d / "base_texts.jsonl", n)
        return vecs, metas, f"shared set {d.name}, first {len(vecs)} rows"
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, 384)).astype(np.float32)
    return vecs, [{"i": i, "text": f"row {i}"} for i in range(n)], f"{n} seeded Gaussian rows"


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def best_of(repeats: int, fn: Any) -> tuple[Any, float]:
    """The result and the shortest time of `repeats` calls (reads: noise only adds time)."""
    runs = [timed(fn) for _ in range(repeats)]
    return runs[0][0], min(secs for _, secs in runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shardvec bench scroll", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1000, help="rows per upsert request")
    ap.add_argument("--blocks", type=int, default=16, help="blocks of the ingested Dataset")
    ap.add_argument("--ray-cpus", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="reads: best of this many")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default bench/results/scroll.json)")
    args = ap.parse_args(argv)

    import ray
    import ray.data

    from shardvec.cluster.ray_data import ShardvecDatasink, ShardvecDatasource, write_dataset

    vecs, metas, source = load_rows(args.n, args.seed)
    n = len(vecs)
    ids = [str(i) for i in range(n)]
    results: dict[str, Any] = {
        "rows": n,
        "dim": int(vecs.shape[1]),
        "shards": args.shards,
        "data": source,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "ray_cpus": args.ray_cpus,
        "load_average_before": os.getloadavg(),
    }
    print(f"bench scroll: {source}, {args.shards} shards")
    with tempfile.TemporaryDirectory(prefix="shardvec-bench-scroll-") as tmp:
        t = Path(tmp)
        np.save(t / "v.npy", vecs)
        with (t / "m.jsonl").open("w", encoding="utf-8") as f:
            for m in metas:
                f.write(json.dumps(m) + "\n")
        with ShardvecCluster({"data_dir": str(t / "data"), "port": 0},
                             num_cpus=args.ray_cpus) as cluster, \
                Client(cluster.address, timeout=600) as client:  # fmt: skip
            ds = ray.data.from_items(
                [{"id": i, "vector": v, "metadata_json": json.dumps(m)}
                 for i, v, m in zip(ids, vecs, metas, strict=True)],
                override_num_blocks=args.blocks,
            ).materialize()
            blocks = [ray.get(ref) for bundle in ds.iter_internal_ref_bundles()
                      for ref in bundle.block_refs]  # fmt: skip
            env = {**os.environ, "SHARDVEC_SERVER": cluster.address}
            # Warm-up: the first Ray Data write starts its worker processes and imports
            # pyarrow, gRPC and the client there; a fixed cost, reported apart.
            client.create_collection("warmup", vecs.shape[1], shards=args.shards)
            tiny = ray.data.from_items(
                [{"id": f"w{i}", "vector": vecs[i], "metadata_json": ""} for i in range(64)],
                override_num_blocks=8,
            )
            _, secs = timed(lambda: write_dataset(tiny, cluster.address, "warmup", concurrency=4))
            results["ray_data_warmup_s"] = secs
            print(f"  Ray Data warm-up (64 rows, 4 writers): {secs:.1f} s")
            client.drop_collection("warmup")
            # The default index first (the collection scrolled below), then a cheap one, to
            # tell the index build's CPU from the ingest path's.
            passes = (("default index", 0, 0), ("cheap index (m 8, ef_construction 32)", 8, 32))
            for label, hnsw_m, efc in passes:
                key = "cheap" if hnsw_m else "default"
                loaded = "loaded_cheap" if hnsw_m else "loaded"
                print(f" {label}:")
                client.create_collection(
                    loaded, vecs.shape[1], shards=args.shards, m=hnsw_m, ef_construction=efc
                )
                cmd = [sys.executable, "-m", "shardvec.cluster", "load", loaded, "--vectors",
                       str(t / "v.npy"), "--metadata", str(t / "m.jsonl"), "--batch",
                       str(args.batch)]  # fmt: skip
                done, secs = timed(lambda cmd=cmd: subprocess.run(
                    cmd, env=env, capture_output=True, text=True, timeout=900))
                if done.returncode != 0:
                    raise SystemExit(f"shardvec load failed: {done.stderr[-2000:]}")
                results[f"load_cli_{key}"] = {"seconds": secs, "rows_per_s": n / secs}
                print(f"  shardvec load (1 client)      {n / secs:10,.0f} rows/s  ({secs:.1f} s)")
                # The sink's own code, called in this process on the same blocks: what the
                # writer tasks would do without Ray Data's scheduling around them.
                client.create_collection(
                    "direct", vecs.shape[1], shards=args.shards, m=hnsw_m, ef_construction=efc
                )
                sink = ShardvecDatasink(cluster.address, "direct", batch_size=args.batch)
                written, secs = timed(lambda sink=sink: sink.write(blocks, None))
                assert written == n
                results[f"sink_in_driver_{key}"] = {"seconds": secs, "rows_per_s": n / secs}
                print(f"  sink.write in this process    {n / secs:10,.0f} rows/s  ({secs:.1f} s)")
                client.drop_collection("direct")
                results[f"ray_data_ingest_{key}"] = {}
                for tasks in (1, 2, 4):
                    name = f"ray{tasks}"
                    client.create_collection(
                        name, vecs.shape[1], shards=args.shards, m=hnsw_m, ef_construction=efc
                    )
                    written, secs = timed(lambda name=name, tasks=tasks: write_dataset(
                        ds, cluster.address, name, concurrency=tasks, batch_size=args.batch))
                    assert written == n and client.get_collection(name).count() == n
                    results[f"ray_data_ingest_{key}"][str(tasks)] = {
                        "seconds": secs, "rows_per_s": n / secs}
                    print(f"  Ray Data ingest, {tasks} writer(s)  {n / secs:10,.0f} rows/s  "
                          f"({secs:.1f} s)")
                    client.drop_collection(name)

            col = client.get_collection("loaded")
            for label, vec in (("scroll (ids, metadata)", False),
                               ("scroll (+ vectors)", True)):  # fmt: skip
                got, secs = best_of(args.repeats, lambda vec=vec: sum(
                    1 for _ in col.scroll(page_size=1000, include_vectors=vec)))
                assert got == n
                results[label] = {"seconds": secs, "rows_per_s": n / secs}
                print(f"  {label:<28}  {n / secs:10,.0f} rows/s  ({secs:.2f} s)")
            got, secs = best_of(
                args.repeats, lambda: export_collection(col, t / "x.jsonl", t / "x.npy")
            )
            assert got == n and np.load(t / "x.npy").shape == vecs.shape
            results["export (jsonl + npy)"] = {"seconds": secs, "rows_per_s": n / secs}
            print(f"  {'export (jsonl + npy)':<28}  {n / secs:10,.0f} rows/s  ({secs:.2f} s)")
            src = ShardvecDatasource(cluster.address, "loaded")
            got, secs = best_of(args.repeats, lambda: ray.data.read_datasource(src).count())
            assert got == n
            results["ray_data_read"] = {"seconds": secs, "rows_per_s": n / secs,
                                        "tasks": src.slices}
            print(f"  {'Ray Data read (1 task/shard)':<28}  {n / secs:10,.0f} rows/s  "
                  f"({secs:.2f} s)")
    results["load_average_after"] = os.getloadavg()
    write_results("scroll", results, args.out)
    return 0

