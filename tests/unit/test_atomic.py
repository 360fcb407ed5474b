"""Atomic writes across shards without Ray: staging on one replica's engine (durable,
invisible, resumable after a restart), and the resolution of batches a crash left staged, by a
restarted coordinator and by a restarted replica (coordinator/writes/atomic.py)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ReplicaDown,
)
from shardvec.contract.filters import Cond
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.contract.shard_api import ShardLike
from shardvec.contract.store_copy import STORE_FILE
from shardvec.contract.types import Change, ShardUpdate, ShardWrite, WriteAck
from shardvec.coordinator.layout import Layout
from shardvec.coordinator.replicas.replica_set import ReplicaState
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.shard.engine import ShardEngine
from shardvec.shard.staging import UpdatePlan
from tests import inproc
from tests.inproc import LocalControls, wait_for

DIM = 8
SETTINGS = IndexSettings(dim=DIM, metric="euclidean")


def rows(n: int, seed: int = 0, prefix: str = "r") -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"{prefix}{i}" for i in range(n)], rng.standard_normal((n, DIM)).astype(np.float32)


def deadline() -> float:
    return time.monotonic() + 30


def full(eng: ShardEngine, ids: list[str]) -> list[Any]:
    """The rows with vector, metadata and document."""
    return eng.get(ids, include_vectors=True, include_metadata=True, include_documents=True)


# --------------------------------------------------------------------------- one engine


def test_a_staged_batch_is_invisible_until_committed_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    eng = ShardEngine(tmp_path, SETTINGS)
    ids, vecs = rows(20)
    inproc.write(eng, 1, ids[:5], vecs[:5])
    eng.stage(2, inproc.rows(eng, ids, vecs, [{"n": i} for i in range(20)], delete_ids=["r0"]))
    assert eng.count() == 5 and eng.applied_seq == 1
    assert eng.get(ids[5:6])[0] is None
    assert eng.changes_since(1)[0] == []
    assert eng.staged_seqs() == [2]
    eng.close()  # the process stops (or is killed) between the phases

    eng = ShardEngine(tmp_path, SETTINGS)
    assert eng.staged_seqs() == [2] and eng.count() == 5
    ack = eng.resolve(2, True)
    assert ack == WriteAck(True, 20, 2)
    assert eng.count() == 20 and eng.staged_seqs() == []
    rec = eng.get(["r7"])[0]
    assert rec is not None and rec.metadata == {"n": 7}
    np.testing.assert_array_equal(rec.vector, vecs[7])
    assert eng.get(["r0"])[0] is not None  # deleted then upserted: the upsert wins
    assert [c.seq for c in eng.changes_since(1)[0]] == [2] * 20
    # Committing it again (a retried commit) is acknowledged and changes nothing.
    assert eng.resolve(2, True) == WriteAck(False, 0, 2)
    eng.close()
    eng = ShardEngine(tmp_path, SETTINGS)
    assert eng.count() == 20 and eng.staged_seqs() == [] and eng.applied_seq == 2
    eng.close()


def test_an_aborted_batch_is_dropped_durably_and_a_commit_of_it_is_refused(
    tmp_path: Path,
) -> None:
    eng = ShardEngine(tmp_path, SETTINGS)
    ids, vecs = rows(10)
    eng.stage(1, inproc.rows(eng, ids, vecs))
    assert eng.resolve(1, False).applied  # dropped
    assert eng.resolve(1, False) == WriteAck(False, 0, 0)  # dropping twice is harmless
    with pytest.raises(FailedPrecondition, match="not staged"):
        eng.resolve(1, True)
    eng.close()
    eng = ShardEngine(tmp_path, SETTINGS)
    assert eng.staged_seqs() == [] and eng.count() == 0 and eng.applied_seq == 0
    inproc.write(eng, 5, ids[:1], vecs[:1])
    with pytest.raises(FailedPrecondition, match="not above"):
        # a seq at or below the applied one is never staged
        eng.stage(3, inproc.rows(eng, ids, vecs))
    eng.close()


def test_a_delete_by_filter_is_resolved_when_staged_and_applied_at_commit(
    tmp_path: Path,
) -> None:
    eng = ShardEngine(tmp_path, SETTINGS)
    ids, vecs = rows(30)
    inproc.write(eng, 1, ids, vecs, [{"even": i % 2 == 0} for i in range(30)])
    eng.stage(2, inproc.rows(eng, delete_where=Cond("even", "eq", True)))
    assert eng.count() == 30
    assert eng.resolve(2, True).affected == 15
    assert eng.count() == 15 and eng.count(Cond("even", "eq", True)) == 0
    eng.close()


def test_a_lower_staged_batch_goes_with_the_next_stage_and_catch_up_drops_what_it_covers(
    tmp_path: Path,
) -> None:
    eng = ShardEngine(tmp_path, SETTINGS)
    ids, vecs = rows(6)
    eng.stage(1, inproc.rows(eng, ids[:2], vecs[:2]))  # its abort never arrived
    eng.stage(2, inproc.rows(eng, ids[2:4], vecs[2:4]))
    assert eng.staged_seqs() == [2]
    # A peer's rows up to seq 3 arrive by catch-up: what was staged at or below is obsolete.
    eng.apply_changes([Change("p", 3, vecs[5], {}, False)], 3)
    assert eng.staged_seqs() == [] and eng.applied_seq == 3
    eng.close()
    eng = ShardEngine(tmp_path, SETTINGS)
    assert eng.staged_seqs() == [] and eng.count() == 1
    eng.close()


def test_documents_and_an_update_are_staged_durably_and_applied_at_commit(
    tmp_path: Path,
) -> None:
    eng = ShardEngine(tmp_path, SETTINGS)
    ids, vecs = rows(4)
    docs = ["d0", "", "d2", "d3"]
    eng.stage(1, inproc.rows(eng, ids, vecs, [{"n": i} for i in range(4)], documents=docs))
    eng.close()
    eng = ShardEngine(tmp_path, SETTINGS)  # staged documents survive a restart
    assert eng.resolve(1, True).affected == 4
    got = full(eng, ["r0", "r1"])
    assert [r.document if r else "?" for r in got] == ["d0", None]
    plan = UpdatePlan(
        ids=["r0", "r1", "nope"],
        metadatas=[{"tag": "u"}, None, {"x": 1}],
        documents=[None, "new d1", None],
    )
    eng.stage(2, plan)
    assert eng.get(["r0"])[0].metadata == {"n": 0}  # type: ignore[union-attr]
    eng.close()
    eng = ShardEngine(tmp_path, SETTINGS)  # a staged update survives a restart
    assert eng.staged_seqs() == [2]
    ack = eng.resolve(2, True)
    assert ack.missing_ids == ("nope",) and ack.inserted == 0 and ack.affected == 2
    r0, r1 = full(eng, ["r0", "r1"])
    assert r0 is not None and r0.metadata == {"n": 0, "tag": "u"} and r0.document == "d0"
    assert r1 is not None and r1.metadata == {"n": 1} and r1.document == "new d1"
    np.testing.assert_array_equal(r0.vector, vecs[0])  # vector kept
    assert {c.id: c.seq for c in eng.changes_since(1)[0]} == {"r0": 2, "r1": 2}
    assert eng.verify_rows("", 100)[0] == 4  # the checksums cover the new state
    eng.close()


def test_an_update_past_the_metadata_limit_refuses_its_stage_and_upsert_missing_inserts(
    tmp_path: Path,
) -> None:
    eng = ShardEngine(tmp_path, SETTINGS)
    ids, vecs = rows(3)
    inproc.write(eng, 1, ids, vecs, [{"big": "x" * 60}] * 3)
    too_big = UpdatePlan(
        ids=["r0", "r2"],
        metadatas=[{"a": 1}, {"more": "y" * 60}],
        documents=[None, None],
        max_metadata_bytes=100,
    )
    with pytest.raises(InvalidArgument, match=r"metadata_json\[1\] \('r2' merged\)"):
        eng.stage(2, too_big)
    assert eng.staged_seqs() == []  # nothing staged: the batch aborts everywhere
    ins = UpdatePlan(
        ids=["r0", "new"],
        metadatas=[{"a": 1}, {"b": 2}],
        documents=[None, "doc"],
        upsert_missing=True,
        vectors=vecs[:2],
    )
    eng.stage(2, ins)
    ack = eng.resolve(2, True)
    assert ack.inserted == 1 and ack.missing_ids == () and ack.affected == 2
    new = full(eng, ["new"])[0]
    assert new is not None and new.metadata == {"b": 2} and new.document == "doc"
    eng.close()


def test_a_staged_table_of_the_previous_version_gains_its_columns(tmp_path: Path) -> None:
    eng = ShardEngine(tmp_path, SETTINGS)
    ids, vecs = rows(2)
    eng.stage(1, inproc.rows(eng, ids, vecs))
    eng.close()
    with sqlite3.connect(tmp_path / STORE_FILE) as db:  # as the atomic branch's stores were
        db.execute("ALTER TABLE staged DROP COLUMN documents")
        db.execute("ALTER TABLE staged DROP COLUMN updates")
    for _ in range(2):  # idempotent
        eng = ShardEngine(tmp_path, SETTINGS)
        assert eng.staged_seqs() == [1]
        eng.close()
    eng = ShardEngine(tmp_path, SETTINGS)
    assert eng.resolve(1, True).affected == 2 and eng.count() == 2
    eng.close()


# ------------------------------------------------------------- resolution by the cluster

SPEC = CollectionSpec("c", SETTINGS, shards=2, replicas=2)


async def _stage_everywhere(rt: CoordinatorRuntime, ids: list[str], vecs: np.ndarray) -> dict[
    int, int
]:
    """Phase one of a batch as the coordinator runs it, then nothing: the coordinator dies."""
    col = rt.get("c")
    seqs: dict[int, int] = {}
    for s, part in enumerate(Layout.initial(2).partition(ids)):
        rs = col.shard_sets[s]
        seqs[s] = rs.take_seq()
        write = ShardWrite(ids=[ids[i] for i in part.tolist()], vectors=vecs[part])
        for r in rs.replicas:
            await r.remote().stage(seqs[s], write, 10)
    return seqs


@pytest.mark.parametrize("decided", [False, True])
def test_a_restarted_coordinator_commits_a_staged_batch_iff_it_was_decided(
    tmp_path: Path, decided: bool
) -> None:
    async def main() -> None:
        controls = LocalControls(tmp_path)
        rt = CoordinatorRuntime(tmp_path, controls)
        col = await rt.create(SPEC)
        ids, vecs = rows(100)
        await col.upsert(ids[:50], vecs[:50], [], deadline())  # acknowledged before
        seqs = await _stage_everywhere(rt, ids[50:], vecs[50:])
        if decided:  # killed between the decision and the commits
            rt.registry.decide("c", seqs)
        # kill -9 of the coordinator: nothing more is sent; the replicas keep running.
        rt.registry.close()

        rt2 = CoordinatorRuntime(tmp_path, controls)
        await rt2.restore()
        col2 = rt2.get("c")
        want = 100 if decided else 50
        assert await col2.count(None, deadline()) == want
        for rs in col2.shard_sets:
            assert [r.state for r in rs.replicas] == [ReplicaState.LIVE] * 2
            for r in rs.replicas:
                info = await r.remote().info(10)
                assert info.staged == ()
                assert info.applied_seq == (seqs[rs.shard] if decided else seqs[rs.shard] - 1)
        found, _, _ = await col2.get(ids, False, False, deadline())
        assert found == (ids if decided else ids[:50])
        # Writes go on above the batch's seqs, and both replicas stay level.
        more, mvecs = rows(10, seed=5, prefix="m")
        await col2.upsert(more, mvecs, [], deadline())
        assert await col2.count(None, deadline()) == want + 10
        await rt2.shutdown()

    asyncio.run(main())


class DiesBeforeCommit:
    """A replica whose process dies after it staged a batch: stage goes through, the commit
    never arrives (ReplicaDown)."""

    def __init__(self, inner: ShardLike, on_die: Any) -> None:
        self.inner, self.on_die = inner, on_die
        self.name, self.address = inner.name, inner.address

    async def stage(self, seq: int, write: ShardWrite, timeout: float) -> int:
        return await self.inner.stage(seq, write, timeout)

    async def resolve(self, seq: int, commit: bool, timeout: float, owned: Any = None) -> WriteAck:
        self.on_die()
        raise ReplicaDown(f"{self.name}: process gone")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_replica_that_died_before_its_commit_commits_the_batch_when_it_is_back(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        controls = LocalControls(tmp_path)
        rt = CoordinatorRuntime(tmp_path, controls)
        col = await rt.create(CollectionSpec("c", SETTINGS, shards=1, replicas=2))
        rs = col.shard_sets[0]
        ids, vecs = rows(40)
        await col.upsert(ids[:20], vecs[:20], [], deadline())
        victim = rs.replicas[1]
        control = controls.controls[("c", 0, 1)]
        assert victim.client is not None
        victim.client = DiesBeforeCommit(victim.client, control.kill)  # type: ignore[assignment]
        await col.upsert(ids[20:], vecs[20:], [], deadline())  # acknowledged: one committed
        assert victim.state is not ReplicaState.LIVE
        assert control.engine is None  # its process is gone, the batch staged on its disk
        control.restart()
        await wait_for(lambda: victim.state is ReplicaState.LIVE, timeout=20)
        assert control.engine is not None
        assert control.engine.count() == 40 and control.engine.staged_seqs() == []
        assert control.engine.applied_seq == rs.acked_seq
        await rt.shutdown()

    asyncio.run(main())


class SlowStage:
    """A healthy replica whose stage takes `delay` seconds (a busy disk)."""

    def __init__(self, inner: ShardLike, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.name, self.address = inner.name, inner.address

    async def stage(self, seq: int, write: ShardWrite, timeout: float) -> int:
        await asyncio.sleep(self.delay)
        return await self.inner.stage(seq, write, timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_write_not_decided_by_its_callers_deadline_is_aborted_everywhere(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        rt = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        col = await rt.create(SPEC)
        slow = col.shard_sets[1].replicas[0]
        assert slow.client is not None
        slow.client = SlowStage(slow.client, 0.5)  # type: ignore[assignment]
        ids, vecs = rows(50)
        with pytest.raises(DeadlineExceeded, match="nothing was applied"):
            await col.upsert(ids, vecs, [], deadline(), decide_by=time.monotonic() + 0.2)
        assert await col.count(None, deadline()) == 0
        for rs in col.shard_sets:
            assert [r.state for r in rs.replicas] == [ReplicaState.LIVE] * 2
            for r in rs.replicas:
                assert (await r.remote().info(10)).staged == ()
        await col.upsert(ids, vecs, [], deadline(), decide_by=time.monotonic() + 10)
        assert await col.count(None, deadline()) == 50
        await rt.shutdown()

    asyncio.run(main())


def test_an_update_is_one_atomic_batch_across_shards(tmp_path: Path) -> None:
    """A shard refusing its part of an Update (a merge past the limit, found at stage) aborts
    it on every shard; a good one lands on every shard and reports the missing ids."""

    async def main() -> None:
        rt = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        col = await rt.create(SPEC)
        ids, vecs = rows(40)
        await col.upsert(ids, vecs, ['{"big": "' + "x" * 60 + '"}'] * 40, deadline())
        parts = Layout.initial(2).partition(ids)
        on0, on1 = ids[int(parts[0][0])], ids[int(parts[1][0])]
        bad = ShardUpdate(
            ids=[on0, on1],
            metadata_json=['{"a": 1}', '{"more": "' + "y" * 60 + '"}'],
            documents=["doc0", ""],
            max_metadata_bytes=100,
        )
        with pytest.raises(InvalidArgument, match=f"{on1!r} merged"):
            await col.update(bad, deadline())
        found, metas, _ = await col.get([on0, on1], True, False, deadline())
        # nothing applied on either shard
        assert found == [on0, on1] and all('"a"' not in m for m in metas)
        for rs in col.shard_sets:
            for r in rs.replicas:
                assert (await r.remote().info(10)).staged == ()
        good = ShardUpdate(
            ids=[on0, on1, "gone"], metadata_json=['{"a": 1}', "", ""],
            documents=["doc0", "doc1", "doc2"],
        )
        got = await col.update(good, deadline())
        assert got.updated == 2 and got.missing_ids == ["gone"] and got.inserted == 0
        _, metas, _, docs, _ = await col.get_documents([on0, on1], True, False, deadline(), True)
        assert json.loads(metas[0])["a"] == 1 and "a" not in json.loads(metas[1])
        assert docs == ["doc0", "doc1"]
        for rs in col.shard_sets:  # every replica of both shards holds it
            for r in rs.replicas:
                assert r.applied_seq == rs.acked_seq and r.state is ReplicaState.LIVE
        await rt.shutdown()

    asyncio.run(main())
