"""Online layout changes on Ray through the public API: 2 -> 4 -> 3 -> 1 shards, then
1 -> 2 -> 1 replicas, while a writer and a reader run. Every
acknowledged row stays, no result holds an id twice, no read fails, and recall at the
defaults stays >= 0.95 after each step."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from shardvec.cluster.client import Client
from shardvec.contract.errors import FailedPrecondition

pytestmark = pytest.mark.ray

DIM = 24


def _recall(col: object, base: dict[str, np.ndarray], queries: np.ndarray) -> float:
    ids = list(base)
    mat = np.stack([base[i] for i in ids])
    mat_n = mat / np.linalg.norm(mat, axis=1, keepdims=True)
    q_n = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(q_n @ mat_n.T), axis=1)[:, :10]
    got, _ = col.search_ids(queries, k=10)  # type: ignore[attr-defined]
    hits = sum(len({ids[j] for j in truth[q]} & set(got[q])) for q in range(len(queries)))
    return hits / (10 * len(queries))


def test_shards_2_4_3_1_and_replicas_1_2_1_under_a_writer_and_a_reader(
    client: Client, name: str
) -> None:
    rng = np.random.default_rng(15)
    col = client.create_collection(name, dim=DIM, shards=2)
    n0 = 3000
    vecs = rng.standard_normal((n0, DIM)).astype(np.float32)
    col.upsert([f"b{i}" for i in range(n0)], vecs)
    base = {f"b{i}": vecs[i] for i in range(n0)}
    lock = threading.Lock()
    queries = rng.standard_normal((40, DIM)).astype(np.float32)
    stop = threading.Event()
    failures: list[BaseException] = []
    reads = 0

    def writer() -> None:
        i = 0
        wrng = np.random.default_rng(16)
        with Client(client.address) as c:
            wcol = c.get_collection(name)
            while not stop.is_set():
                v = wrng.standard_normal((20, DIM)).astype(np.float32)
                ids = [f"w{i + j}" for j in range(20)]
                with lock:  # held by the checks after each step: no write in flight then
                    try:
                        wcol.upsert(ids, v)
                    except BaseException as exc:  # asserted below
                        failures.append(exc)
                        return
                    base.update(zip(ids, v, strict=True))
                i += 20

    def reader() -> None:
        nonlocal reads
        with Client(client.address) as c:
            rcol = c.get_collection(name)
            while not stop.is_set():
                try:
                    rows, _ = rcol.search_ids(queries[:5], k=20, exact=True, timeout=30)
                    for row in rows:
                        assert len(row) == len(set(row)), f"an id came twice: {row}"
                    reads += 1
                except BaseException as exc:  # asserted below
                    failures.append(exc)
                    return

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    try:
        steps = [{"shards": 4}, {"shards": 3}, {"shards": 1}, {"replicas": 2}, {"replicas": 1}]
        for step in steps:
            info = col.scale(**step, timeout=120)
            for key, want in step.items():
                assert info[key] == want and info["change"] is None
            assert len(info["replica_states"]) == info["shards"] * info["replicas"]
            # The writer waits meanwhile, so the search sees exactly the acknowledged rows
            # (a row written after the snapshot would count as a miss).
            with lock:
                snapshot = dict(base)
                wanted = list(snapshot)
                got = [
                    row
                    for at in range(0, len(wanted), 5000)  # a get is limited to 10,000 ids
                    for row in col.get(wanted[at : at + 5000], include_vectors=False)
                ]
                assert len(got) == len(snapshot), "an acknowledged row is missing"
                assert _recall(col, snapshot, queries) >= 0.95
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert reads > 0
    info = client.describe(name)
    assert info["layout_version"] == 4 and info["shards"] == 1
    assert info["count"] == len(base)
    assert col.count() == len(base)


def test_a_second_scale_is_refused_and_bad_counts_are_invalid(client: Client, name: str) -> None:
    col = client.create_collection(name, dim=DIM, shards=1)
    rng = np.random.default_rng(3)
    col.upsert([str(i) for i in range(2000)], rng.standard_normal((2000, DIM)).astype(np.float32))
    col.scale(shards=3, wait=False)
    with pytest.raises(FailedPrecondition):
        col.scale(shards=2, wait=False)
    info = client.wait_layout(name, timeout=120)
    assert info["shards"] == 3 and col.count() == 2000
    from shardvec.contract.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        col.scale(shards=1025, wait=False)
    with pytest.raises(FailedPrecondition):
        col.abort_scale()  # nothing in progress
