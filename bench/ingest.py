"""Durable ingest through the cluster: what atomic writes across shards cost.

Starts a real `shardvec up` server (its own embedded Ray) from this tree and from a reference
tree (a checkout of the commit before atomic writes, e.g. `git worktree add /tmp/base
ff8bd0c`), alternately, `--rounds` times each, on the same machine in the same run. Each run
creates a collection (`--shards` x `--replicas`, durable: every write fsync'd on every replica)
and measures rows/s of two loads through the public API:

- bulk: one client upserting `--rows` rows in batches of `--batch` (the figure BENCHMARKS.md
  gives for durable ingest);
- small: `--clients` concurrent clients upserting batches of `--small-batch` rows for
  `--seconds` (group commit's case: each write is a stage, a decision and a commit).

Prints a table (best of the rounds per tree, and the ratio) and writes JSON.

    shardvec bench ingest --reference-tree /tmp/base [--rows 20000] [--out ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.results import write_results
from shardvec.cluster.client import Client
from shardvec.cluster.process import ServerProcess, free_port

HERE = Path(__file__).resolve().parents[1]


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _server(tree: Path, data: Path, port: int, log_dir: Path) -> ServerProcess:
    """`shardvec up` importing its code from `tree` (its working directory and first on
    PYTHONPATH, for Ray's workers too)."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "proto")])
    try:
        return ServerProcess(data, port, "--num-cpus", "4", log_dir=log_dir, cwd=tree)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def run_once(tree: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data, port = (work / f"data-{time.time_ns()}").resolve(), free_port()
    server = _server(tree, data, port, work)
    try:
        with Client(f"127.0.0.1:{port}", timeout=120) as c:
            col = c.create_collection("ingest", args.dim, "cosine", args.shards, args.replicas)
            vecs = _vectors(args.rows, args.dim, 0)
            start = time.perf_counter()
            for s in range(0, args.rows, args.batch):
                e = min(s + args.batch, args.rows)
                col.upsert([f"r{i}" for i in range(s, e)], vecs[s:e])
            bulk_s = time.perf_counter() - start
            # (on an overloaded machine the health probe can take a busy replica out for a
            # moment; the count waits for it to be back)
            c.wait_live("ingest", 120)
            assert col.count() == args.rows
        small = _small(port, args)
    finally:
        server.stop()
    return {
        "bulk_rows_per_s": args.rows / bulk_s,
        "bulk_seconds": bulk_s,
        "small_rows_per_s": small["rows"] / small["seconds"],
        "small_p50_ms": small["p50_ms"],
        "small_p99_ms": small["p99_ms"],
    }


def _small(port: int, args: argparse.Namespace) -> dict[str, float]:
    stop = time.monotonic() + args.seconds
    lat: list[float] = []
    rows = [0]
    lock = threading.Lock()

    def client(k: int) -> None:
        rng = np.random.default_rng(100 + k)
        with Client(f"127.0.0.1:{port}", timeout=60) as c:
            col = c.get_collection("ingest")
            while time.monotonic() < stop:
                ids = [f"r{i}" for i in rng.choice(args.rows, args.small_batch, replace=False)]
                vecs = _vectors(args.small_batch, args.dim, int(rng.integers(1 << 30)))
                t = time.perf_counter()
                col.upsert(ids, vecs)
                with lock:
                    lat.append((time.perf_counter() - t) * 1e3)
                    rows[0] += args.small_batch

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    return {
        "rows": float(rows[0]),
        "seconds": seconds,
        "p50_ms": float(np.percentile(lat, 50)) if lat else 0.0,
        "p99_ms": float(np.percentile(lat, 99)) if lat else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shardvec bench ingest", description=__doc__.split("\n")[0])
    ap.add_argument("--reference-tree", type=Path, required=True,
                    help="a checkout of the reference commit (git worktree add DIR COMMIT)")
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the bulk load")
    ap.add_argument("--batch", type=int, default=2_000, help="rows per bulk upsert")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--clients", type=int, default=8, help="concurrent small-upsert clients")
    ap.add_argument("--small-batch", type=int, default=10, help="rows per small upsert")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of small upserts")
    ap.add_argument("--rounds", type=int, default=2, help="runs per tree, alternating")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default bench/results/ingest.json)")
    args = ap.parse_args(argv)
    trees = {"reference": args.reference_tree.resolve(), "atomic": HERE}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in trees}
    with tempfile.TemporaryDirectory(prefix="shardvec-ingest-") as tmp:
        for r in range(args.rounds):
            for name, tree in trees.items():
                res = run_once(tree, args, Path(tmp))
                runs[name].append(res)
                print(f"round {r + 1} {name}: bulk {res['bulk_rows_per_s']:,.0f} rows/s, "
                      f"small {res['small_rows_per_s']:,.0f} rows/s "
                      f"(p50 {res['small_p50_ms']:.0f} ms)", flush=True)
    best = {
        name: {
            "bulk_rows_per_s": max(x["bulk_rows_per_s"] for x in rs),
            "small_rows_per_s": max(x["small_rows_per_s"] for x in rs),
            "small_p50_ms": min(x["small_p50_ms"] for x in rs),
            "small_p99_ms": min(x["small_p99_ms"] for x in rs),
        }
        for name, rs in runs.items()
    }
    ref, new = best["reference"], best["atomic"]
    print("\n| load | reference rows/s | atomic rows/s | ratio |")
    print("|---|---|---|---|")
    for key, label in (("bulk_rows_per_s", f"bulk, batches of {args.batch}"),
                       ("small_rows_per_s", f"{args.clients} clients x {args.small_batch} rows")):
        print(f"| {label} | {ref[key]:,.0f} | {new[key]:,.0f} | {new[key] / ref[key]:.2f}x |")
    print(f"| small p50 / p99 ms | {ref['small_p50_ms']:.0f} / {ref['small_p99_ms']:.0f} | "
          f"{new['small_p50_ms']:.0f} / {new['small_p99_ms']:.0f} | |")
    write_results("ingest", {
        "args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "best": best,
        "ratio_bulk": new["bulk_rows_per_s"] / ref["bulk_rows_per_s"],
        "ratio_small": new["small_rows_per_s"] / ref["small_rows_per_s"]}, args.out)
    return 0

