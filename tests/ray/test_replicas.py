"""Replicas keep reads and writes up while a replica process is killed with kill -9."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import psutil
import pytest

from shardvec.cluster.client import Client
from tests.waits import until

pytestmark = pytest.mark.ray


def test_kill_replica_during_reads_and_writes(client: Client, name: str) -> None:
    rng = np.random.default_rng(5)
    col = client.create_collection(name, dim=16, shards=2, replicas=2)
    base = rng.standard_normal((2000, 16)).astype(np.float32)
    col.upsert([str(i) for i in range(2000)], base, [{"i": i} for i in range(2000)])
    queries = rng.standard_normal((5, 16)).astype(np.float32)

    failures: list[BaseException] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        with Client(client.address) as c:
            rcol = c.get_collection(name)
            while not stop.is_set():
                try:
                    rcol.search_ids(queries, k=10, exact=True, timeout=10)
                    reads += 1
                except BaseException as exc:  # recorded and asserted below
                    failures.append(exc)

    acked: list[int] = []

    def writer() -> None:
        with Client(client.address) as c:
            wcol = c.get_collection(name)
            i = 0
            while not stop.is_set() and i < 10_000:
                wcol.upsert([f"w{i}"], rng.standard_normal((1, 16)).astype(np.float32),
                            [{"w": i}])
                acked.append(i)
                i += 1

    reps = client.wait_live(name)
    victims = [r for r in reps if r["shard"] == 0][:1] + [r for r in reps if r["shard"] == 1][1:]
    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    try:
        until(lambda: reads >= 3 and len(acked) >= 20, what="reads and writes under way")
        for v in victims:
            os.kill(int(v["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
            at_kill = len(acked)
            until(lambda n=at_kill: len(acked) >= n + 20, what="writes after the kill")
        reps_after = client.wait_live(name)
        at_live = len(acked)
        until(lambda: len(acked) >= at_live + 20, what="writes once every replica is back")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not failures, failures[:3]
    assert reads > 10
    new_pids = {(r["shard"], r["replica"]): r["pid"] for r in reps_after}
    for v in victims:
        assert new_pids[(v["shard"], v["replica"])] != v["pid"]  # restarted process
    # every acknowledged write is there, on every replica
    assert col.count() == 2000 + len(acked)
    got = {r.id for r in col.get([f"w{i}" for i in acked], include_vectors=False)}
    assert got == {f"w{i}" for i in acked}
    final = client.wait_live(name)
    by_shard: dict[int, set[tuple[int, int]]] = {}
    for r in final:
        by_shard.setdefault(int(r["shard"]), set()).add(  # type: ignore[call-overload]
            (int(r["count"]), int(r["applied_seq"]))  # type: ignore[call-overload]
        )
    assert all(len(v) == 1 for v in by_shard.values()), final  # replicas level
    # every replica process, the restarted ones too, started with one BLAS thread (a worker
    # started beforehand would hold OpenBLAS's thread per CPU, spinning beside the others)
    for r in final:
        env = psutil.Process(int(r["pid"])).environ()  # type: ignore[call-overload]
        assert env.get("OPENBLAS_NUM_THREADS") == env.get("OMP_NUM_THREADS") == "1", r
    client.drop_collection(name)
