"""A full disk ("Hardening", issue 13): a write that fails is applied nowhere, replicas stay
live and reads keep working, and every full-disk error is RESOURCE_EXHAUSTED.

The finding this reproduces: with the disk full, upserts the client saw fail left 838 of
their 1,650 rows stored and served (the shards with space committed their part), the failed
write marked the replicas dead so reads failed, and the registry answered INTERNAL "database
or disk is full". Here shard 1's replicas (both of them) live on a small tmpfs and shard 0's on
the ordinary disk; batches spanning both shards are upserted until one fails.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.errors import ResourceExhausted, ShardvecError
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.coordinator.layout import Layout
from shardvec.coordinator.queries.reads import SearchParams
from shardvec.coordinator.registry import Registry
from shardvec.coordinator.replicas.replica_set import ReplicaState
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.shard.store import Store
from tests.inproc import LocalControl, LocalControls
from tests.tmpfs import fill, mounted, resize

DIM = 32
BATCH = 300
SPEC = CollectionSpec("full", IndexSettings(dim=DIM, metric="euclidean"), shards=2, replicas=2)


class SplitDisks(LocalControls):
    """In-process replicas; those of `shard` keep their directories on `disk`."""

    def __init__(self, data_dir: Path, shard: int, disk: Path) -> None:
        super().__init__(data_dir)
        self.shard, self.disk = shard, disk

    def __call__(
        self, spec: CollectionSpec, shard: int, replica: int, siblings: Callable[[], set[str]]
    ) -> LocalControl:
        control = super().__call__(spec, shard, replica, siblings)
        if shard == self.shard and control.engine is None:
            control.directory = self.disk / f"shard-{shard}" / f"replica-{replica}"
        return control


def batch(b: int) -> tuple[list[str], np.ndarray, list[str]]:
    rng = np.random.default_rng(b)
    ids = [f"b{b}-{i}" for i in range(BATCH)]
    return ids, rng.standard_normal((BATCH, DIM)).astype(np.float32), [
        f'{{"b": {b}, "i": {i}}}' for i in range(BATCH)
    ]


def deadline() -> float:
    return time.monotonic() + 30


def test_a_write_that_fails_on_a_full_disk_is_applied_nowhere_and_reads_go_on(
    tmp_path: Path,
) -> None:
    with mounted(tmp_path / "small-disk", 3 << 20) as disk:
        asyncio.run(_fill_and_check(tmp_path / "data", disk))


async def _fill_and_check(data: Path, disk: Path) -> None:
    rt = CoordinatorRuntime(data, SplitDisks(data, 1, disk))
    col = await rt.create(SPEC)
    acked: list[int] = []
    failure: ShardvecError | None = None
    for b in range(200):
        ids, vecs, metas = batch(b)
        assert {Layout.initial(2).shard_of(i) for i in ids} == {0, 1}  # each batch spans both
        try:
            await col.upsert(ids, vecs, metas, deadline())
        except ShardvecError as exc:
            failure, failed = exc, b
            break
        acked.append(b)
    assert failure is not None, "the small disk never filled up"
    assert acked, "the disk was full before the first batch"
    # The client's error says what happened, with the status that means it.
    assert isinstance(failure, ResourceExhausted), repr(failure)
    assert "disk is full" in failure.message and "shard-1" in failure.message

    # Nobody was marked dead for it: every replica serves reads.
    states = [r.state for rs in col.shard_sets for r in rs.replicas]
    assert states == [ReplicaState.LIVE] * 4

    # The failed batch is absent everywhere, on the shard with space too.
    ids, vecs, _ = batch(failed)
    found, _, _ = await col.get(ids, False, False, deadline())
    assert found == [], f"{len(found)} of {BATCH} rows of the failed batch are served"
    assert await col.count(None, deadline()) == BATCH * len(acked)
    for rs in col.shard_sets:  # every replica agrees, row for row
        counts = {await r.remote().count(None, 10) for r in rs.replicas}
        assert len(counts) == 1

    # Every acknowledged batch is whole, and searches still answer.
    for b in acked:
        got, metas, got_vecs = await col.get(batch(b)[0], True, True, deadline())
        assert got == batch(b)[0]
        np.testing.assert_array_equal(got_vecs, batch(b)[1])
    hits = await col.search(batch(acked[-1])[1][:3], SearchParams(k=1), deadline())
    assert list(hits.ids[:, 0]) == batch(acked[-1])[0][:3]

    # A delete across both shards on the full disk is also whole or nothing.
    victims = batch(acked[0])[0][:40]
    try:
        deleted = await col.delete(victims, None, deadline())
        assert deleted == len(victims)
        assert (await col.get(victims, False, False, deadline()))[0] == []
        remaining = BATCH * len(acked) - len(victims)
    except ResourceExhausted:
        assert (await col.get(victims, False, False, deadline()))[0] == victims
        remaining = BATCH * len(acked)
    assert await col.count(None, deadline()) == remaining

    # The operator frees space: the same batch now lands whole.
    resize(disk, 64 << 20)
    await col.upsert(ids, vecs, batch(failed)[2], deadline())
    found, _, _ = await col.get(ids, False, False, deadline())
    assert found == ids
    assert await col.count(None, deadline()) == remaining + BATCH
    await rt.shutdown()


def test_a_store_on_a_full_disk_raises_resource_exhausted(tmp_path: Path) -> None:
    with mounted(tmp_path / "small-disk", 1 << 20) as disk:
        store = Store(disk / "replica", IndexSettings(dim=DIM))
        fill(disk)
        vec = np.ones(DIM, dtype="<f4").tobytes()
        with pytest.raises(ResourceExhausted, match="disk is full") as err:
            for start in range(0, 1_000_000, 500):
                rows = [(f"r{i}", i, 1 + start, vec, None) for i in range(start, start + 500)]
                store.write(1 + start, upserts=rows)
        assert isinstance(err.value.__cause__, sqlite3.OperationalError)
        store.close()


def test_the_registry_on_a_full_disk_raises_resource_exhausted(tmp_path: Path) -> None:
    with mounted(tmp_path / "small-disk", 1 << 20) as disk:
        reg = Registry(disk)
        fill(disk)
        with pytest.raises(ResourceExhausted, match="disk is full"):
            for i in range(100_000):
                reg.add(CollectionSpec(f"c{i}", IndexSettings(dim=DIM, metric="euclidean")))
        reg.close()
