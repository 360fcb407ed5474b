"""RestoreSnapshot cut short ("Hardening": failed or interrupted operations leave partial data),
without Ray: the real create_archive / restore_archive over in-process replicas.

A restore is held part way (its upserts stop after a few batches). While it is held the new
collection is not served: every data call through the real service is FAILED_PRECONDITION
and ListCollections leaves it out. A copy of the data directory taken at that moment is what
a kill -9 leaves on disk; a new CoordinatorRuntime on that copy drops the half-restored
collection (replicas, directory, registry row) and removes the snapshot work directory, and
the untouched source collection is back whole. Released, the held restore completes and the
collection is served with every row.
"""

from __future__ import annotations

import asyncio
import contextvars
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import FailedPrecondition, NotFound
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.collection import CollectionRuntime
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.paths import collection_dir, snapshot_dir
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.registry import Registry
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.coordinator.snapshots import create_archive, restore_archive
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext
from tests.inproc import LocalControls
from tests.requests import restore_chunks

DIM = 8
ROWS = 400
BATCH = 50
HOLD_AFTER = 3  # batches in before the restore is held



def _deadline() -> float:
    return time.monotonic() + 60


async def _source(rt: CoordinatorRuntime) -> bytes:
    col = await rt.create(CollectionSpec("src", IndexSettings(dim=DIM), shards=2))
    rng = np.random.default_rng(0)
    ids = [f"id-{i}" for i in range(ROWS)]
    await col.upsert(
        ids, rng.standard_normal((ROWS, DIM)).astype(np.float32),
        [f'{{"i": {i}}}' for i in range(ROWS)], _deadline(),
    )
    return b"".join([c async for c in create_archive(rt, "src", _deadline())])


IN_RESTORE: contextvars.ContextVar[bool] = contextvars.ContextVar("in_restore", default=False)


def _start_restore(rt: CoordinatorRuntime, archive: bytes) -> asyncio.Future[CollectionRuntime]:
    """restore_archive of `archive` as 'dst' (3 shards) in a task of its own."""
    token = IN_RESTORE.set(True)  # the task copies the context: only its upserts are held
    try:
        return asyncio.ensure_future(
            restore_archive(rt, restore_chunks(archive, "dst", shards=3), _deadline(), BATCH)
        )
    finally:
        IN_RESTORE.reset(token)


