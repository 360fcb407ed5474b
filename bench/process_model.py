"""What the process model costs a single query: one process per shard (the cluster's) against
one process per node serving all its local shards, measured in one run on the same shards.

The query path's targets ask for an unloaded single query in 2 ms and for 32 concurrent
clients at half the batch QPS; the cluster misses both on 2 cores. This benchmark separates
what the process model costs from what the cluster's own code costs, with the cluster's
real parts and none of Ray: the same S `ShardEngine`s (the shared set, hash-partitioned by
the initial `Layout`) are searched

1. in-process: one Python process, each shard searched and the lists merged (`merge_topk`),
   no RPC at all: the floor;
2. per shard: S child processes, each a real `shard.server.ShardServer`, behind a front
   process that serves the public `VectorSearch/Search` RPC with the coordinator's
   `MicroBatcher`, `RemoteShard` fan-out, `merge_topk` and `search_response`: the cluster's
   model, less its registry, replica sets, interceptors and metrics;
3. per node: one child process holding all S engines behind one Shard `Search` RPC that
   searches each of them (the same `ShardService.Search`) and returns their lists together,
   behind the same front, which now makes one RPC per batch instead of S.

For 2 and 3 it runs `bench.query_cluster.concurrent_singles` (the public Search RPC, one
query per call) with 1 and 32 clients and reports QPS, p50/p99 and CPU per query of every
process (the load-generating clients included). Usage:

    shardvec bench process-model [--rows 100000] [--shards 4] [--seconds 10]
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
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import Dataset, default_data, load_dataset, require_data
from shardvec.bench.measure import recall_at_k
from shardvec.bench.query_cluster import CpuMeter, concurrent_singles
from shardvec.bench.results import write_results
from shardvec.contract.convert_public import search_response
from shardvec.contract.settings import IndexSettings
from shardvec.contract.types import Hits
from shardvec.coordinator.layout import Layout
from shardvec.coordinator.queries.merge import merge_topk
from shardvec.coordinator.queries.reads import per_shard_ef, per_shard_k

K = 10
COLLECTION = "bench"


def shard_params(shards: int) -> tuple[int, int]:
    """The coordinator's per-shard k' and ef for a default (unfiltered, HNSW) search."""
    k_shard = per_shard_k(K, shards, False, False)
    return k_shard, per_shard_ef(None, IndexSettings(dim=1).ef, k_shard, shards, False, False)


def build_shards(args: argparse.Namespace, data: Dataset, work: Path) -> list[Path]:
    """Hash-partition the data set's rows over S engines on disk, checkpointed."""
    from shardvec.shard.engine import ShardEngine

    ids = [str(i) for i in range(len(data.base))]
    dirs = []
    for s, rows in enumerate(Layout.initial(args.shards).partition(ids)):
        path = work / f"shard-{s}"
        engine = ShardEngine(path, IndexSettings(dim=data.dim), build_threads=2)
        for seq, start in enumerate(range(0, len(rows), 5000), start=1):
            part = rows[start : start + 5000]
            engine.upsert(seq, [ids[i] for i in part], data.base[part])
        engine.checkpoint()
        engine.close()
        dirs.append(path)
        print(f"  shard {s}: {len(rows):,} rows", flush=True)
    return dirs


def in_process(data: Dataset, dirs: list[Path]) -> dict[str, Any]:
    """Every shard searched one after another in this process and merged, query by query."""
    from shardvec.shard.engine import ShardEngine

    k_shard, ef = shard_params(len(dirs))
    engines = [ShardEngine(d, IndexSettings(dim=data.dim)) for d in dirs]
    try:
        lat, found = [], []
        for q in data.queries:
            t0 = time.perf_counter()
            parts = [e.search(q[None, :], k_shard, ef=ef) for e in engines]
            ids, _, _ = merge_topk([p.ids for p in parts], [p.scores for p in parts], K,
                                   higher_is_better=True)  # fmt: skip
            lat.append(time.perf_counter() - t0)
            found.append([int(i) for i in ids[0] if i])
    finally:
        for e in engines:
            e.close()
    ms = np.array(lat) * 1e3
    rows = np.array([r + [-1] * (K - len(r)) for r in found])
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "qps": len(ms) / (ms.sum() / 1e3), "recall": recall_at_k(rows, data.gt, K)}  # fmt: skip


