"""Replica changes over in-process replicas (no Ray; coordinator/changes/replicas.py): the
count goes 1 -> 2 -> 1 while writes and reads run, lists are persisted before they take
effect, and a restart after an interrupted change keeps the old or the new set, nothing lost."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.coordinator.paths import replica_dir
from shardvec.coordinator.registry import Registry, ReplicaList
from shardvec.coordinator.replicas.replica_set import ReplicaState
from shardvec.coordinator.runtime import CoordinatorRuntime
from tests.inproc import LocalControls, wait_for

DIM = 8


def runtime(tmp_path: Path) -> CoordinatorRuntime:
    return CoordinatorRuntime(tmp_path, LocalControls(tmp_path))


def rows(n: int, prefix: str, seed: int) -> tuple[list[str], np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    return [f"{prefix}{i}" for i in range(n)], rng.standard_normal((n, DIM)).astype(
        np.float32
    ), ["{}"] * n


def deadline() -> float:
    return time.monotonic() + 30


async def level(rt: CoordinatorRuntime, name: str) -> dict[int, set[int]]:
    """Each shard's replica counts as their engines hold them (one value: level)."""
    out: dict[int, set[int]] = {}
    for rs in rt.get(name).shard_sets:
        for r in rs.replicas:
            out.setdefault(rs.shard, set()).add(int((await r.control.describe())["count"]))
    return out


def test_scale_up_and_down_while_writing(tmp_path: Path) -> None:
    async def main() -> None:
        rt = runtime(tmp_path)
        col = await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), shards=2))
        ids, vecs, metas = rows(400, "a", 0)
        await col.upsert(ids, vecs, metas, deadline())
        acked: list[str] = []
        failed: list[BaseException] = []
        stop = asyncio.Event()

        async def writer() -> None:
            i = 0
            while not stop.is_set():
                wid, wv, wm = rows(3, f"w{i}-", i)
                await col.upsert(wid, wv, wm, deadline())
                acked.extend(wid)
                i += 1
                await asyncio.sleep(0)

        async def reader() -> None:
            while not stop.is_set():
                try:
                    await col.count(None, deadline())
                except BaseException as exc:  # asserted below
                    failed.append(exc)
                await asyncio.sleep(0)

        tasks = [asyncio.ensure_future(writer()), asyncio.ensure_future(reader())]
        seen: list[str] = []
        await rt.scale_replicas("c", 2, progress=lambda e: seen.append(e["phase"]))
        assert rt.get("c").spec.replicas == 2
        for rs in col.shard_sets:
            assert [r.index for r in rs.replicas] == [0, 1]
            assert all(r.state is ReplicaState.LIVE for r in rs.replicas)
        assert seen.count("added") == 2
        lists = rt.registry.replica_sets("c")
        assert {s: rl.replicas for s, rl in lists.items()} == {0: [0, 1], 1: [0, 1]}
        assert rt.registry.all()[0].replicas == 2

        await rt.scale_replicas("c", 1)
        stop.set()
        await asyncio.gather(*tasks)
        assert not failed, failed[:3]
        assert all(len(rs.replicas) == 1 for rs in col.shard_sets)
        kept = {rs.shard: rs.replicas[0].index for rs in col.shard_sets}
        for shard, index in kept.items():
            gone = 1 - index
            assert not replica_dir(tmp_path, "c", shard, gone).exists()
        assert await col.count(None, deadline()) == 400 + len(acked)
        found, _, _ = await col.get(acked, False, False, deadline())
        assert found == acked
        with pytest.raises(InvalidArgument):
            await rt.scale_replicas("c", 0)
        await rt.shutdown()

        # a restart reads the lists back: the same replicas, every row
        rt2 = runtime(tmp_path)
        await rt2.restore()
        col2 = rt2.get("c")
        assert {rs.shard: [r.index for r in rs.replicas] for rs in col2.shard_sets} == {
            s: [i] for s, i in kept.items()
        }
        assert await col2.count(None, deadline()) == 400 + len(acked)
        await rt2.shutdown()

    asyncio.run(main())