def _hold_upserts(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """The restore's upserts stop after HOLD_AFTER batches until `release` is set; `held` is
    set when the restore is waiting there."""
    held, release = asyncio.Event(), asyncio.Event()
    real = CollectionRuntime.upsert
    batches = 0

    async def upsert(self: CollectionRuntime, *args: Any, **kw: Any) -> Any:
        nonlocal batches
        if IN_RESTORE.get():
            if batches == HOLD_AFTER:
                held.set()
                await release.wait()
            batches += 1
        return await real(self, *args, **kw)

    monkeypatch.setattr(CollectionRuntime, "upsert", upsert)
    return held, release


def _workdirs(data_dir: Path) -> list[str]:
    root = snapshot_dir(data_dir)
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_a_restore_cut_short_by_a_crash_is_dropped_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, crash = tmp_path / "data", tmp_path / "crash-image"

    async def main() -> None:
        controls = LocalControls(data)
        rt = CoordinatorRuntime(data, controls)
        archive = await _source(rt)
        held, release = _hold_upserts(monkeypatch)
        restore = _start_restore(rt, archive)
        await asyncio.wait_for(held.wait(), 30)
        partial = sum(
            c.engine.info()["count"]
            for (name, _, _), c in controls.controls.items()
            if name == "dst" and c.engine is not None
        )
        assert 0 < partial < ROWS  # part way: some batches are in, not all
        assert [w for w in _workdirs(data) if w.startswith("restore-")]
        # What a kill -9 now leaves on disk: every write so far is committed (synchronous=FULL).
        shutil.copytree(data, crash)
        (snapshot_dir(crash) / "create-abc123").mkdir()  # a CreateSnapshot cut short too
        (snapshot_dir(crash) / "create-abc123" / "snapshot.tar").write_bytes(b"x" * 100)
        release.set()
        await restore
        await rt.shutdown()

    asyncio.run(main())

    async def restart() -> None:
        rt2 = CoordinatorRuntime(crash, LocalControls(crash))
        await rt2.restore()
        with pytest.raises(NotFound):
            rt2.get("dst")
        assert "dst" not in rt2.collections
        assert [s.name for s in Registry(crash).all()] == ["src"]
        assert not collection_dir(crash, "dst").exists()
        assert _workdirs(crash) == []  # the restore-* and create-* work directories are gone
        assert await rt2.get("src").count(None, _deadline()) == ROWS
        await rt2.shutdown()

    asyncio.run(restart())


async def _refused(svc: VectorSearchService, rt: CoordinatorRuntime) -> None:
    """Every data call on the held restore's collection is refused; nothing changes."""
    ctx = FakeContext()
    q = pb.SearchRequest(collection="dst", k=3)
    q.queries.dim, q.queries.packed = DIM, np.ones((1, DIM), dtype="<f4").tobytes()
    up = pb.UpsertRequest(collection="dst", ids=["x"])
    up.vectors.dim, up.vectors.packed = DIM, np.ones((1, DIM), dtype="<f4").tobytes()
    calls = {
        "Upsert": lambda: svc.Upsert(up, ctx),
        "Delete": lambda: svc.Delete(pb.DeleteRequest(collection="dst", ids=["id-1"]), ctx),
        "Get": lambda: svc.Get(pb.GetRequest(collection="dst", ids=["id-1"]), ctx),
        "Count": lambda: svc.Count(pb.CountRequest(collection="dst"), ctx),
        "Search": lambda: svc.Search(q, ctx),
        "Describe": lambda: svc.DescribeCollection(
            pb.DescribeCollectionRequest(name="dst"), ctx
        ),
        "Drop": lambda: svc.DropCollection(pb.DropCollectionRequest(name="dst"), ctx),
    }
    for what, call in calls.items():
        with pytest.raises(FailedPrecondition, match="'dst' is being restored"):
            await call()
        assert "dst" in rt.collections, what
    with pytest.raises(FailedPrecondition, match="'dst' is being restored"):
        [c async for c in create_archive(rt, "dst", _deadline())]
    listed = await svc.ListCollections(pb.ListCollectionsRequest(), ctx)
    assert [c.name for c in listed.collections] == ["src"]
    states = dict((s.name, st) for s, st in Registry(rt.data_dir).all_with_state())
    assert states == {"dst": "restoring", "src": "ready"}  # durable before any row is in


def test_a_restoring_collection_is_not_served_until_every_row_is_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        rt = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        archive = await _source(rt)
        svc = VectorSearchService(
            rt, CoordinatorSettings(data_dir=str(tmp_path)), MicroBatcher()
        )
        ctx = FakeContext()
        held, release = _hold_upserts(monkeypatch)
        restore = _start_restore(rt, archive)
        await asyncio.wait_for(held.wait(), 30)
        try:
            await _refused(svc, rt)
        finally:
            release.set()
        col = await asyncio.wait_for(restore, 60)
        assert col is rt.get("dst")
        assert await col.count(None, _deadline()) == ROWS
        count = await svc.Count(pb.CountRequest(collection="dst"), ctx)
        assert count.count == ROWS
        listed = await svc.ListCollections(pb.ListCollectionsRequest(), ctx)
        assert [c.name for c in listed.collections] == ["dst", "src"]
        assert dict((s.name, st) for s, st in Registry(tmp_path).all_with_state()) == {
            "dst": "ready", "src": "ready"
        }
        assert _workdirs(tmp_path) == []
        await rt.shutdown()

        rt2 = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        await rt2.restore()
        assert await rt2.get("dst").count(None, _deadline()) == ROWS
        await rt2.shutdown()

    asyncio.run(main())


def test_a_registry_written_before_states_reads_as_ready(tmp_path: Path) -> None:
    import sqlite3

    from shardvec.coordinator.paths import registry_path

    registry_path(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(registry_path(tmp_path))
    spec = CollectionSpec("old", IndexSettings(dim=4))
    db.execute("CREATE TABLE collections (name TEXT PRIMARY KEY, spec TEXT NOT NULL)")
    db.execute("INSERT INTO collections VALUES (?, ?)", ("old", spec.to_json()))
    db.commit()
    db.close()
    reg = Registry(tmp_path)
    assert [(s.name, st) for s, st in reg.all_with_state()] == [("old", "ready")]
    reg.close()