# ----------------------------------------------------------------------- child processes


def serve_shard(args: argparse.Namespace) -> None:
    """Child: one engine behind the real ShardServer."""
    from shardvec.shard.engine import ShardEngine
    from shardvec.shard.server import ShardServer

    engine = ShardEngine(Path(args.dirs[0]), IndexSettings(dim=args.dim))
    server = ShardServer(engine, token=args.token)
    print(json.dumps({"address": server.address}), flush=True)
    time.sleep(24 * 3600)


def serve_node(args: argparse.Namespace) -> None:
    """Child: every engine in one process behind one Shard Search RPC: the queries are
    decoded once, each engine searches them as a replica would, and the lists go back side
    by side in one response (k = S x k')."""
    from concurrent import futures

    import grpc

    from shardvec.contract.convert import vectors_from_proto
    from shardvec.contract.convert_shard import search_result_to_proto
    from shardvec.contract.limits import INTERNAL_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
    from shardvec.shard.engine import ShardEngine
    from shardvec.shard.server_guard import TokenGuard
    from shardvec.v1 import shard_pb2_grpc

    engines = [ShardEngine(Path(d), IndexSettings(dim=args.dim)) for d in args.dirs]

    class NodeService(shard_pb2_grpc.ShardServicer):
        def Search(self, request: Any, context: Any) -> Any:
            queries = vectors_from_proto(request.queries, args.dim, field="queries")
            parts = [e.search(queries, int(request.k), ef=int(request.ef) or None)
                     for e in engines]  # fmt: skip
            return search_result_to_proto(
                np.concatenate([r.ids for r in parts], axis=1),
                np.concatenate([r.scores for r in parts], axis=1),
            )

    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]  # fmt: skip
    server = grpc.server(futures.ThreadPoolExecutor(8), interceptors=[TokenGuard(args.token)],
                         options=options)  # fmt: skip
    shard_pb2_grpc.add_ShardServicer_to_server(NodeService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"address": f"127.0.0.1:{port}"}), flush=True)
    time.sleep(24 * 3600)


