"""In-process replicas for the unit tier: a ReplicaControl over ShardEngines, no Ray.

`write`, `delete` and `update` change an engine's rows the one way the coordinator does: the
request checked where it is built (shardvec.contract.shard_requests), staged, then committed.

`LocalControl` plays a replica's process: it opens a ShardEngine in the replica's directory
on first use (as Ray starts an actor), serves it as a LocalShard, and can be killed (engine
closed, handle answers ReplicaDown, address() fails as while a process restarts) and
restarted (engine reopened from its directory under a new address). `LocalControls` is the
CoordinatorRuntime's control factory: one LocalControl per replica, kept by name.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.contract.codec import dumps_json
from shardvec.contract.errors import InvalidArgument, ReplicaDown
from shardvec.contract.filters import Filter
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.shard_api import ShardLike
from shardvec.contract.shard_requests import RowBatch, check_seq, row_batch
from shardvec.contract.types import ShardUpdate, ShardWrite
from shardvec.coordinator.collection import UpdateOutcome
from shardvec.coordinator.paths import replica_dir
from shardvec.coordinator.registry import CollectionDecisions, Registry
from shardvec.coordinator.replicas.replica_set import Replica, ReplicaSet, ReplicaState
from shardvec.coordinator.writes.atomic import AtomicWriter
from shardvec.shard.engine import ShardEngine
from shardvec.shard.local import LocalShard, catch_up
from shardvec.shard.staging import update_plan


class LocalControl:
    """One replica's "process": an engine in this process, killable and restartable."""

    def __init__(self, data_dir: Path, spec: CollectionSpec, shard: int, replica: int) -> None:
        self.directory = replica_dir(data_dir, spec.name, shard, replica)
        self.settings = spec.index
        self.engine: ShardEngine | None = None
        self.shards: list[LocalShard] = []  # handles given out
        self.generation = 0
        self.down = False
        self.closed = False  # stopped for good (collection dropped or coordinator shut down)
        self.catch_ups = 0
        self.repairs = 0
        self.quarantined: list[Path] = []

    def _engine(self) -> ShardEngine:
        if self.down:
            raise ReplicaDown(f"{self.directory} is down")
        if self.engine is None:
            self.engine = ShardEngine(self.directory, self.settings, search_threads=1)
            self.generation += 1
        return self.engine

    async def address(self) -> str:
        self._engine()
        return f"local:{self.directory}#{self.generation}"

    def client(self, name: str, address: str) -> LocalShard:
        shard = LocalShard(name, self._engine(), address)
        self.shards.append(shard)
        return shard

    async def describe(self) -> dict[str, Any]:
        info = self._engine().info()
        return {
            "address": await self.address(),
            "pid": os.getpid(),
            "node_id": "local",
            "count": info["count"],
            "applied_seq": info["applied_seq"],
        }

    async def catch_up(self, peer: ShardLike) -> int:
        self.catch_ups += 1
        return await catch_up(self._engine(), peer)

    async def repair(self) -> None:
        """Quarantine the directory (moved aside, kept) and start empty, as the actor does."""
        self.kill()
        self.repairs += 1
        target = self.directory.parent / f"quarantine-{self.directory.name}-{self.repairs}"
        os.replace(self.directory, target)
        self.quarantined.append(target)
        self.down = False

    def kill(self) -> None:
        """The process dies: its handles answer ReplicaDown, its engine is gone."""
        self.down = True
        for s in self.shards:
            s.closed = True
        self.shards.clear()
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def restart(self) -> None:
        """The process is back: the next call reopens the engine from its directory."""
        self.down = False

    async def close(self) -> None:
        self.kill()
        self.closed = True


class LocalControls:
    """The control factory of a CoordinatorRuntime over in-process replicas."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.controls: dict[tuple[str, int, int], LocalControl] = {}

    def __call__(
        self, spec: CollectionSpec, shard: int, replica: int, siblings: Callable[[], set[str]]
    ) -> LocalControl:
        key = (spec.name, shard, replica)
        if key not in self.controls or self.controls[key].closed:
            self.controls[key] = LocalControl(self.data_dir, spec, shard, replica)
        return self.controls[key]


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `check` on the event loop until it holds (fails the test after `timeout`)."""
    end = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def rows_held(col: Any) -> int:
    """The rows a collection's shards hold in all (replica 0 of each, its store's count):
    with no layout change running, every row once (no copy left behind)."""
    return sum([int((await rs.replicas[0].control.describe())["count"]) for rs in col.shard_sets])


