"""Scroll without Ray: the store's bucket column and its migration, the engine's pages in
(bucket, id) order, and the public Scroll over in-process replicas (VectorSearchService over a
CoordinatorRuntime of LocalControls): every live row exactly once under concurrent writes,
filters, slices, and the cursor's seal (forged, another collection's, a re-created one's)."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.buckets import NUM_BUCKETS, bucket_of
from shardvec.contract.errors import FailedPrecondition, InvalidArgument, NotFound
from shardvec.contract.filters import Cond
from shardvec.contract.settings import IndexSettings
from shardvec.contract.types import ShardScroll
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.queries.cursor import Cursor, decode_cursor, encode_cursor
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.shard.engine import ShardEngine
from shardvec.shard.store import Store
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb
from tests import inproc
from tests.fakes import FakeContext
from tests.inproc import LocalControls

DIM = 8



ctx = FakeContext()


def lt_filter(field: str, value: int) -> common_pb2.Filter:
    f = common_pb2.Filter()
    f.condition.field, f.condition.value_json = field, str(value)
    f.condition.op = common_pb2.Condition.LT
    return f


def key(rid: str) -> tuple[int, str]:
    return (bucket_of(rid), rid)


# ------------------------------------------------------------------------------ store


def test_a_store_of_the_previous_version_gets_its_buckets_once(tmp_path: Path) -> None:
    settings = IndexSettings(dim=2)
    Store(tmp_path, settings).close()
    path = tmp_path / "store.sqlite"
    # Turn it into a store as the previous version wrote it: no bucket column, no index.
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP INDEX rows_scroll")
    db.execute("ALTER TABLE rows DROP COLUMN bucket")
    vec = np.ones(2, np.float32).tobytes()
    db.executemany(
        "INSERT INTO rows (id, slot, seq, vector, metadata, deleted) VALUES (?, ?, 1, ?, NULL, 0)",
        [(f"r{i}", i, vec) for i in range(50)],
    )
    db.close()
    for _ in range(2):  # the second open finds everything in place and changes nothing
        store = Store(tmp_path, settings)
        rows = store.scroll_rows((0, ""), NUM_BUCKETS, 100, vectors=False, metadata=False)
        assert [(r.bucket, r.id) for r in rows] == sorted(key(f"r{i}") for i in range(50))
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM rows WHERE bucket IS NULL").fetchone() == (0,)
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM rows WHERE deleted = 0 AND (bucket, id) > (?, ?) "
        "AND bucket < ? ORDER BY bucket, id",
        (0, "", 5),
    ).fetchall()
    assert "rows_scroll" in str(plan)
    db.close()


# ----------------------------------------------------------------------------- engine


def _engine(tmp_path: Path, n: int) -> tuple[ShardEngine, list[str], np.ndarray]:
    engine = ShardEngine(tmp_path, IndexSettings(dim=DIM))
    ids = [f"id-{i}" for i in range(n)]
    vecs = np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)
    inproc.write(engine, 1, ids, vecs, [{"i": i, "even": i % 2 == 0} for i in range(n)])
    return engine, ids, vecs


def _walk(engine: ShardEngine, **kw: Any) -> tuple[list[str], int]:
    pos, out, pages = (0, ""), [], 0
    while True:
        page = engine.scroll(ShardScroll(pos[0], pos[1], NUM_BUCKETS, **kw))
        out.extend(page.ids)
        pages += 1
        if page.done:
            return out, pages
        pos = (page.last_bucket, page.last_id)


def test_engine_pages_in_bucket_id_order_with_filter_and_byte_budget(tmp_path: Path) -> None:
    engine, ids, vecs = _engine(tmp_path, 300)
    order = sorted(ids, key=key)
    got, pages = _walk(engine, limit=64)
    assert got == order and pages == 5
    even = [i for i in order if int(i.split("-")[1]) % 2 == 0]
    assert _walk(engine, limit=64, where=Cond("even", "eq", True))[0] == even
    # about 3 rows of vectors a page: the budget is bytes, every page has at least one row
    got, pages = _walk(engine, limit=100, include_vectors=True, max_bytes=3 * 4 * DIM + 30)
    assert got == order and pages >= 90
    page = engine.scroll(
        ShardScroll(0, "", NUM_BUCKETS, 10, include_vectors=True, include_metadata=True)
    )
    assert page.vectors is not None
    for j, rid in enumerate(page.ids):
        i = int(rid.split("-")[1])
        np.testing.assert_array_equal(page.vectors[j], vecs[i])
        assert page.metadata_json[j] == f'{{"i":{i},"even":{"true" if i % 2 == 0 else "false"}}}'
    engine.close()


def test_engine_filtered_page_stops_after_its_scan_budget(tmp_path: Path) -> None:
    from shardvec.shard import scroll_pages as scroll

    engine, ids, _ = _engine(tmp_path, 500)
    old = scroll.SCAN_ROWS, scroll.FILTERED_CHUNK
    scroll.SCAN_ROWS, scroll.FILTERED_CHUNK = 100, 50
    try:
        page = engine.scroll(ShardScroll(0, "", NUM_BUCKETS, 10, where=Cond("i", "eq", -1)))
        assert page.ids == [] and not page.done
        assert (page.last_bucket, page.last_id) >= key(sorted(ids, key=key)[99])
        got, _ = _walk(engine, limit=10, where=Cond("i", "gte", 495))
        assert sorted(got) == sorted(f"id-{i}" for i in range(495, 500))
    finally:
        scroll.SCAN_ROWS, scroll.FILTERED_CHUNK = old
    engine.close()


# ---------------------------------------------------------------------------- service


def service(tmp_path: Path, **settings: Any) -> VectorSearchService:
    rt = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
    s = CoordinatorSettings(data_dir=str(tmp_path), **settings)
    return VectorSearchService(rt, s, MicroBatcher())


async def create(svc: VectorSearchService, name: str, shards: int = 3, replicas: int = 1) -> None:
    req = pb.CreateCollectionRequest(name=name, dimension=DIM, shards=shards, replicas=replicas)
    await svc.CreateCollection(req, ctx)


async def upsert(svc: VectorSearchService, name: str, ids: list[str], seed: int = 0) -> None:
    vecs = np.random.default_rng(seed).standard_normal((len(ids), DIM)).astype("<f4")
    req = pb.UpsertRequest(
        collection=name,
        ids=ids,
        metadata_json=[f'{{"n": {int(i.split("-")[1])}}}' for i in ids],
    )
    req.vectors.dim = DIM
    req.vectors.packed = vecs.tobytes()
    await svc.Upsert(req, ctx)


async def scroll_all(
    svc: VectorSearchService, name: str, limit: int = 0, between: Any = None, **kw: Any
) -> list[str]:
    out: list[str] = []
    cursor = b""
    while True:
        resp = await svc.Scroll(pb.ScrollRequest(collection=name, limit=limit, cursor=cursor,
                                                 **kw), ctx)
        out.extend(resp.ids)
        if not resp.next_cursor:
            return out
        cursor = resp.next_cursor
        if between is not None:
            await between()


def ids_of(n: int, start: int = 0) -> list[str]:
    return [f"id-{i}" for i in range(start, start + n)]


def test_scroll_walks_every_shard_in_order_and_slices_partition_it(tmp_path: Path) -> None:
    async def main() -> None:
        svc = service(tmp_path)
        await create(svc, "c", shards=3, replicas=2)
        rows = ids_of(700)
        await upsert(svc, "c", rows)
        got = await scroll_all(svc, "c", limit=50)
        assert got == sorted(rows, key=key)
        resp = await svc.Scroll(pb.ScrollRequest(collection="c"), ctx)
        assert len(resp.ids) == 256  # 0: the default page
        parts = [await scroll_all(svc, "c", limit=64, slice=i, slices=3) for i in range(3)]
        assert [i for part in parts for i in part] == got and all(parts)
        f = lt_filter("n", 100)
        assert await scroll_all(svc, "c", limit=7, filter=f) == sorted(ids_of(100), key=key)
        include = common_pb2.Include(metadata=True, vectors=True)
        page = await svc.Scroll(pb.ScrollRequest(collection="c", limit=5, include=include), ctx)
        assert page.vectors.dim == DIM and len(page.vectors.packed) == 5 * DIM * 4
        assert [json.loads(m)["n"] for m in page.metadata_json] == [
            int(i.split("-")[1]) for i in page.ids
        ]
        await svc.runtime.shutdown()

    asyncio.run(main())


def test_scroll_under_concurrent_writes_returns_each_live_row_once(tmp_path: Path) -> None:
    """Rows alive for the whole scroll all come, exactly once; rows written or deleted while it
    runs may or may not; nothing comes twice; with a filter the same among matching rows."""

    async def main() -> None:
        svc = service(tmp_path)
        await create(svc, "c", shards=4, replicas=2)
        await upsert(svc, "c", ids_of(1200))
        rng = random.Random(3)
        doomed = set(rng.sample(ids_of(1200), 300))  # deleted during the scroll
        updated = sorted(set(ids_of(1200)) - doomed)[:200]  # re-upserted during the scroll
        new = iter(range(5000, 10_000))
        to_delete = sorted(doomed)

        async def writes() -> None:
            for _ in range(3):
                fresh = [f"id-{next(new)}" for _ in range(20)]
                await upsert(svc, "c", fresh, seed=rng.randrange(99))
            if to_delete:
                batch = [to_delete.pop() for _ in range(min(15, len(to_delete)))]
                await svc.Delete(pb.DeleteRequest(collection="c", ids=batch), ctx)
            if updated:
                await upsert(svc, "c", [updated.pop() for _ in range(min(10, len(updated)))])

        got = await scroll_all(svc, "c", limit=40, between=writes)
        assert len(got) == len(set(got)), "a row came twice"
        stable = set(ids_of(1200)) - doomed
        assert stable <= set(got), f"missing: {sorted(stable - set(got))[:5]}"
        f = lt_filter("n", 600)
        doomed2 = {i for i in ids_of(1200) if i not in doomed}
        to_delete.extend(sorted(doomed2)[:100])
        gone = set(to_delete)
        got = await scroll_all(svc, "c", limit=25, between=writes, filter=f)
        assert len(got) == len(set(got))
        assert {i for i in stable - gone if int(i.split("-")[1]) < 600} <= set(got)
        assert all(int(i.split("-")[1]) < 600 for i in got)
        await svc.runtime.shutdown()

    asyncio.run(main())


def test_cursors_are_sealed_and_bound_to_their_collection(tmp_path: Path) -> None:
    async def main() -> None:
        svc = service(tmp_path, max_scroll_rows=100)
        await create(svc, "a")
        await create(svc, "b")
        await upsert(svc, "a", ids_of(50))
        await upsert(svc, "b", ids_of(50))
        first = await svc.Scroll(pb.ScrollRequest(collection="a", limit=10), ctx)
        cursor = first.next_cursor
        assert cursor

        async def scroll(name: str, cur: bytes, **kw: Any) -> Any:
            return await svc.Scroll(pb.ScrollRequest(collection=name, limit=10, cursor=cur, **kw),
                                    ctx)

        for i in range(len(cursor)):  # any edited byte breaks the seal
            forged = bytearray(cursor)
            forged[i] ^= 0x01
            with pytest.raises(InvalidArgument, match="not a cursor this server issued"):
                await scroll("a", bytes(forged))
        with pytest.raises(InvalidArgument, match="not a scroll cursor"):
            await scroll("a", b"junk")
        # a cursor sealed with another secret (another cluster) is refused too
        other = encode_cursor(decode_cursor(cursor, svc.cursor_secret), b"x" * 32)
        with pytest.raises(InvalidArgument, match="not a cursor this server issued"):
            await scroll("a", other)
        with pytest.raises(InvalidArgument, match="collection 'a', not 'b'"):
            await scroll("b", cursor)
        with pytest.raises(InvalidArgument, match="slice 0 of 0, not 1 of 2"):
            await scroll("a", cursor, slice=1, slices=2)
        with pytest.raises(InvalidArgument, match="limit: 101 rows per page is over the cap 100"):
            await svc.Scroll(pb.ScrollRequest(collection="a", limit=101), ctx)
        with pytest.raises(InvalidArgument, match="slice"):
            await svc.Scroll(pb.ScrollRequest(collection="a", slice=2, slices=2), ctx)
        with pytest.raises(NotFound):
            await svc.Scroll(pb.ScrollRequest(collection="zz"), ctx)
        assert len((await scroll("a", cursor)).ids) == 10  # the real one still works
        await svc.DropCollection(pb.DropCollectionRequest(name="a"), ctx)
        await create(svc, "a")
        await upsert(svc, "a", ids_of(50))
        with pytest.raises(FailedPrecondition, match="dropped and created again"):
            await scroll("a", cursor)
        await svc.runtime.shutdown()
        # the secret is kept in the data directory: a restarted coordinator takes its cursors
        svc2 = service(tmp_path)
        await svc2.runtime.restore()
        fresh = (await svc2.Scroll(pb.ScrollRequest(collection="b", limit=10), ctx)).next_cursor
        assert svc2.cursor_secret == svc.cursor_secret
        assert len((await svc2.Scroll(pb.ScrollRequest(collection="b", cursor=fresh), ctx)).ids)
        await svc2.runtime.shutdown()

    asyncio.run(main())


def test_cursor_round_trip() -> None:
    c = Cursor("col", b"u" * 16, 3, 8, 700, "é-id")
    assert decode_cursor(encode_cursor(c, b"s" * 32), b"s" * 32) == c


def test_a_registry_of_the_previous_version_gets_uids_once(tmp_path: Path) -> None:
    from shardvec.contract.settings import CollectionSpec
    from shardvec.coordinator.paths import registry_path
    from shardvec.coordinator.registry import Registry

    spec = CollectionSpec("old", IndexSettings(dim=4))
    db = sqlite3.connect(registry_path(tmp_path), isolation_level=None)
    db.execute("CREATE TABLE collections (name TEXT PRIMARY KEY, spec TEXT NOT NULL,"
               " state TEXT NOT NULL DEFAULT 'ready')")
    db.execute("INSERT INTO collections (name, spec) VALUES (?, ?)", ("old", spec.to_json()))
    db.close()
    reg = Registry(tmp_path)
    uid = reg.uid("old")
    assert len(uid) == 16
    reg.add(CollectionSpec("new", IndexSettings(dim=4)))
    assert reg.uid("new") != uid
    reg.close()
    reg = Registry(tmp_path)
    assert reg.uid("old") == uid  # kept: opening again changes nothing
    reg.remove("new")
    reg.add(CollectionSpec("new", IndexSettings(dim=4)))
    assert reg.uid("new") != uid
    reg.close()
