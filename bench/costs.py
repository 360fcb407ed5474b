"""Per-part costs for the cost model (docs/cost-model.md), measured in one run.

1. Search: raw hnswlib (M=16, ef_construction=200, cosine) on the first 10k/25k/50k/100k rows
   of the shared set, searched the way a replica does (breadth max(k_shard, ef), one thread),
   at the per-shard ef the coordinator uses for S shards; per-query time of 1000-query batches
   and of single calls, recall@10, and a fit t = a + b*ln(n) per ef.
2. Shard RPC: a real `shard.server.ShardServer` around a `ShardEngine` in a child process,
   called with a 1-query and a 1000-query search through a sync stub and through the
   coordinator's `RemoteShard` (grpc.aio); wall time, client CPU and server CPU per call, and
   the same searches in-process in the server, so the overhead is the difference.
3. Coordinator work besides RPCs, in-process: parse the public request, build and serialize
   the shard request, parse S shard responses, `merge_topk`, build and serialize the public
   response; for S = 1..64 and batches of 1, 32 and 1000 queries.

Usage: shardvec bench costs [--data DIR] [--sizes 10000,25000,50000,100000]
       [--out bench/results/costs.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import hnswlib
import numpy as np
import psutil

from shardvec.bench.datasets import (
    base_rows,
    brute_force_topk,
    default_data,
    load_vectors,
    normalised,
    require_data,
)
from shardvec.bench.measure import recall_at_k
from shardvec.bench.results import write_results
from shardvec.contract.codec import encode_packed
from shardvec.contract.convert import vectors_from_proto
from shardvec.contract.convert_public import search_response
from shardvec.contract.convert_shard import search_result_from_proto
from shardvec.contract.settings import IndexSettings
from shardvec.contract.types import Hits
from shardvec.contract.validation import validate_vectors
from shardvec.coordinator.queries.merge import merge_topk
from shardvec.coordinator.queries.reads import per_shard_ef, per_shard_k
from shardvec.v1 import shard_pb2, shard_pb2_grpc
from shardvec.v1 import vector_search_pb2 as pb

K = 10
DEFAULT_EF = IndexSettings(dim=1).ef
SHARD_COUNTS = (1, 2, 4, 8, 16, 32, 64)


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, float]:
    """Best wall time and best CPU time of this thread over `repeats` calls. CPU time is what
    the model uses: the machine may be shared, and waiting for a core is not a cost of the
    code (hnswlib with num_threads=1 searches in the calling thread)."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.thread_time() - c0)
    return wall, cpu


def fit_log(ns: list[int], ts: list[float]) -> tuple[float, float]:
    """Least squares t = a + b * ln(n)."""
    b, a = np.polyfit(np.log(np.asarray(ns, dtype=np.float64)), np.asarray(ts), 1)
    return float(a), float(b)


# ------------------------------------------------------------------------------- 1. search


def search_costs(args: argparse.Namespace) -> dict[str, Any]:
    """Grow one index through the sizes (HNSW inserts one by one, so an index grown to n is
    built as one built at n) and time searches at each size."""
    sizes = sorted(s for s in args.sizes if s <= base_rows(args.data))
    base, queries = (normalised(a) for a in load_vectors(args.data, sizes[-1], args.queries))
    efs = sorted({per_shard_ef(None, DEFAULT_EF, per_shard_k(K, s, False), s, False, False)
                  or DEFAULT_EF for s in (1, 2, 4, 8, 16)}, reverse=True)  # fmt: skip
    index = hnswlib.Index(space="cosine", dim=base.shape[1])
    index.init_index(max_elements=sizes[-1], ef_construction=200, M=16)
    index.set_ef(1)  # as the replica: breadth comes from k = max(k_shard, ef)
    rows: list[dict[str, Any]] = []
    done = 0
    single_n = min(args.single, len(queries))
    for n in sizes:
        t0 = time.perf_counter()
        index.add_items(base[done:n], np.arange(done, n), num_threads=args.build_threads)
        build_s, done = time.perf_counter() - t0, n
        gt = brute_force_topk(base[:n], queries, K)
        for ef in efs:
            rows.append(_search_row(index, queries, single_n, gt, n, ef, args.repeats))
            r = rows[-1]
            print(f"  search n={n:>7,} ef={ef:>3}: {r['batch_cpu_us_per_query']:7.1f} µs/q "
                  f"batch, {r['single_cpu_us_per_query']:7.1f} µs/q single (CPU), "
                  f"recall {r['recall_at_10']:.3f}", flush=True)  # fmt: skip
        rows[-1]["added_build_s"] = build_s
    fits = {}
    for ef in efs:
        pts = [r for r in rows if r["ef"] == ef]
        a, b = fit_log([r["n"] for r in pts], [r["batch_cpu_us_per_query"] for r in pts])
        fits[str(ef)] = {"a_us": a, "b_us_per_ln_n": b}
    return {"sizes": sizes, "efs": efs, "rows": rows, "fit_batch_cpu_us": fits,
            "index_bytes_per_vector": _index_bytes(index, base.shape[1])}  # fmt: skip


