"""CoordinatorRuntime and CollectionRuntime over in-process replicas (no Ray): ids land on the
shard coordinator.routing names, an exact search merges into exactly the brute-force top k,
concurrent upserts share group writes and every caller's rows land, the registry's seq
reservations survive a restart, and health checks go on after a probe cancelled under them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.errors import AlreadyExists, NotFound
from shardvec.contract.filters import Cond
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.coordinator.layout import Layout
from shardvec.coordinator.queries.reads import SearchParams
from shardvec.coordinator.registry import Registry
from shardvec.coordinator.replicas.replica_set import ReplicaState
from shardvec.coordinator.runtime import CoordinatorRuntime
from tests.inproc import LocalControls

DIM = 12


def runtime(tmp_path: Path) -> tuple[CoordinatorRuntime, LocalControls]:
    controls = LocalControls(tmp_path)
    return CoordinatorRuntime(tmp_path, controls), controls


def data(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    ids = [f"id-{i}" for i in range(n)]
    metas = [f'{{"i": {i}}}' for i in range(n)]
    return ids, rng.standard_normal((n, DIM)).astype(np.float32), metas


def deadline() -> float:
    return time.monotonic() + 30


def test_each_id_lands_on_the_shard_routing_names(tmp_path: Path) -> None:
    async def main() -> None:
        rt, controls = runtime(tmp_path)
        col = await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), shards=3))
        ids, vecs, metas = data(300)
        await col.upsert(ids, vecs, metas, deadline())
        for s in range(3):
            engine = controls.controls[("c", s, 0)].engine
            assert engine is not None
            held = {r.id for r in engine.get(ids) if r is not None}
            assert held == {i for i in ids if Layout.initial(3).shard_of(i) == s}
        assert await col.count(None, deadline()) == 300
        assert await col.count(Cond("i", "lt", 100), deadline()) == 100
        found, got_metas, got_vecs = await col.get(["id-7", "nope", "id-3"], True, True, deadline())
        assert found == ["id-7", "id-3"] and got_metas == ['{"i":7}', '{"i":3}']
        np.testing.assert_array_equal(got_vecs, vecs[[7, 3]])
        assert await col.delete(["id-7", "id-8", "nope"], None, deadline()) == 2
        assert await col.delete(None, Cond("i", "gte", 290), deadline()) == 10
        assert await col.count(None, deadline()) == 288
        await rt.shutdown()

    asyncio.run(main())


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_search_merges_into_the_brute_force_top_k(tmp_path: Path, metric: str) -> None:
    async def main() -> None:
        rt, _ = runtime(tmp_path)
        col = await rt.create(
            CollectionSpec("c", IndexSettings(dim=DIM, metric=metric), shards=4, replicas=2)
        )
        ids, vecs, metas = data(400, seed=1)
        await col.upsert(ids, vecs, metas, deadline())
        queries = np.random.default_rng(2).standard_normal((16, DIM)).astype(np.float32)
        k = 10
        hits = await col.search(
            queries, SearchParams(k=k, exact=True, include_metadata=True), deadline()
        )
        if metric == "cosine":
            unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
            q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
            order = np.argsort(-(q @ unit.T), axis=1)[:, :k]
        else:
            d = ((queries[:, None, :] - vecs[None, :, :]) ** 2).sum(-1)
            order = np.argsort(d, axis=1)[:, :k]
        expected = np.array(ids, dtype=object)[order]
        assert hits.ids.shape == (16, k)
        assert (hits.ids == expected).all()
        assert (hits.counts == k).all()
        assert hits.metadata is not None
        for row_ids, row_meta in zip(hits.ids.tolist(), hits.metadata.tolist(), strict=True):
            assert row_meta == [f'{{"i":{ids.index(i)}}}' for i in row_ids]
        await rt.shutdown()

    asyncio.run(main())


def test_concurrent_upserts_share_group_writes_and_all_rows_land(tmp_path: Path) -> None:
    async def main() -> None:
        rt, _ = runtime(tmp_path)
        col = await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), replicas=2))
        ids, vecs, _ = data(400, seed=3)
        callers = 40
        await asyncio.gather(
            *(
                col.upsert(ids[j::callers], vecs[j::callers], [], deadline())
                for j in range(callers)
            )
        )
        assert 1 <= col.writes.groups < callers
        assert await col.count(None, deadline()) == 400
        found, _, got = await col.get(ids, False, True, deadline())
        assert found == ids
        np.testing.assert_array_equal(got, vecs)
        rs = col.shard_sets[0]
        assert rs.acked_seq == col.writes.groups
        assert [r.state for r in rs.replicas] == [ReplicaState.LIVE] * 2
        await rt.shutdown()

    asyncio.run(main())


def test_runtime_create_drop_and_restore(tmp_path: Path) -> None:
    async def main() -> None:
        rt, _ = runtime(tmp_path)
        spec = CollectionSpec("c", IndexSettings(dim=DIM), shards=2)
        col = await rt.create(spec)
        with pytest.raises(AlreadyExists):
            await rt.create(spec)
        ids, vecs, metas = data(50)
        await col.upsert(ids, vecs, metas, deadline())
        seqs = [rs.next_seq for rs in col.shard_sets]
        await rt.shutdown()

        rt2, _ = runtime(tmp_path)
        await rt2.restore()
        col2 = rt2.get("c")
        assert await col2.count(None, deadline()) == 50
        for rs, before in zip(col2.shard_sets, seqs, strict=True):
            # a restarted coordinator starts past the reservation, never at a used number
            assert rs.next_seq > before
            assert rs.next_seq == Registry.SEQ_BLOCK + 2
        await rt2.drop("c")
        with pytest.raises(NotFound):
            rt2.get("c")
        assert not (tmp_path / "collections" / "c").exists()
        await rt2.shutdown()

    asyncio.run(main())


def test_registry_add_remove_all_and_reservations_survive_reopen(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    a = CollectionSpec("a", IndexSettings(dim=4), shards=2)
    b = CollectionSpec("b", IndexSettings(dim=8, metric="dot"), replicas=3)
    reg.add(b)
    reg.add(a)
    with pytest.raises(AlreadyExists):
        reg.add(a)
    assert reg.all() == [a, b]
    assert reg.reserved("a", 0) == 0
    got = reg.reserve("a", 1, 5)
    assert got >= 5
    reg.close()

    reg = Registry(tmp_path)
    assert reg.all() == [a, b]
    assert reg.reserved("a", 1) == got and reg.reserved("a", 0) == 0
    reg.remove("a")
    with pytest.raises(NotFound):
        reg.remove("a")
    assert reg.all() == [b]
    assert reg.reserved("a", 1) == 0  # its reservations went with it
    reg.close()


@pytest.mark.parametrize("shards", [1, 2, 4])
@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_search_with_metadata_equals_hits_then_get(
    tmp_path: Path, shards: int, metric: str
) -> None:
    """One round trip returns the hits a search without extras returns, each with the metadata
    and vector that Get returns for it (the old second fan-out), with filters and thresholds."""

    async def main() -> None:
        rt, _ = runtime(tmp_path)
        spec = CollectionSpec("c", IndexSettings(dim=DIM, metric=metric), shards=shards)
        col = await rt.create(spec)
        ids, vecs, metas = data(300, seed=4)
        await col.upsert(ids, vecs, metas, deadline())
        queries = np.random.default_rng(5).standard_normal((6, DIM)).astype(np.float32)
        threshold = (
            {"max_distance": 4.5} if metric == "euclidean" else {"min_score": 0.1}
        )
        for extra in ({}, {"where": Cond("i", "lt", 150)}, threshold, {"exact": True}):
            plain = await col.search(queries, SearchParams(k=8, **extra), deadline())  # type: ignore[arg-type]
            full = await col.search(
                queries,
                SearchParams(k=8, include_metadata=True, include_vectors=True, **extra),  # type: ignore[arg-type]
                deadline(),
            )
            assert (full.ids == plain.ids).all() and (full.counts == plain.counts).all()
            np.testing.assert_array_equal(full.scores, plain.scores)
            assert full.metadata is not None and full.vectors is not None
            for row in range(len(queries)):
                c = int(full.counts[row])
                hit_ids = full.ids[row, :c].tolist()
                found, got_metas, got_vecs = await col.get(hit_ids, True, True, deadline())
                assert found == hit_ids
                assert full.metadata[row, :c].tolist() == got_metas
                np.testing.assert_array_equal(full.vectors[row, :c], got_vecs)
        await rt.shutdown()

    asyncio.run(main())


def test_search_with_vectors_while_rows_are_deleted_and_reinserted(tmp_path: Path) -> None:
    """The race of issue #13 (finding 6): a search with include_vectors, while other callers
    delete and re-insert its hits, answered INTERNAL KeyError when the vectors came from a
    second fan-out after the merge. Each hit now carries its own vector and metadata from the
    shard that found it, so every answer is whole.

    The vector is the row's as upserted, except in the one case shard/row_vectors.py names: a
    search whose reads kept meeting batches in flight (its last try) and a hit the batch being
    applied deletes. The store no longer holds that row, so hnswlib's copy is given, which
    cosine holds normalised: the same row's direction, not another row's vector."""

    async def main() -> None:
        rt, _ = runtime(tmp_path)
        col = await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), shards=2))
        ids, vecs, metas = data(200, seed=9)
        await col.upsert(ids, vecs, metas, deadline())
        stop = asyncio.Event()

        async def churn() -> None:
            rng = np.random.default_rng(10)
            while not stop.is_set():
                pick = sorted({int(i) for i in rng.integers(0, 200, 20)})
                await col.delete([ids[i] for i in pick], None, deadline())
                await col.upsert([ids[i] for i in pick], vecs[pick], [metas[i] for i in pick],
                                 deadline())  # fmt: skip

        writer = asyncio.ensure_future(churn())
        answers = 0
        try:
            for round_ in range(60):
                q = vecs[[round_ % 200, (round_ * 7) % 200]]
                params = SearchParams(k=5, include_vectors=True, include_metadata=True)
                hits = await col.search(q, params, deadline())
                assert hits.vectors is not None and hits.metadata is not None
                for row in range(2):
                    for j in range(int(hits.counts[row])):
                        i = ids.index(hits.ids[row, j])
                        got = hits.vectors[row, j]
                        if not np.array_equal(got, vecs[i]):  # the last try's deleted row
                            unit = vecs[i] / np.linalg.norm(vecs[i])
                            np.testing.assert_allclose(got, unit, rtol=0, atol=1e-6)
                        assert hits.metadata[row, j] == metas[i].replace(" ", "")
                answers += 1
        finally:
            stop.set()
            await writer
        assert answers == 60
        await rt.shutdown()

    asyncio.run(main())


def test_health_checks_go_on_after_a_probe_is_cancelled_under_them(tmp_path: Path) -> None:
    """A probe's call cancelled under it (a collection dropped meanwhile closes its replicas'
    channels, which grpc.aio ends with CancelledError) once ended health checks for the
    coordinator's life; stopping the runtime still stops them."""

    async def main() -> None:
        rt, _ = runtime(tmp_path)
        col = await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), shards=1))
        rs = col.shard_sets[0]
        real = rs.probe
        probes: list[int] = []

        async def probe(timeout: float = 2.0) -> None:
            probes.append(1)
            if len(probes) == 1:
                raise asyncio.CancelledError  # as a gRPC call on a closed channel raises it
            await real(timeout)

        rs.probe = probe  # type: ignore[method-assign]
        rt.start_health_checks(interval=0.01)
        end = time.monotonic() + 30
        while len(probes) < 3 and time.monotonic() < end:
            await asyncio.sleep(0.01)
        assert len(probes) >= 3
        await rt.shutdown()

    asyncio.run(main())
