"""Replica counts change online on local Ray: 1 -> 2 -> 1 replicas while a writer and a
reader run; every acknowledged row is there, no read failed, the replicas end level and
recall is unchanged (coordinator/changes/replicas.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from tests.waits import until

pytestmark = pytest.mark.ray

DIM = 16
ROWS = 12_000


def recall(col: object, queries: np.ndarray, truth: list[list[str]]) -> float:
    got, _ = col.search_ids(queries, k=10)  # type: ignore[attr-defined]
    return float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)]))


def test_one_to_two_to_one_replicas_under_load(
    cluster: ShardvecCluster, client: Client, name: str
) -> None:
    rng = np.random.default_rng(15)
    col = client.create_collection(name, dim=DIM, shards=2, replicas=1)
    # batches of 1500 rows (~750 per shard): a new replica copies more than one page of
    # changes, and the pages end part way (a page holds whole seqs only)
    base = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    col.upsert([str(i) for i in range(ROWS)], base, batch_size=1500)
    queries = rng.standard_normal((50, DIM)).astype(np.float32)
    truth, _ = col.search_ids(queries, k=10, exact=True)
    recall_before = recall(col, queries, truth)

    failures: list[BaseException] = []
    reads = 0
    acked: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        with Client(client.address) as c:
            rcol = c.get_collection(name)
            while not stop.is_set():
                try:
                    rcol.search_ids(queries[:5], k=10, timeout=20)
                    reads += 1
                except BaseException as exc:  # recorded and asserted below
                    failures.append(exc)

    def writer() -> None:
        wrng = np.random.default_rng(16)
        with Client(client.address) as c:
            wcol = c.get_collection(name)
            i = 0
            while not stop.is_set():
                ids = [f"w{i}-{j}" for j in range(5)]
                try:
                    wcol.upsert(ids, wrng.standard_normal((5, DIM)).astype(np.float32) + 100)
                except BaseException as exc:  # recorded and asserted below
                    failures.append(exc)
                else:
                    acked.extend(ids)
                i += 1

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    try:
        until(lambda: reads >= 2 and len(acked) >= 20, what="reads and writes under way")
        start = time.monotonic()
        cluster.scale_replicas(name, 2, timeout=120)
        up_s = time.monotonic() - start
        during = client.wait_live(name)  # counts are fresh: status asks each replica
        assert sorted((r["shard"], r["replica"]) for r in during) == [(0, 0), (0, 1), (1, 0),
                                                                       (1, 1)]
        assert sum(int(r["count"]) for r in during if r["replica"] == 1) >= ROWS
        writes_at_two = len(acked)
        until(lambda: len(acked) >= writes_at_two + 20, what="writes to two replicas")
        cluster.scale_replicas(name, 1, timeout=120)
        writes_at_one = len(acked)
        until(lambda: len(acked) >= writes_at_one + 20, what="writes after the lowering")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not failures, failures[:3]
    assert reads > 5 and len(acked) > writes_at_two > 0
    assert up_s < 60
    final = client.wait_live(name, level=True)
    assert sorted(r["shard"] for r in final) == [0, 1]
    assert col.count() == ROWS + len(acked)
    got = col.get(acked, include_vectors=False)
    assert {r.id for r in got} == set(acked)
    # the written rows sit far from the queries: the top 10 are those of before
    assert recall(col, queries, truth) >= recall_before - 0.02
    client.drop_collection(name)
