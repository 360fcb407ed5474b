"""In-process replicas for the unit tier: a ReplicaControl over ShardEngines, no Ray.

`LocalControl` plays a replica's process: it opens a ShardEngine in the replica's directory
on first use (as Ray starts an actor), serves it as a LocalShard, and can be killed (engine
closed, handle answers ReplicaDown, address() fails as while a process restarts) and
restarted (engine reopened from its directory under a new address). `LocalControls` is the
CoordinatorRuntime's control factory: one LocalControl per replica, kept by name.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shardvec.contract.errors import ReplicaDown
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.shard_api import ShardLike
from shardvec.coordinator.paths import replica_dir
from shardvec.shard.engine import ShardEngine
from shardvec.shard.local import LocalShard, catch_up


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