def serve_front(args: argparse.Namespace) -> None:
    """Child: the public Search RPC in front of the shard addresses, with the coordinator's
    micro-batcher, fan-out client and merge (no registry, replica sets or interceptors)."""
    import grpc

    from shardvec.contract.convert import vectors_from_proto
    from shardvec.contract.convert_shard import search_result_from_proto
    from shardvec.coordinator.queries.batching import MicroBatcher
    from shardvec.coordinator.replicas.shard_client import RemoteShard
    from shardvec.v1 import shard_pb2
    from shardvec.v1 import vector_search_pb2 as pb

    k_shard, ef = shard_params(args.shards)

    async def main() -> None:
        remotes = [RemoteShard(f"s{i}", a, args.token) for i, a in enumerate(args.addresses)]
        batcher = MicroBatcher(window_s=0.1, max_batch=256)

        async def run(batch: np.ndarray, deadline: float) -> Hits:
            req = shard_pb2.ShardSearchRequest(k=k_shard, ef=ef)
            req.queries.dim = batch.shape[1]
            req.queries.packed = batch.tobytes()
            payload = req.SerializeToString()
            resps = await asyncio.gather(*(r.search(payload, 10.0) for r in remotes))
            ids, scores = zip(*(search_result_from_proto(r, len(batch)) for r in resps),
                              strict=True)  # fmt: skip
            top_ids, top_scores, counts = merge_topk(ids, scores, K, higher_is_better=True)
            return Hits(top_ids, top_scores, counts)

        async def search(request: Any, context: Any) -> Any:
            queries = vectors_from_proto(request.queries, args.dim, field="queries")
            hits = await batcher.submit("q", queries, time.monotonic() + 10, run, Hits.rows)
            return search_response(hits)

        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "shardvec.v1.VectorSearch",
            {"Search": grpc.unary_unary_rpc_method_handler(
                search, request_deserializer=pb.SearchRequest.FromString,
                response_serializer=pb.SearchResponse.SerializeToString)},
        )  # fmt: skip
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(json.dumps({"address": f"127.0.0.1:{port}"}), flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def spawn(args: argparse.Namespace, role: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "shardvec.bench", "process-model", "--role", role,
           "--token", args.token, "--dim",
           str(args.dim), "--shards", str(args.shards), *extra]  # fmt: skip
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        child.wait(10)
        raise RuntimeError(f"{role} child exited with {child.returncode}")
    return child, json.loads(line)["address"]


def served(
    args: argparse.Namespace, data: Dataset, dirs: list[Path], per_node: bool
) -> dict[str, Any]:
    """Start the shard (or node) children and a front, then load the front."""
    children: list[subprocess.Popen[str]] = []
    try:
        if per_node:
            child, addr = spawn(args, "node", "--dirs", ",".join(map(str, dirs)))
            children.append(child)
            backends = {"node": child.pid}
            addresses = [addr]
        else:
            backends, addresses = {}, []
            for s, d in enumerate(dirs):
                child, addr = spawn(args, "shard", "--dirs", str(d))
                children.append(child)
                backends[f"shard{s}"] = child.pid
                addresses.append(addr)
        front, front_addr = spawn(args, "front", "--addresses", ",".join(addresses))
        children.append(front)
        pids = {"client": os.getpid(), "front": front.pid, **backends}
        out: dict[str, Any] = {}
        for clients in args.clients:
            meter = CpuMeter(pids)
            res = asyncio.run(concurrent_singles(
                front_addr, COLLECTION, data.queries, data.gt, k=K, clients=clients,
                seconds=args.seconds, meter=meter))  # fmt: skip
            cpu = meter.per_query_ms(res.calls)
            out[str(clients)] = {**res.to_dict(), "cpu_ms_per_query": cpu,
                                 "cpu_ms_per_query_total": sum(cpu.values())}  # fmt: skip
            print(f"  {'per node' if per_node else 'per shard'}, {clients:>2} clients: "
                  f"{res.qps:7.0f} QPS  p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms  "
                  f"CPU {sum(cpu.values()):.2f} ms/query  recall {res.recall:.3f}  "
                  f"errors {res.errors}", flush=True)  # fmt: skip
        return out
    finally:
        for child in children:
            child.kill()
            child.wait(30)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="shardvec bench process-model",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("--data", type=Path, default=default_data(), help="shared data set directory")
    p.add_argument("--rows", type=int, default=100_000, help="rows of the shared set to index")
    p.add_argument("--queries", type=int, default=1000, help="query vectors to cycle through")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--clients", default="1,32", help="concurrent single-query clients")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each load run")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/process_model.json)")
    p.add_argument("--role", default="", help=argparse.SUPPRESS)
    p.add_argument("--token", default="", help=argparse.SUPPRESS)
    p.add_argument("--dim", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--dirs", default="", help=argparse.SUPPRESS)
    p.add_argument("--addresses", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.clients = [int(c) for c in str(args.clients).split(",")]
    args.dirs = [d for d in args.dirs.split(",") if d]
    args.addresses = [a for a in args.addresses.split(",") if a]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    roles = {"shard": serve_shard, "node": serve_node, "front": serve_front}
    if args.role:
        roles[args.role](args)
        return 0
    require_data(args.data)  # else a plain error naming --data (cli.py prints it)
    args.token = secrets.token_hex(8)
    result: dict[str, Any] = {"rows": args.rows, "shards": args.shards, "cpus": os.cpu_count(),
                              "per_shard_k_ef": shard_params(args.shards),
                              "loadavg_start": list(os.getloadavg())}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-process-model-") as tmp:
        print(f"building {args.shards} shards of {args.rows:,} rows:", flush=True)
        data = load_dataset(args.data, args.rows, args.queries, K)
        args.dim = data.dim
        dirs = build_shards(args, data, Path(tmp))
        result["in_process"] = in_process(data, dirs)
        r = result["in_process"]
        print(f"  in-process, 1 client: {r['qps']:7.0f} QPS  p50 {r['p50_ms']:6.2f} ms  "
              f"p99 {r['p99_ms']:6.2f} ms  recall {r['recall']:.3f}", flush=True)  # fmt: skip
        result["per_shard"] = served(args, data, dirs, per_node=False)
        result["per_node"] = served(args, data, dirs, per_node=True)
    result["loadavg_end"] = list(os.getloadavg())
    write_results("process_model", result, args.out)
    return 0

