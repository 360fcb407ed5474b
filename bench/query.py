"""Query-path benchmark: the cluster against the library it wraps and
against peers, in one run.

  (a) raw hnswlib, one index over all rows, batch knn_query with --threads, at the smallest ef
      reaching --target recall@10 (binary search), plus an ef sweep;
  (b) for each shard count of --shards (default 1,4), the cluster's S hnswlib indexes over
      the same hash partition, searched and merged in this process (the ideal sharded
      system), at the per-shard ef and k' the cluster uses;
  (c) the cluster (embedded Ray, one node, 1 replica) at each shard count, loaded with the
      data set's metadata (--meta-fields of base_texts.jsonl), each measurement in two modes,
      ids only (`search_ids`) and with metadata (the default `search`):
        batch QPS (--batch-query queries a call, default parameters; the modes, the ideal and
        the filtered batches timed in turn), recall@10 at defaults;
        one client's single queries, p50 / p99;
        --clients concurrent single-query clients in --client-processes spawned processes
        (each its own Client, the rest threads): QPS, p99, errors;
        filtered by --where (default {"month": "2026-10"}, 9.6 % of the shared set) with
        recall against exact filtered ground truth from NumPy: single p50, batch QPS against
        the unfiltered batch QPS;
        exact=True single queries, p50;
      and at 1 shard, the cluster's batch QPS at its smallest ef reaching --target against
      (a) at its own, timed in turn;
  (d) with --peers: Chroma (embedded and as a server), Milvus Lite, Qdrant local mode, and
      with --pg-dsn pgvector in that PostgreSQL (batches, single queries, concurrent
      clients, filtered queries), run by the package bench/peers/ (`python -m peers`) under
      --peers-python (their own environment).
Prints a table, writes JSON and a recall-against-QPS PNG, and checks the targets.

Usage: shardvec bench query [options]   or   python -m shardvec.bench query [options]
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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shardvec.bench.datasets import (
    FILTER_WHERE,
    META_FIELDS,
    Dataset,
    default_data,
    filtered_topk,
    load_dataset,
    load_metadata,
    matching_rows,
)
from shardvec.bench.measure import recall_at_k
from shardvec.bench.peers.common import redact
from shardvec.bench.query_clients import (
    MODES,
    ClientPool,
    batches,
    in_turn,
    metadata_agrees,
    single_queries,
)
from shardvec.bench.query_cluster import CpuMeter, cluster_address, cluster_pids, load_collection
from shardvec.bench.query_local import InProcessShards, SingleIndex, best_qps, min_ef, sweep
from shardvec.bench.query_report import check_targets, format_table, plot
from shardvec.bench.results import RESULTS, write_results
from shardvec.cluster.client import Client
from shardvec.contract.settings import IndexSettings
from shardvec.coordinator.queries.reads import per_shard_ef, per_shard_k

REPO = Path(__file__).resolve().parents[1]

EFS_SINGLE = [10, 16, 24, 32, 40, 48, 56, 64, 80, 100, 128]
PEERS_DEFAULT = ["chroma", "chroma_server", "milvus", "qdrant"]  # pgvector too with --pg-dsn


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="shardvec bench query",
        description=__doc__.split("\nUsage:")[0].rstrip(),  # the usage line is argparse's
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--data", type=Path, default=None, help="data set dir (default: $SHARDVEC_SHARED_DATA "
      "or ../shared/data/pypi-minilm-100k)")
    a("--n", type=int, default=None, help="use the first N base rows (ground truth by NumPy)")
    a("--queries", type=int, default=1000, help="query rows (default 1000)")
    a("--k", type=int, default=10)
    a("--shards", default="1,4", help="shard counts of (b) and (c), comma-separated")
    a("--m", type=int, default=16)
    a("--ef-construction", type=int, default=200)
    a("--threads", type=int, default=os.cpu_count() or 2,
      help="hnswlib threads of (a) and (b), and the embedded cluster's CPUs")
    a("--target", type=float, default=0.95, help="recall@k to reach (default 0.95)")
    a("--batch-query", type=int, default=500, help="queries per batch call (default 500)")
    a("--reps", type=int, default=3, help="batch timings: best of this many rounds")
    a("--seconds", type=float, default=10.0, help="seconds per single-query and concurrent "
      "measurement")
    a("--clients", type=int, default=32, help="concurrent single-query clients (default 32)")
    a("--client-processes", type=int, default=4, help="processes the concurrent clients are "
      "spread over (default 4; threads in each)")
    a("--where", type=json.loads, default=FILTER_WHERE, help="flat equality filter of the "
      "filtered measurements, JSON (default {\"month\": \"2026-10\"})")
    a("--meta-fields", default=",".join(META_FIELDS), help="base_texts.jsonl fields loaded as "
      "each row's metadata")
    a("--server", default=None, help="bench a running cluster at this address instead of "
      "bringing one up (it must reach the data set's ids; the collections are dropped after)")
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
    a("--out", type=Path, default=None, help="JSON path (default bench/results/query.json)")
    a("--plot", type=Path, default=RESULTS / "query_recall_qps.png")
    a("--no-sweep", action="store_true", help="skip the ef sweep of (a)")
    return p.parse_args(argv)


Runners = dict[str, Callable[[], Any]]


def shard_plan(k: int, shards: int, dim: int) -> tuple[int, int]:
    """(k', per-shard ef) of a default unfiltered search over `shards` shards."""
    k_shard = per_shard_k(k, shards, exact=False)
    default = IndexSettings(dim=dim).ef
    ef = per_shard_ef(None, default, k_shard, shards, exact=False, filtered=False) or default
    return k_shard, ef


def run_local(
    ds: Dataset, args: argparse.Namespace, counts: list[int]
) -> tuple[dict[str, Any], Runners]:
    """(a) and (b): build, find (a)'s smallest ef reaching the target, sweep. Also returns the
    baseline searches, timed again in turn with the cluster later."""
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
    out["exact_reference"] = exact_reference(ds, k)
    log(f"(a) NumPy exact scan of one query over {len(ds.base)} rows: "
        f"{out['exact_reference']['best_ms']:.2f} ms best, {out['exact_reference']['p50_ms']:.2f} "
        "ms p50")
    runners: Runners = {"raw_at_target": partial(s_search, ef_a or 512)}
    out["inprocess"] = {}
    for shards_n in counts:
        k_shard, ef = shard_plan(k, shards_n, ds.dim)
        shards = (InProcessShards.over(single, len(ds.base)) if shards_n == 1 else
                  InProcessShards(ds.base, shards_n, m=args.m,
                                  ef_construction=args.ef_construction, threads=args.threads))
        b_search = partial(shards.search, ds.queries, k, k_shard, ef)
        out["inprocess"][str(shards_n)] = {
            "build_s": shards.build_s, "sizes": shards.sizes, "k_shard": k_shard, "ef": ef,
            "recall": recall_at_k(b_search(), ds.gt, k),
            "qps": best_qps(b_search, nq, args.reps),
        }  # fmt: skip
        runners[f"ideal_{shards_n}"] = b_search
        d = out["inprocess"][str(shards_n)]
        log(f"(b) in-process {shards_n} shards: k' {k_shard} ef {ef} recall {d['recall']:.4f} "
            f"qps {d['qps']:.0f}")
    return out, runners


def exact_reference(ds: Dataset, k: int, calls: int = 200) -> dict[str, float]:
    """The floor of an exact single query here: one NumPy matrix-vector product over every
    row and a top-k selection, in this process (memory-bandwidth bound at 100k x 384)."""
    lat = []
    for j in range(calls):
        q = ds.queries[j % len(ds.queries)]
        t0 = time.perf_counter()
        scores = ds.base @ q
        np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        lat.append(time.perf_counter() - t0)
    return {"best_ms": min(lat) * 1e3, "p50_ms": float(np.percentile(lat, 50)) * 1e3,
            "rows": float(len(ds.base))}  # fmt: skip


def run_peers(ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """(d) in a subprocess under --peers-python; what it could not run is reported as such."""
    with tempfile.TemporaryDirectory(prefix="shardvec-peers-") as tmp:
        d = Path(tmp).resolve()
        for name, arr in (("base", ds.base), ("queries", ds.queries), ("gt", ds.gt)):
            np.save(d / f"{name}.npy", arr)
        # The peers' venv has no shardvec: bench/peers/ runs there as the top-level package
        # `peers`, from a folder that holds only it and the data (not from bench/, whose
        # keyword.py would shadow the standard library's `keyword` module).
        (d / "peers").symlink_to(Path(__file__).resolve().with_name("peers"), True)
        python = args.peers_python  # absolute, not resolved: a venv's python is a link out of it
        python = os.path.abspath(python) if os.sep in python else python
        only = args.peers_only or ",".join(PEERS_DEFAULT + (["pgvector"] if args.pg_dsn else []))
        cmd = [
            python, "-m", "peers",
            "--base", str(d / "base.npy"), "--queries", str(d / "queries.npy"),
            "--gt", str(d / "gt.npy"), "--out", str(d / "peers.json"), "--k", str(args.k),
            "--target", str(args.target), "--seconds", str(min(args.seconds, 10.0)),
            "--only", only, "--clients", str(args.clients),
        ]  # fmt: skip
        meta = ((args.data or default_data()) / "base_texts.jsonl").resolve()
        if meta.exists():  # metadata of the base rows: pgvector's filtered queries
            cmd += ["--meta", str(meta)]
        env = dict(os.environ)
        if args.pg_dsn:  # through the environment: a password stays out of the process list
            env["SHARDVEC_PG_DSN"] = args.pg_dsn
        try:
            proc = subprocess.run(cmd, timeout=3600, capture_output=True, text=True, env=env,
                                  cwd=d)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        result: dict[str, Any] = (
            json.loads((d / "peers.json").read_text()) if (d / "peers.json").exists() else {}
        )
        if proc.returncode != 0:
            result["error"] = proc.stderr[-2000:]
        return result


class Filtered:
    """The filtered measurements' filter, its rows and exact filtered ground truth."""

    def __init__(self, ds: Dataset, meta: list[dict[str, Any]], where: dict[str, Any], k: int):
        self.where = where
        self.rows = matching_rows(meta, where)
        self.selectivity = len(self.rows) / len(ds.base)
        self.gt: npt.NDArray[np.int64] = filtered_topk(ds.base, ds.queries, self.rows, k)


def run_cluster_at(
    shards_n: int,
    client: Client,
    address: str,
    pool: ClientPool,
    ds: Dataset,
    meta: list[dict[str, Any]],
    filt: Filtered,
    args: argparse.Namespace,
    runners: Runners,
) -> dict[str, Any]:
    """(c) at one shard count: a fresh collection loaded with metadata, measured, dropped."""
    nq, k, bq, secs = len(ds.queries), args.k, min(args.batch_query, len(ds.queries)), args.seconds
    name = f"bench_query_{os.getpid()}_{shards_n}"
    k_shard, ef = shard_plan(k, shards_n, ds.dim)
    out: dict[str, Any] = {"shards": shards_n, "k_shard": k_shard, "ef": ef,
                           "load_avg_start": os.getloadavg()}  # fmt: skip
    col, out["load_s"] = load_collection(client, name, ds.base, shards=shards_n, m=args.m,
                                         ef_construction=args.ef_construction,
                                         batch=args.upsert_batch, metadatas=meta)
    log(f"(c) {shards_n} shards: loaded {len(ds.base)} rows with metadata in "
        f"{out['load_s']:.1f} s")
    try:
        run = partial(batches, col, ds.queries, k, batch=bq)
        for mode in MODES:  # warm up, and the recall and metadata at defaults
            run(mode=mode)
        out["batch"] = {}
        for mode in MODES:
            found, metas, _ = run(mode=mode)
            out["batch"][mode] = {"recall": recall_at_k(found, ds.gt, k)}
            if mode == "metadata":
                out["batch"][mode]["metadata_agrees"] = metadata_agrees(found, metas, meta)
        out["filtered"] = {"where": filt.where, "rows": len(filt.rows),
                           "selectivity": filt.selectivity, "batch": {}}  # fmt: skip
        for mode in MODES:
            found, _, _ = run(mode=mode, where=filt.where)
            out["filtered"]["batch"][mode] = {"recall": recall_at_k(found, filt.gt, k)}
        timed: Runners = {
            **{f"batch_{m}": partial(run, mode=m) for m in MODES},
            **{f"filtered_{m}": partial(run, mode=m, where=filt.where) for m in MODES},
            f"ideal_{shards_n}": runners[f"ideal_{shards_n}"],
        }
        if shards_n == 1:  # the cluster at equal recall against raw hnswlib
            ef_c, rec_c = min_ef(
                lambda e: recall_at_k(run(mode="ids", ef=e)[0], ds.gt, k), args.target, k, 512
            )
            out["at_target"] = {"ef": ef_c, "recall": rec_c}
            timed["ids_at_target"] = partial(run, mode="ids", ef=ef_c or 512)
            timed["metadata_at_target"] = partial(run, mode="metadata", ef=ef_c or 512)
            timed["raw_at_target"] = runners["raw_at_target"]
        pids = cluster_pids(client, name, address)
        rounds = max(args.reps, 3)
        best, cpu = in_turn(timed, rounds, partial(CpuMeter, pids))
        qps = {key: nq / s for key, s in best.items()}
        out["in_turn_qps"] = qps
        out["in_turn_cpu_ms_per_query"] = {  # per process: client (this one), coordinator, shards
            key: {proc: round(s / (rounds * nq) * 1e3, 4) for proc, s in used.items()}
            for key, used in cpu.items()
        }
        for mode in MODES:
            out["batch"][mode]["qps"] = qps[f"batch_{mode}"]
            out["filtered"]["batch"][mode]["qps"] = qps[f"filtered_{mode}"]
        if shards_n == 1:
            out["at_target"].update(
                qps_ids=qps["ids_at_target"], qps_metadata=qps["metadata_at_target"],
                raw_qps=qps["raw_at_target"],
            )
        b = out["batch"]
        log(f"(c) {shards_n} shards batch: ids {b['ids']['qps']:.0f} metadata "
            f"{b['metadata']['qps']:.0f} ideal {qps[f'ideal_{shards_n}']:.0f} QPS, recall "
            f"{b['ids']['recall']:.4f}; filtered {out['filtered']['batch']['metadata']['qps']:.0f}"
            f" QPS recall {out['filtered']['batch']['metadata']['recall']:.4f}")

        def singles(key: str, gt: npt.NDArray[np.int64], **kw: Any) -> None:
            meter = CpuMeter(pids)
            meter.start()
            res = single_queries(col, ds.queries, gt, k, MODES, secs, **kw)
            meter.stop()
            calls = sum(r.calls for r in res.values())
            out[key] = {m: r.to_dict() for m, r in res.items()}
            out[key]["cpu_ms_per_query"] = meter.per_query_ms(calls)
            log(f"(c) {shards_n} shards {key}: " + ", ".join(
                f"{m} p50 {r.p50_ms:.2f} p99 {r.p99_ms:.2f} ms" for m, r in res.items()))

        singles("single", ds.gt)
        singles("filtered_single", filt.gt, where=filt.where)
        singles("exact_single", ds.gt, exact=True)
        out["concurrent"] = {}
        for mode in MODES:
            meter = CpuMeter(pids)
            meter.start()
            r = pool.run(name, mode, secs, ds.gt)
            meter.stop()
            out["concurrent"][mode] = {**r.to_dict(),
                                       "cpu_ms_per_query": meter.per_query_ms(r.calls)}
            log(f"(c) {shards_n} shards {r.clients} clients {mode}: qps {r.qps:.0f} p50 "
                f"{r.p50_ms:.2f} p99 {r.p99_ms:.2f} ms errors {r.errors}")
    finally:
        client.drop_collection(name)
    return out


def run_clusters(
    ds: Dataset, meta: list[dict[str, Any]], args: argparse.Namespace, counts: list[int],
    runners: Runners,
) -> dict[str, Any]:
    """(c) at every shard count, one embedded cluster (or --server) for all of them."""
    filt = Filtered(ds, meta, args.where, args.k)
    log(f"(c) filter {json.dumps(args.where)}: {len(filt.rows)} rows "
        f"({filt.selectivity:.1%})")
    out: dict[str, Any] = {}
    threads = max(1, args.clients // args.client_processes)
    with (
        cluster_address(args.server, None, args.threads, _settings(args.setting)) as address,
        Client(address, api_key=args.api_key, timeout=600) as client,
        ClientPool(address, args.api_key, ds.queries, args.k,
                   processes=args.client_processes, threads=threads) as pool,
    ):
        for shards_n in counts:
            out[str(shards_n)] = run_cluster_at(shards_n, client, address, pool, ds, meta, filt,
                                                args, runners)
    return out


def _settings(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key.strip()] = json.loads(value)
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = args.data or default_data()
    if not (data / "base.npy").exists():
        log(f"data set not found at {data} (give --data or SHARDVEC_SHARED_DATA)")
        return 2
    started = time.time()
    load_before = os.getloadavg()
    counts = [int(c) for c in str(args.shards).split(",") if c]
    ds = load_dataset(data, args.n, args.queries, args.k)
    meta, meta_source = load_metadata(data, len(ds.base), tuple(args.meta_fields.split(",")))
    results: dict[str, Any] = {
        "config": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "pg_dsn": args.pg_dsn and redact(args.pg_dsn),
            "data": str(data), "rows": len(ds.base), "dim": ds.dim, "gt": ds.gt_source,
            "metadata": meta_source, "commit": git_commit(),
        },
        "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_before": load_before,
        },
    }  # fmt: skip
    local, runners = run_local(ds, args, counts)
    results.update(local)
    if args.peers:
        log("(d) peers ...")
        results["machine"]["load_avg_before_peers"] = os.getloadavg()
        results["peers"] = run_peers(ds, args)
    results["cluster"] = run_clusters(ds, meta, args, counts, runners)
    results["machine"]["load_avg_after"] = os.getloadavg()
    results["seconds"] = time.time() - started
    results["targets"] = check_targets(results)
    write_results("query", results, args.out)
    plot(results, args.plot)
    print(format_table(results))
    log(f"wrote {args.plot}")
    return 0

