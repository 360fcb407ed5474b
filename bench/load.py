"""Load test: many concurrent clients doing mixed search and upsert against one cluster.

Brings up an embedded cluster (a temporary data directory), creates a collection of --n random
vectors, then runs --clients threads, each with its own Client, for --seconds: each operation
is a single-query search (k=--k) with probability --search-fraction, otherwise an upsert of
--upsert-rows rows that overwrite existing ids (so the data size stays constant and memory
should stay flat). Records per-operation latency (p50 / p99), throughput, every error, and the
resident memory of the coordinator and every replica process, sampled each second; memory
growth is the mean of the last --mem-window seconds against the first.

Usage: shardvec bench load [--seconds 30] [--clients 32] [--n 20000] [--dim 128]
       [--shards 2] [--out bench/results/load.json]
Targets: no errors; memory growth within noise (a few percent).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from shardvec.bench.results import write_results
from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from shardvec.contract.errors import ShardvecError

NAME = "load"


@dataclass
class Worker:
    """One client thread's measurements."""

    index: int
    search_ms: list[float] = field(default_factory=list)
    upsert_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    def error(self, exc: BaseException) -> None:
        kind = exc.code.name if isinstance(exc, ShardvecError) else type(exc).__name__
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.samples) < 3:
            self.samples.append(f"{kind}: {exc}"[:300])


def run_worker(
    w: Worker, address: str, base: np.ndarray, args: argparse.Namespace, stop_at: float
) -> None:
    rng = np.random.default_rng(1000 + w.index)
    n, dim = base.shape
    with Client(address, timeout=30) as client:
        col = client.get_collection(NAME)
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            try:
                if rng.random() < args.search_fraction:
                    noise = rng.standard_normal(dim, dtype=np.float32)
                    q = base[rng.integers(n)] + 0.05 * noise
                    col.search_ids(q, k=args.k)
                    w.search_ms.append((time.perf_counter() - start) * 1e3)
                else:
                    rows = rng.choice(n, size=args.upsert_rows, replace=False)
                    vecs = rng.standard_normal((args.upsert_rows, dim)).astype(np.float32)
                    col.upsert([str(i) for i in rows.tolist()], vecs,
                               [{"i": int(i), "w": w.index} for i in rows.tolist()])
                    w.upsert_ms.append((time.perf_counter() - start) * 1e3)
            except Exception as exc:  # counted and reported, never hidden
                w.error(exc)