def rows(
    engine: ShardEngine,
    ids: Sequence[str] = (),
    vectors: np.ndarray | None = None,
    metadatas: Sequence[Mapping[str, Any]] | None = None,
    *,
    documents: Sequence[str | None] | None = None,
    delete_ids: Sequence[str] = (),
    delete_where: Filter | None = None,
) -> RowBatch:
    """A batch for `engine.stage`, built as the coordinator sends one (metadata as JSON
    text, "" for no document) and checked where it is built."""
    write = ShardWrite(
        ids=list(ids),
        vectors=vectors,
        metadata_json=[dumps_json(dict(m)) if m else "" for m in metadatas or ()],
        documents=[d or "" for d in documents or ()],
        delete_ids=list(delete_ids),
        delete_where=delete_where,
    )
    return row_batch(write, engine.settings.dim, engine.settings.metric)


def _commit(engine: ShardEngine, seq: int, batch: RowBatch) -> int:
    """Stage `batch` as batch `seq` and commit it; the rows it changed, or -1 when `seq` was
    applied already (nothing staged)."""
    if check_seq(seq) <= engine.applied_seq:
        return -1
    engine.stage(seq, batch)
    return engine.resolve(seq, True).affected


def write(
    engine: ShardEngine,
    seq: int,
    ids: Sequence[str],
    vectors: np.ndarray,
    metadatas: Sequence[Mapping[str, Any]] | None = None,
    documents: Sequence[str | None] | None = None,
) -> bool:
    """Insert or replace rows as batch `seq`, as the coordinator writes them; False when
    `seq` was applied already."""
    batch = rows(engine, ids, vectors, metadatas, documents=documents)
    return _commit(engine, seq, batch) >= 0


def delete(
    engine: ShardEngine, seq: int, ids: Sequence[str] | None = None, where: Filter | None = None
) -> int:
    """Delete rows by id or by filter (exactly one, as the public Delete takes them) as
    batch `seq`; the live rows deleted (0 when `seq` was applied already)."""
    if (ids is None) == (where is None):
        raise InvalidArgument("delete needs exactly one of ids or where")
    batch = rows(engine, delete_ids=list(ids or ()), delete_where=where)
    return max(_commit(engine, seq, batch), 0)


def update(
    engine: ShardEngine,
    seq: int,
    ids: Sequence[str],
    metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    documents: Sequence[str | None] | None = None,
    *,
    replace_metadata: bool = False,
    upsert_missing: bool = False,
    vectors: np.ndarray | None = None,
) -> UpdateOutcome:
    """Change existing rows' metadata (merged, or replaced) and/or documents as batch `seq`
    (None for a row: that part unchanged), as the coordinator's Update stages it; ids not held
    are reported missing, or with `upsert_missing` inserted from `vectors`."""
    u = ShardUpdate(
        ids=list(ids),
        metadata_json=[dumps_json(dict(m)) if m is not None else "" for m in metadatas or ()],
        documents=[d or "" for d in documents or ()],
        replace_metadata=replace_metadata,
        upsert_missing=upsert_missing,
        vectors=None if vectors is None else np.asarray(vectors, dtype=np.float32),
    )
    engine.stage(check_seq(seq), update_plan(u))
    ack = engine.resolve(seq, True)
    return UpdateOutcome(ack.affected - ack.inserted, list(ack.missing_ids), ack.inserted)


async def replica_set(
    data_dir: Path, spec: CollectionSpec, n: int = 2
) -> tuple[ReplicaSet, list[LocalControl], AtomicWriter]:
    """Shard 0 of `spec` with `n` LIVE in-process replicas, its sequence numbers and commit
    decisions in a registry under `data_dir`, and the atomic writer that writes to it."""
    controls = [LocalControl(data_dir, spec, 0, r) for r in range(n)]
    replicas = [Replica(0, r, c, spec.name) for r, c in enumerate(controls)]
    for r in replicas:
        await r.connect()
        r.set_state(ReplicaState.LIVE)
    decisions = CollectionDecisions(Registry(data_dir), spec.name)
    rs = ReplicaSet(
        0, replicas, reserve=lambda upto: upto + 100,
        committed=lambda seq: decisions.committed(0, seq),
    )
    return rs, controls, AtomicWriter(spec.name, [rs], decisions)


async def wait_change(rt: Any, name: str, timeout: float = 60) -> None:
    """Wait for the layout change running on collection `name` of runtime `rt` to end, and
    check it ended without an error."""
    job = rt.changes[name]
    await asyncio.wait_for(job.done.wait(), timeout)
    assert job.error is None
