"""Replica recovery figures: time for a kill -9'd replica to rejoin, and queries failed meanwhile.

Loads the shared data set (or `--n` rows of it) into a collection with R=2, then kills one
replica process twice: once before any checkpoint (it rebuilds its index from SQLite) and
once after a checkpoint (it loads the index and replays the rest). A reader thread searches
all the while and counts failures. Prints a table and writes JSON.

    shardvec bench replicas [--n 100000] [--shards 2] \
        [--out bench/results/replicas.json]
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ray

from shardvec.bench.datasets import default_data, load_vectors
from shardvec.bench.results import print_table, write_results
from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from shardvec.contract.errors import ShardvecError
from shardvec.coordinator.replicas.ray_control import NAMESPACE, actor_name


def kill_and_time(client: Client, name: str, shard: int, replica: int) -> dict[str, Any]:
    victim = next(
        r for r in client.describe(name)["replica_states"]
        if r["shard"] == shard and r["replica"] == replica
    )
    t0 = time.monotonic()
    os.kill(int(victim["pid"]), signal.SIGKILL)
    # the coordinator notices within its 1 s health probe; then the replica must come back
    while client.describe(name)["replica_states"][shard * 2 + replica]["state"] == "live":
        if time.monotonic() - t0 > 30:
            break
        time.sleep(0.05)
    client.wait_live(name, 900, poll=0.1)
    rejoin = time.monotonic() - t0  # from the kill to live again, caught up
    return {"shard": shard, "replica": replica, "rows": victim["count"],
            "rejoin_seconds": round(rejoin, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="shardvec bench replicas", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default bench/results/replicas.json)")
    args = ap.parse_args(argv)

    base, queries = load_vectors(args.data, args.n, 50)
    result: dict[str, Any] = {"n": len(base), "shards": args.shards, "replicas": 2}
    with tempfile.TemporaryDirectory() as tmp, ShardvecCluster(
        {"data_dir": tmp, "port": 0}
    ) as cluster, Client(cluster.address, timeout=120) as client:
        col = client.create_collection("rep", dim=base.shape[1], shards=args.shards, replicas=2)
        t0 = time.monotonic()
        col.upsert([str(i) for i in range(len(base))], base, batch_size=2000)
        result["load_seconds"] = round(time.monotonic() - t0, 1)
        client.wait_live("rep", 900)

        failures: list[str] = []
        reads = 0
        stop = threading.Event()

        def reader() -> None:
            nonlocal reads
            with Client(cluster.address, timeout=30) as c:
                rcol = c.get_collection("rep")
                while not stop.is_set():
                    try:
                        rcol.search_ids(queries[reads % 50], k=10)
                        reads += 1
                    except ShardvecError as exc:
                        failures.append(f"{exc.code.name}: {exc.message}")

        t = threading.Thread(target=reader)
        t.start()
        try:
            result["rejoin_rebuild"] = kill_and_time(client, "rep", 0, 1)
            for s in range(args.shards):
                for r in range(2):
                    ray.get(ray.get_actor(actor_name("rep", s, r), namespace=NAMESPACE)
                            .checkpoint.remote())
            result["rejoin_checkpoint"] = kill_and_time(client, "rep", 1, 0)
        finally:
            stop.set()
            t.join(60)
        result["queries_during_kills"] = reads
        result["queries_failed"] = len(failures)
        result["failures"] = failures[:5]
    print_table([
        ("rows", f"{result['n']} in {args.shards} shards x 2 replicas"),
        ("load through the API (s)", result["load_seconds"]),
        *((f"{key} (s), {result[key]['rows']} rows", result[key]["rejoin_seconds"])
          for key in ("rejoin_rebuild", "rejoin_checkpoint")),
        ("queries during kills / failed", f"{reads} / {len(failures)}"),
    ], ("figure", "value"))  # fmt: skip
    write_results("replicas", result, args.out)
    return 0

