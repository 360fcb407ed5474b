"""Query-path benchmark: the cluster against the library it wraps, in one run.

  (a) raw hnswlib, one index, batch knn_query with --threads, at the smallest ef reaching
      --target recall@10 (found by binary search), plus an ef sweep;
  (b) the cluster's S hnswlib indexes over the same hash partition, searched and merged in
      this process (the ideal sharded system), at the per-shard ef the cluster uses;
  (c) the cluster through gRPC with --batch-query requests (1 replica), default parameters
      and an ef sweep (a request's ef is each shard's ef);
  (d) 1, 8, 32 concurrent single-query clients for --seconds each: QPS, p50, p99, errors,
      with the CPU each process spent per query;
  (e) with --peers: Chroma (embedded and as a server), Milvus Lite, Qdrant local mode, and
      with --pg-dsn pgvector in that PostgreSQL (batches, single queries, 32 clients,
      filtered queries), run by bench/query_peers.py under --peers-python (their own
      environment).
Prints a table, writes JSON and a recall-against-QPS PNG, and checks the targets.

Usage: shardvec bench query [options]   or   python bench/bench_query.py [options]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script
    sys.path[:0] = [str(REPO), str(REPO / "proto")]

import numpy as np  # noqa: E402
from shardvec.contract.settings import IndexSettings  # noqa: E402

from bench.query_cluster import (  # noqa: E402
    CpuMeter,
    batch_search,
    cluster_address,
    cluster_pids,
    concurrent_singles,
    load_collection,
)
from bench.query_data import Dataset, default_data, load_dataset, recall_at_k  # noqa: E402
from bench.query_local import InProcessShards, SingleIndex, best_qps, min_ef, sweep  # noqa: E402
from bench.query_peers import redact  # noqa: E402
from bench.query_report import check_targets, format_table, plot  # noqa: E402
from cluster.client import Client  # noqa: E402
from coordinator.collection import per_shard_ef, per_shard_k  # noqa: E402

EFS_SINGLE = [10, 16, 24, 32, 40, 48, 56, 64, 80, 100, 128]
EFS_SHARD = [10, 12, 16, 20, 24, 28, 32, 40, 48, 64]
PEERS_DEFAULT = ["chroma", "chroma_server", "milvus", "qdrant"]  # pgvector too with --pg-dsn


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, prefix or "Usage: ")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="shardvec bench query", description=__doc__, formatter_class=_Formatter
    )
    a = p.add_argument
    a("--data", type=Path, default=None, help="data set dir (default: $SHARDVEC_SHARED_DATA "
      "or ../shared/data/pypi-minilm-100k)")
    a("--n", type=int, default=None, help="use the first N base rows (ground truth by NumPy)")
    a("--queries", type=int, default=1000, help="query rows (default 1000)")
    a("--k", type=int, default=10)
    a("--shards", type=int, default=4)
    a("--m", type=int, default=16)
    a("--ef-construction", type=int, default=200)
    a("--threads", type=int, default=os.cpu_count() or 2,
      help="hnswlib threads of (a) and (b), and the embedded cluster's CPUs")
    a("--target", type=float, default=0.95, help="recall@k to reach (default 0.95)")
    a("--batch-query", type=int, default=1000, help="queries per batch request in (c)")
    a("--reps", type=int, default=3, help="batch timings: best of this many passes")
    a("--seconds", type=float, default=10.0, help="seconds per concurrency level in (d)")
    a("--concurrency", default="1,8,32", help="client counts of (d)")
    a("--server", default=None, help="bench a running cluster at this address instead of "
      "bringing one up (it must reach the data set's ids; the collection is dropped after)")
    a("--api-key", default=None, help="API key of --server")
    a("--setting", action="append", default=[], metavar="KEY=JSON",
      help="coordinator setting of the embedded cluster, e.g. batch_window_s=0.0005 (repeat)")
    a("--upsert-batch", type=int, default=2000)
    a("--peers", action="store_true", help="also measure Chroma (embedded, server), Milvus "
      "Lite, Qdrant local, and pgvector with --pg-dsn")
    a("--peers-python", default=os.environ.get("SHARDVEC_PEERS_PYTHON", sys.executable),
      help="interpreter that has the peers installed (env SHARDVEC_PEERS_PYTHON)")
    a("--peers-only", default=None, help="comma-separated (default: chroma,chroma_server,"
      "milvus,qdrant, and pgvector with --pg-dsn)")
    a("--pg-dsn", default=os.environ.get("SHARDVEC_PG_DSN"),
      help="PostgreSQL with the pgvector extension for --peers, e.g. "
      "postgresql://user:pw@127.0.0.1:5432/db (env SHARDVEC_PG_DSN); a table is created and "
      "dropped")
    a("--out", type=Path, default=REPO / "bench" / "results" / "query.json")
    a("--plot", type=Path, default=REPO / "bench" / "results" / "query_recall_qps.png")
    a("--no-sweep", action="store_true", help="skip the ef sweeps (targets only)")
    return p.parse_args(argv)


Runners = dict[str, Callable[[], Any]]


def run_local(
    ds: Dataset, args: argparse.Namespace, k_shard: int, ef_cluster: int
) -> tuple[dict[str, Any], Runners]:
    """(a) and (b): build, find the smallest ef reaching the target, sweep. Also returns the
    baseline searches at their chosen ef, timed again beside the cluster later."""
    nq, k, t = len(ds.queries), args.k, args.target
    out: dict[str, Any] = {}
    single = SingleIndex(ds.base, m=args.m, ef_construction=args.ef_construction,
                         threads=args.threads)
    s_search = partial(single.search, ds.queries, k)
    ef_a, rec_a = min_ef(lambda ef: recall_at_k(s_search(ef), ds.gt, k), t, k, 512)
    out["single"] = {
        "build_s": single.build_s,
        "min_ef": ef_a,
        "recall": rec_a,
        "qps": best_qps(partial(s_search, ef_a or 512), nq, args.reps),
        "sweep": [] if args.no_sweep else sweep(s_search, ds.gt, k, EFS_SINGLE, args.reps, nq),
    }
    log(f"(a) one index: ef {ef_a} recall {rec_a:.4f} qps {out['single']['qps']:.0f}")
    shards = InProcessShards(ds.base, args.shards, m=args.m,
                             ef_construction=args.ef_construction, threads=args.threads)
    b_search = partial(shards.search, ds.queries, k, k_shard)
    ef_b, rec_b = min_ef(lambda ef: recall_at_k(b_search(ef), ds.gt, k), t, k, 512)
    out["inprocess"] = {
        "build_s": shards.build_s,
        "sizes": shards.sizes,
        "k_shard": k_shard,
        "default_ef": ef_cluster,
        "default": {
            "ef": ef_cluster,
            "recall": recall_at_k(b_search(ef_cluster), ds.gt, k),
            "qps": best_qps(partial(b_search, ef_cluster), nq, args.reps),
        },
        "min_ef": ef_b,
        "at_target": {
            "ef": ef_b,
            "recall": rec_b,
            "qps": best_qps(partial(b_search, ef_b or 512), nq, args.reps),
        },
        "sweep": [] if args.no_sweep else sweep(b_search, ds.gt, k, EFS_SHARD, args.reps, nq),
    }
    d = out["inprocess"]["default"]
    log(f"(b) in-process shards: ef {ef_cluster} recall {d['recall']:.4f} qps {d['qps']:.0f}")
    runners: Runners = {
        "single_at_target": partial(s_search, ef_a or 512),
        "inprocess_default": partial(b_search, ef_cluster),
    }
    return out, runners


def run_peers(ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """(e) in a subprocess under --peers-python; what it could not run is reported as such."""
    with tempfile.TemporaryDirectory(prefix="shardvec-peers-") as tmp:
        d = Path(tmp)
        for name, arr in (("base", ds.base), ("queries", ds.queries), ("gt", ds.gt)):
            np.save(d / f"{name}.npy", arr)
        only = args.peers_only or ",".join(PEERS_DEFAULT + (["pgvector"] if args.pg_dsn else []))
        cmd = [
            args.peers_python, str(REPO / "bench" / "query_peers.py"),
            "--base", str(d / "base.npy"), "--queries", str(d / "queries.npy"),
            "--gt", str(d / "gt.npy"), "--out", str(d / "peers.json"), "--k", str(args.k),
            "--target", str(args.target), "--seconds", str(min(args.seconds, 10.0)),
            "--only", only,
        ]  # fmt: skip
        meta = (args.data or default_data()) / "base_texts.jsonl"
        if meta.exists():  # metadata of the base rows: pgvector's filtered queries
            cmd += ["--meta", str(meta)]
        env = dict(os.environ)
        if args.pg_dsn:  # through the environment: a password stays out of the process list
            env["SHARDVEC_PG_DSN"] = args.pg_dsn
        try:
            proc = subprocess.run(cmd, timeout=3600, capture_output=True, text=True, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        result: dict[str, Any] = (
            json.loads((d / "peers.json").read_text()) if (d / "peers.json").exists() else {}
        )
        if proc.returncode != 0:
            result["error"] = proc.stderr[-2000:]
        return result


def head_to_head(
    runners: Runners, col: Any, ds: Dataset, args: argparse.Namespace, ef_c: int | None
) -> dict[str, Any]:
    """Cluster batches and the in-process baselines timed in turn, `reps` rounds, best of
    each: background load on a shared machine then weighs on both sides alike."""
    nq, k, bq = len(ds.queries), args.k, min(args.batch_query, len(ds.queries))
    cluster_runs: Runners = {
        "cluster_default": partial(batch_search, col, ds.queries, k, None, bq, reps=1),
        "cluster_at_target": partial(batch_search, col, ds.queries, k, ef_c, bq, reps=1),
    }
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for _ in range(max(args.reps, 3)):
        for name, run in {**cluster_runs, **runners}.items():
            c0, t0 = time.process_time(), time.perf_counter()
            run()
            wall, used = time.perf_counter() - t0, time.process_time() - c0
            if nq / wall > best.get(name, 0.0):
                best[name], cpu[name] = nq / wall, used / nq * 1e3
    return {
        "qps": best,
        "bench_process_cpu_ms_per_query": cpu,
        "cluster_over_inprocess": best["cluster_default"] / best["inprocess_default"],
        "cluster_over_single": best["cluster_at_target"] / best["single_at_target"],
    }


def run_cluster(
    ds: Dataset, args: argparse.Namespace, ef_cluster: int, runners: Runners
) -> dict[str, Any]:
    """(c) and (d) through the public API of a fresh or running cluster."""
    nq, k, bq = len(ds.queries), args.k, min(args.batch_query, len(ds.queries))
    name = f"bench_query_{os.getpid()}"
    out: dict[str, Any] = {}
    with (
        cluster_address(args.server, None, args.threads, _settings(args.setting)) as address,
        Client(address, api_key=args.api_key, timeout=600) as client,
    ):
        col, load_s = load_collection(client, name, ds.base, shards=args.shards, m=args.m,
                                      ef_construction=args.ef_construction,
                                      batch=args.upsert_batch)
        try:
            out["load_s"] = load_s
            log(f"(c) loaded {len(ds.base)} rows in {load_s:.1f} s")
            batch_search(col, ds.queries, k, None, bq, reps=1)  # warm up
            pids = cluster_pids(client, name, address)
            meter = CpuMeter(pids)
            meter.start()
            ids, qps = batch_search(col, ds.queries, k, None, bq, reps=args.reps)
            meter.stop()
            out["default"] = {
                "ef": ef_cluster, "recall": recall_at_k(ids, ds.gt, k), "qps": qps,
                "cpu_ms_per_query": meter.per_query_ms(nq * args.reps),
            }  # fmt: skip
            _, qps2 = batch_search(col, ds.queries, k, None, bq, reps=args.reps, streams=2)
            out["default"]["qps_2_streams"] = qps2
            log(f"(c) cluster batch: recall {out['default']['recall']:.4f} qps {qps:.0f}")

            def c_recall(ef: int) -> float:
                return recall_at_k(batch_search(col, ds.queries, k, ef, bq, reps=1)[0], ds.gt, k)

            ef_c, rec_c = min_ef(c_recall, args.target, k, 512)
            out["min_ef"] = ef_c
            out["at_target"] = {
                "ef": ef_c, "recall": rec_c,
                "qps": batch_search(col, ds.queries, k, ef_c or 512, bq, reps=args.reps)[1],
            }  # fmt: skip
            out["head_to_head"] = head_to_head(runners, col, ds, args, ef_c)
            h = out["head_to_head"]
            log(f"(c) head to head: cluster / in-process {h['cluster_over_inprocess']:.3f}, "
                f"cluster / one index {h['cluster_over_single']:.3f}")
            out["sweep"] = []
            for ef in [] if args.no_sweep else EFS_SHARD:
                found, q = batch_search(col, ds.queries, k, ef, bq, reps=args.reps)
                out["sweep"].append({"ef": ef, "recall": recall_at_k(found, ds.gt, k), "qps": q})
            out["concurrency"] = []
            for clients in [int(c) for c in args.concurrency.split(",") if c]:
                meter = CpuMeter(pids)
                r = asyncio.run(concurrent_singles(
                    address, name, ds.queries, ds.gt, k=k, clients=clients,
                    seconds=args.seconds, api_key=args.api_key, meter=meter,
                ))
                row = r.to_dict()
                row["cpu_ms_per_query"] = meter.per_query_ms(r.calls)
                out["concurrency"].append(row)
                log(f"(d) {clients} clients: qps {r.qps:.0f} p50 {r.p50_ms:.2f} ms "
                    f"p99 {r.p99_ms:.2f} ms errors {r.errors}")
        finally:
            client.drop_collection(name)
    return out


def _settings(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key.strip()] = json.loads(value)
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = args.data or default_data()
    if not (data / "base.npy").exists():
        log(f"data set not found at {data} (give --data or SHARDVEC_SHARED_DATA)")
        return 2
    started = time.time()
    load_before = os.getloadavg()
    ds = load_dataset(data, args.n, args.queries, args.k)
    k_shard = per_shard_k(args.k, args.shards, exact=False)
    ef_cluster = per_shard_ef(None, IndexSettings(dim=ds.dim).ef, k_shard, args.shards,
                              exact=False, filtered=False) or IndexSettings(dim=ds.dim).ef
    results: dict[str, Any] = {
        "config": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "pg_dsn": args.pg_dsn and redact(args.pg_dsn),
            "data": str(data), "rows": len(ds.base), "dim": ds.dim, "gt": ds.gt_source,
        },
        "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_before": load_before,
        },
    }  # fmt: skip
    local, runners = run_local(ds, args, k_shard, ef_cluster)
    results.update(local)
    if args.peers:
        log("(e) peers ...")
        results["peers"] = run_peers(ds, args)
    results["cluster"] = run_cluster(ds, args, ef_cluster, runners)
    results["machine"]["load_avg_after"] = os.getloadavg()
    results["seconds"] = time.time() - started
    results["targets"] = check_targets(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float))
    plot(results, args.plot)
    print(format_table(results))
    log(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