def sample_memory(
    pids: dict[str, int], stop: threading.Event, out: list[dict[str, Any]], t0: float
) -> None:
    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    while not stop.is_set():
        row: dict[str, Any] = {"t": round(time.monotonic() - t0, 2)}
        for name, proc in procs.items():
            try:
                row[name] = proc.memory_info().rss
            except psutil.Error:
                row[name] = None
        out.append(row)
        stop.wait(1.0)


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shardvec bench load", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the load phase")
    ap.add_argument("--clients", type=int, default=32, help="concurrent client threads")
    ap.add_argument("--n", type=int, default=20_000, help="rows in the collection")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--search-fraction", type=float, default=0.9)
    ap.add_argument("--upsert-rows", type=int, default=10, help="rows per upsert request")
    ap.add_argument("--mem-window", type=float, default=5.0, help="seconds averaged at each end")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded Ray")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default bench/results/load.json)")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(7)
    base = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="shardvec-load-") as tmp:
        cluster = ShardvecCluster({"data_dir": tmp, "port": 0}, num_cpus=args.num_cpus)
        try:
            with Client(cluster.address, timeout=300) as client:
                col = client.create_collection(NAME, dim=args.dim, metric="cosine",
                                               shards=args.shards, replicas=args.replicas)
                t = time.perf_counter()
                col.upsert([str(i) for i in range(args.n)], base,
                           [{"i": i} for i in range(args.n)], batch_size=2000)
                load_s = time.perf_counter() - t
            status = next(c for c in cluster.status() if c["name"] == NAME)
            pids = {"coordinator": cluster.coordinator_pid()}
            for r in status["replica_states"]:
                pids[f"replica s{r['shard']}r{r['replica']}"] = int(r["pid"])
            pids["clients (this process)"] = os.getpid()

            load_before = os.getloadavg()[0]
            workers = [Worker(i) for i in range(args.clients)]
            stop = threading.Event()
            mem: list[dict[str, Any]] = []
            t0 = time.monotonic()
            stop_at = t0 + args.seconds
            sampler = threading.Thread(target=sample_memory, args=(pids, stop, mem, t0))
            sampler.start()
            threads = [
                threading.Thread(target=run_worker, args=(w, cluster.address, base, args, stop_at))
                for w in workers
            ]
            for th in threads:
                th.start()
            for th in threads:
                th.join(args.seconds + 120)
            elapsed = time.monotonic() - t0
            stop.set()
            sampler.join()
            with Client(cluster.address, timeout=60) as client:
                final_count = client.get_collection(NAME).count()
        finally:
            cluster.stop()

    searches = [x for w in workers for x in w.search_ms]
    upserts = [x for w in workers for x in w.upsert_ms]
    errors: dict[str, int] = {}
    for w in workers:
        for kind, c in w.errors.items():
            errors[kind] = errors.get(kind, 0) + c
    memory = {}
    for name in pids:
        series = [(row["t"], row[name]) for row in mem if row.get(name)]
        first = [v for t, v in series if t <= args.mem_window]
        last = [v for t, v in series if t >= elapsed - args.mem_window]
        start_mb = float(np.mean(first)) / 2**20 if first else None
        end_mb = float(np.mean(last)) / 2**20 if last else None
        memory[name] = {
            "start_mb": start_mb,
            "end_mb": end_mb,
            "peak_mb": max(v for _, v in series) / 2**20 if series else None,
            "growth_pct": (end_mb / start_mb - 1) * 100 if start_mb and end_mb else None,
        }
    server = [m for name, m in memory.items() if not name.startswith("clients")]
    server_start = sum(m["start_mb"] or 0 for m in server)
    server_end = sum(m["end_mb"] or 0 for m in server)
    report: dict[str, Any] = {
        "meta": {
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": f"{platform.machine()}, {psutil.cpu_count()} CPUs, "
                       f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "load_s": load_s,
            "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],  # a shared machine?
            "final_count": final_count,
        },
        "elapsed_s": elapsed,
        "ops": len(searches) + len(upserts),
        "qps_total": (len(searches) + len(upserts)) / elapsed,
        "search": {"count": len(searches), "qps": len(searches) / elapsed,
                   "p50_ms": pct(searches, 50), "p99_ms": pct(searches, 99)},
        "upsert": {"count": len(upserts), "qps": len(upserts) / elapsed,
                   "rows_per_s": len(upserts) * args.upsert_rows / elapsed,
                   "p50_ms": pct(upserts, 50), "p99_ms": pct(upserts, 99)},
        "errors": errors,
        "error_samples": [s for w in workers for s in w.samples][:5],
        "memory": memory,
        "server_memory": {"start_mb": server_start, "end_mb": server_end,
                          "growth_pct": (server_end / server_start - 1) * 100
                          if server_start else None},
        "memory_samples": mem,
    }

    def ms(v: float | None) -> str:
        return f"{v:8.2f}" if v is not None else "       -"

    print(f"{args.clients} clients, {elapsed:.1f} s, {args.n} x {args.dim} cosine, "
          f"{args.shards} shards x {args.replicas} replicas, {report['meta']['machine']}")
    print(f"{'op':8} {'count':>8} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for op in ("search", "upsert"):
        r = report[op]
        print(f"{op:8} {r['count']:8d} {r['qps']:9.1f} {ms(r['p50_ms'])} {ms(r['p99_ms'])}")
    print(f"errors: {errors or 'none'}; rows at the end: {final_count} (expected {args.n}); "
          f"1-min load average before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f}")
    print(f"{'process':26} {'start MB':>9} {'end MB':>9} {'peak MB':>9} {'growth':>8}")
    for name, m in memory.items():
        growth = f"{m['growth_pct']:+7.1f}%" if m["growth_pct"] is not None else "       -"
        print(f"{name:26} {m['start_mb'] or 0:9.1f} {m['end_mb'] or 0:9.1f} "
              f"{m['peak_mb'] or 0:9.1f} {growth}")
    sm = report["server_memory"]
    print(f"{'server total':26} {sm['start_mb']:9.1f} {sm['end_mb']:9.1f} {'':9} "
          f"{sm['growth_pct']:+7.1f}%")
    write_results("load", report, args.out)
    return 0