def test_restart_after_interrupted_changes_keeps_old_or_new_set(tmp_path: Path) -> None:
    async def main() -> None:
        rt = runtime(tmp_path)
        spec = CollectionSpec("c", IndexSettings(dim=DIM), shards=2, replicas=2)
        col = await rt.create(spec)
        ids, vecs, metas = rows(300, "a", 1)
        await col.upsert(ids, vecs, metas, deadline())
        await rt.shutdown()

        # killed after recording shard 0 without replica 1, before removing it; and after
        # recording the target 1 before shard 1 changed at all
        reg = Registry(tmp_path)
        reg.set_replica_sets(
            "c", {0: ReplicaList([0]), 1: ReplicaList([0, 1])},
            dataclasses.replace(spec, replicas=1),
        )
        reg.close()
        assert replica_dir(tmp_path, "c", 0, 1).exists()
        rt = runtime(tmp_path)
        await rt.restore()
        col = rt.get("c")
        assert not replica_dir(tmp_path, "c", 0, 1).exists()  # stray removed
        # shard 1 converges to one replica in the background
        await wait_for(lambda: all(len(rs.replicas) == 1 for rs in col.shard_sets))
        await wait_for(lambda: not rt.replica_changes.resuming())
        assert await col.count(None, deadline()) == 300
        assert {s: rl.replicas for s, rl in rt.registry.replica_sets("c").items()} == {
            s: [rs.replicas[0].index] for s, rs in enumerate(col.shard_sets)
        }
        await rt.shutdown()

        # killed after recording a new replica 1 of each shard before it caught up
        reg = Registry(tmp_path)
        lists = reg.replica_sets("c")
        spec2 = dataclasses.replace(spec, replicas=2)
        grown = {s: ReplicaList(sorted({*rl.replicas, 0, 1})) for s, rl in lists.items()}
        reg.set_replica_sets("c", grown, spec2)
        reg.close()
        rt = runtime(tmp_path)
        await rt.restore()
        col = rt.get("c")
        await wait_for(
            lambda: all(
                len(rs.replicas) == 2 and all(r.state is ReplicaState.LIVE for r in rs.replicas)
                for rs in col.shard_sets
            )
        )
        levels = await level(rt, "c")
        assert all(len(v) == 1 for v in levels.values()), levels
        assert sum(next(iter(v)) for v in levels.values()) == 300
        await rt.drop("c")
        assert not (tmp_path / "collections" / "c").exists()
        await rt.shutdown()

    asyncio.run(main())


def test_rebalance_without_nodes_moves_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        rt = runtime(tmp_path)
        await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), shards=2))
        assert await rt.rebalance() == []
        assert await rt.rebalance("c") == []
        await rt.shutdown()

    asyncio.run(main())


def test_a_new_replica_copies_every_row_over_many_pages(tmp_path: Path) -> None:
    """A peer's page ends on a whole seq and so may hold fewer rows than asked without being
    the last: a new replica must keep asking until it has the peer's applied_seq."""

    async def main() -> None:
        rt = runtime(tmp_path)
        col = await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), shards=1))
        for b in range(8):  # 8 seqs of 1500 rows: a page of 5000 holds 3 whole seqs
            ids, vecs, metas = rows(1500, f"b{b}-", b)
            await col.upsert(ids, vecs, metas, deadline())
        await rt.scale_replicas("c", 2)
        counts = await level(rt, "c")
        assert counts == {0: {12000}}, counts
        seqs = {r.applied_seq for r in col.shard_sets[0].replicas}
        assert len(seqs) == 1
        await rt.shutdown()

    asyncio.run(main())


def test_registry_replica_lists_round_trip_and_migrate(tmp_path: Path) -> None:
    import sqlite3

    from shardvec.contract.errors import NotFound

    # a registry of the previous version: no replica_sets table
    reg = Registry(tmp_path)
    spec = CollectionSpec("c", IndexSettings(dim=DIM), shards=2, replicas=2)
    reg.add(spec)
    reg.close()
    db = sqlite3.connect(tmp_path / "registry.sqlite")
    db.execute("DROP TABLE replica_sets")
    db.commit()
    db.close()
    for _ in range(2):  # opening twice migrates once
        reg = Registry(tmp_path)
        assert reg.replica_sets("c") == {}  # absent: 0..spec.replicas-1, as before
        reg.close()
    reg = Registry(tmp_path)
    reg.set_replica_sets("c", {1: ReplicaList([0, 2], {2: "node-b"})},
                         dataclasses.replace(spec, replicas=3))
    assert reg.replica_sets("c") == {1: ReplicaList([0, 2], {2: "node-b"})}
    assert reg.all()[0].replicas == 3
    with pytest.raises(NotFound):
        reg.set_replica_sets("gone", {0: ReplicaList([0])})
    reg.remove("c")
    assert reg.replica_sets("c") == {}
    reg.close()