def _search_row(
    index: hnswlib.Index, queries: np.ndarray, single_n: int, gt: np.ndarray, n: int, ef: int,
    repeats: int,
) -> dict[str, Any]:
    """Per-query wall and CPU time of one 1000-query batch and of single calls, and recall."""
    width = max(K, ef)
    labels, _ = index.knn_query(queries, k=width, num_threads=1)

    def batch() -> None:
        index.knn_query(queries, k=width, num_threads=1)

    def singles() -> None:
        for q in queries[:single_n]:
            index.knn_query(q, k=width, num_threads=1)

    bw, bc = best_of(repeats, batch)
    sw, sc = best_of(repeats, singles)
    nq = len(queries)
    return {"n": n, "ef": ef,
            "batch_us_per_query": bw / nq * 1e6, "batch_cpu_us_per_query": bc / nq * 1e6,
            "single_us_per_query": sw / single_n * 1e6,
            "single_cpu_us_per_query": sc / single_n * 1e6,
            "recall_at_10": recall_at_k(labels[:, :K].astype(np.int64), gt, K)}  # fmt: skip


def _index_bytes(index: hnswlib.Index, dim: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "i.bin"
        index.save_index(str(path))
        return float(path.stat().st_size / index.get_current_count())


# ------------------------------------------------------------------------------ 2. shard RPC


def serve(args: argparse.Namespace) -> None:
    """Child: an engine of `args.serve_rows` shared rows behind a ShardServer; prints one JSON
    line (address, in-process search times) and serves until killed."""
    from shardvec.shard.engine import ShardEngine
    from shardvec.shard.server import ShardServer

    base, queries = (normalised(a) for a in load_vectors(args.data, args.serve_rows, 1000))
    with tempfile.TemporaryDirectory(prefix="bench-costs-") as tmp:
        engine = ShardEngine(Path(tmp), IndexSettings(dim=base.shape[1]), build_threads=2)
        ids = [str(i) for i in range(len(base))]
        for seq, s in enumerate(range(0, len(base), 1000), start=1):
            engine.upsert(seq, ids[s : s + 1000], base[s : s + 1000])
        one = best_of(50, lambda: engine.search(queries[:1], K))
        batch = best_of(5, lambda: engine.search(queries, K))
        inproc = {"one_ms": one[0] * 1e3, "one_cpu_ms": one[1] * 1e3,
                  "batch_ms": batch[0] * 1e3, "batch_cpu_ms": batch[1] * 1e3}  # fmt: skip
        server = ShardServer(engine, token=args.token)
        print(json.dumps({"address": server.address, "inproc": inproc}), flush=True)
        time.sleep(3600)


def rpc_costs(args: argparse.Namespace) -> dict[str, Any]:
    import grpc

    from shardvec.contract.limits import TOKEN_HEADER
    from shardvec.coordinator.replicas.shard_client import RemoteShard

    token = secrets.token_hex(8)
    cmd = [sys.executable, "-m", "shardvec.bench", "costs", "--serve", "--token", token,
           "--data", str(args.data),
           "--serve-rows", str(args.serve_rows)]  # fmt: skip
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        hello = json.loads(child.stdout.readline())
        server = psutil.Process(child.pid)
        queries = normalised(load_vectors(args.data, 0, 1000)[1])
        dim = queries.shape[1]

        def request(nq: int) -> Any:
            req = shard_pb2.ShardSearchRequest(k=K, ef=DEFAULT_EF)
            req.queries.dim = dim
            req.queries.packed = encode_packed(queries[:nq])
            return req

        out: dict[str, Any] = {"serve_rows": args.serve_rows, "inproc_ms": hello["inproc"]}

        def measure(label: str, calls: int, run: Callable[[], object]) -> None:
            s0 = sum(server.cpu_times()[:2])
            c0, t0 = time.process_time(), time.perf_counter()
            run()
            wall = time.perf_counter() - t0
            out[label] = {"calls": calls, "wall_ms": wall / calls * 1e3,
                          "client_cpu_ms": (time.process_time() - c0) / calls * 1e3,
                          "server_cpu_ms": (sum(server.cpu_times()[:2]) - s0) / calls * 1e3}
            print(f"  rpc {label:<18} wall {out[label]['wall_ms']:7.3f} ms  client cpu "
                  f"{out[label]['client_cpu_ms']:6.3f} ms  server cpu "
                  f"{out[label]['server_cpu_ms']:6.3f} ms", flush=True)  # fmt: skip

        meta = ((TOKEN_HEADER, token),)
        with grpc.insecure_channel(hello["address"],
                                   options=[("grpc.max_receive_message_length", 1 << 28)]) as ch:
            stub = cast(Any, shard_pb2_grpc).ShardStub(ch)
            one, batch = request(1), request(1000)
            for _ in range(50):
                stub.Search(one, timeout=30, metadata=meta)
            measure("sync_1q", args.rpc_calls,
                    lambda: [stub.Search(one, timeout=30, metadata=meta)
                             for _ in range(args.rpc_calls)])  # fmt: skip
            measure("sync_1000q", 10,
                    lambda: [stub.Search(batch, timeout=60, metadata=meta) for _ in range(10)])

        async def aio(label: str, msg: Any, calls: int, in_flight: int) -> None:
            remote = RemoteShard("bench", hello["address"], token)
            req = msg.SerializeToString()
            for _ in range(20):
                await remote.search(req, 30)

            async def worker(n: int) -> None:
                for _ in range(n):
                    await remote.search(req, 60)

            s0 = sum(server.cpu_times()[:2])
            c0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker(calls // in_flight) for _ in range(in_flight)))
            wall = time.perf_counter() - t0
            done = calls // in_flight * in_flight
            out[label] = {"calls": done, "in_flight": in_flight,
                          "wall_ms": wall / done * 1e3,
                          "client_cpu_ms": (time.process_time() - c0) / done * 1e3,
                          "server_cpu_ms": (sum(server.cpu_times()[:2]) - s0) / done * 1e3}
            print(f"  rpc {label:<18} wall {out[label]['wall_ms']:7.3f} ms  client cpu "
                  f"{out[label]['client_cpu_ms']:6.3f} ms  server cpu "
                  f"{out[label]['server_cpu_ms']:6.3f} ms", flush=True)  # fmt: skip
            await remote.close()

        asyncio.run(aio("aio_1q", request(1), args.rpc_calls, 1))
        asyncio.run(aio("aio_1q_8_in_flight", request(1), args.rpc_calls, 8))
        asyncio.run(aio("aio_1000q", request(1000), 10, 1))
        return out
    finally:
        child.kill()
        child.wait(30)


# --------------------------------------------------------------------- 3. coordinator work


def coordinator_costs(args: argparse.Namespace) -> dict[str, Any]:
    """CPU of the coordinator's own steps per Search, without the RPCs: decode the public
    request, build and serialize one shard request per shard, parse S shard responses,
    merge, build and serialize the public response."""
    rng = np.random.default_rng(0)
    rows = []
    for nq in (1, 32, 1000):
        for shards in SHARD_COUNTS:
            rows.append(_coordinator_row(rng, nq, shards, dim=384))
            r = rows[-1]
            print(f"  coordinator nq={nq:>4} S={shards:>2}: {r['total_us']:9.1f} µs CPU "
                  f"({r['total_us_per_query']:7.1f} µs/q; merge "
                  f"{r['parts_us']['merge_topk']:8.1f} µs)", flush=True)  # fmt: skip
    return {"rows": rows}


def _coordinator_row(rng: np.random.Generator, nq: int, shards: int, dim: int) -> dict[str, Any]:
    ks = per_shard_k(K, shards, False)
    public = pb.SearchRequest(collection="c", k=K)
    public.queries.dim = dim
    public.queries.packed = encode_packed(normalised(rng.standard_normal((nq, dim))))
    public_bytes = public.SerializeToString()
    replies = []
    for s in range(shards):
        resp = shard_pb2.ShardSearchResponse(k=ks)
        resp.ids.extend(str(int(i)) for i in rng.integers(0, 10**7, nq * ks) * 64 + s)
        resp.scores = np.sort(rng.random((nq, ks), dtype=np.float32))[:, ::-1].tobytes()
        replies.append(resp.SerializeToString())
    reps = 20 if nq < 1000 else 5
    parts: dict[str, float] = {}
    state: dict[str, Any] = {}

    def decode_request() -> None:
        msg = pb.SearchRequest.FromString(public_bytes)
        state["q"] = validate_vectors(vectors_from_proto(msg.queries, dim), dim, "cosine")

    def shard_requests() -> None:
        r = shard_pb2.ShardSearchRequest(k=ks, ef=DEFAULT_EF)
        r.queries.dim = dim
        r.queries.packed = encode_packed(state["q"])
        r.SerializeToString()  # once: every shard gets the same bytes

    def parse_responses() -> None:
        ids, scores = [], []
        for b in replies:
            i, s = search_result_from_proto(shard_pb2.ShardSearchResponse.FromString(b), nq)
            ids.append(i)
            scores.append(s)
        state["parts"] = (ids, scores)

    def merge() -> None:
        id_parts, score_parts = state["parts"]
        ids, scores, counts = merge_topk(id_parts, score_parts, K, higher_is_better=True)
        state["hits"] = Hits(ids, scores, counts)

    def encode_response() -> None:
        search_response(state["hits"]).SerializeToString()

    for name, fn in (("decode_request", decode_request), ("shard_requests", shard_requests),
                     ("parse_responses", parse_responses), ("merge_topk", merge),
                     ("encode_response", encode_response)):  # fmt: skip
        parts[name] = best_of(reps, fn)[1] * 1e6
    total = sum(parts.values())
    return {"nq": nq, "shards": shards, "k_shard": ks, "parts_us": parts, "total_us": total,
            "total_us_per_query": total / nq}  # fmt: skip


# ------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="shardvec bench costs", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--data", type=Path, default=default_data(), help="shared data set directory")
    p.add_argument("--sizes", default="10000,25000,50000,100000", help="index sizes")
    p.add_argument("--queries", type=int, default=1000, help="queries per batch timing")
    p.add_argument("--single", type=int, default=200, help="queries for single-call timing")
    p.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    p.add_argument("--build-threads", type=int, default=2, help="hnswlib build threads")
    p.add_argument("--serve-rows", type=int, default=10_000, help="rows of the RPC test shard")
    p.add_argument("--rpc-calls", type=int, default=400, help="single-query RPCs to time")
    p.add_argument("--parts", default="search,rpc,coordinator", help="which parts to run")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/costs.json)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--token", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in str(args.sizes).split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    require_data(args.data)  # else a plain error naming --data (cli.py prints it)
    parts = set(args.parts.split(","))
    # Parts not run this time keep their figures from an earlier run in the same file.
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.update({"loadavg_start": list(os.getloadavg()), "cpus": os.cpu_count(),
                   "hnswlib": getattr(hnswlib, "__version__", "0.8.0")})  # fmt: skip
    if "coordinator" in parts:
        print("coordinator steps (in-process):", flush=True)
        result["coordinator"] = {"loadavg_before": list(os.getloadavg()), **coordinator_costs(args)}
    if "rpc" in parts:
        print("shard RPC round trips:", flush=True)
        result["rpc"] = {"loadavg_before": list(os.getloadavg()), **rpc_costs(args)}
    if "search" in parts:
        print("hnswlib search against index size:", flush=True)
        result["search"] = {"loadavg_before": list(os.getloadavg()), **search_costs(args)}
        for ef, f in result["search"]["fit_batch_cpu_us"].items():
            print(f"  fit ef={ef}: t = {f['a_us']:.1f} + {f['b_us_per_ln_n']:.1f} * ln(n) µs")
    result["loadavg_end"] = list(os.getloadavg())
    write_results("costs", result, args.out)
    return 0

