"""The coordinator's state: the registry and every collection's replica sets.

How a replica's process is created, found and stopped is handed in as a `ControlFactory`
(Ray actors in production, built by coordinator/server.py; in-process engines in tests), so
this module knows neither Ray nor the engine.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from shardvec.contract.errors import AlreadyExists, FailedPrecondition, NotFound
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.validation import validate_collection_name

from coordinator.collection import CollectionRuntime, ShardTimer
from coordinator.paths import collection_dir
from coordinator.registry import Registry
from coordinator.replicas import Replica, ReplicaControl, ReplicaSet, ReplicaState

log = logging.getLogger(__name__)

# (spec, shard, replica, siblings) -> the control of that replica; `siblings()` gives the node
# ids the shard's other replicas run on, so a placement can keep them apart.
ControlFactory = Callable[[CollectionSpec, int, int, Callable[[], set[str]]], ReplicaControl]


class CoordinatorRuntime:
    """Collections by name; creates, restores and drops their replicas."""

    def __init__(self, data_dir: Path, opts: dict[str, Any], controls: ControlFactory) -> None:
        self.data_dir = Path(data_dir)
        self.opts = opts
        self.controls = controls
        self.registry = Registry(self.data_dir)
        self.collections: dict[str, CollectionRuntime] = {}
        self._lock = asyncio.Lock()
        self._health: asyncio.Task[None] | None = None
        self.on_shard_search: ShardTimer | None = None  # given to every collection

    def start_health_checks(self, interval: float = 1.0) -> None:
        """Probe every live replica each `interval` seconds (see ReplicaSet.probe)."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                for col in list(self.collections.values()):
                    for rs in col.shard_sets:
                        try:
                            await rs.probe()
                        except Exception:
                            log.exception("health probe of %s failed", col.spec.name)

        self._health = asyncio.ensure_future(loop())

    async def restore(self) -> None:
        """Bring back every registered collection, attaching to replicas that still run."""
        for spec in self.registry.all():
            try:
                self.collections[spec.name] = await self._open(spec, new=False)
            except Exception:
                log.exception("could not restore collection %s", spec.name)
                raise

    async def _open(self, spec: CollectionSpec, *, new: bool) -> CollectionRuntime:
        sets: list[ReplicaSet] = []
        for s in range(spec.shards):
            replicas: list[Replica] = []

            def siblings(me: int, group: list[Replica] = replicas) -> set[str]:
                return {r.node_id for r in group if r.index != me and r.node_id}

            for index in range(spec.replicas):
                control = self.controls(spec, s, index, partial(siblings, index))
                replicas.append(Replica(s, index, control, spec.name))
            reserved = self.registry.reserved(spec.name, s)

            def reserve(upto: int, _s: int = s) -> int:
                return self.registry.reserve(spec.name, _s, upto)

            sets.append(ReplicaSet(s, replicas, reserved + 1, reserve, reserved))
        all_replicas = [r for rs in sets for r in rs.replicas]
        results = await asyncio.gather(*(r.connect() for r in all_replicas), return_exceptions=True)
        for rs in sets:
            up = [
                r
                for r, res in zip(all_replicas, results, strict=True)
                if r.shard == rs.shard and not isinstance(res, BaseException)
            ]
            top = max((r.applied_seq for r in up), default=0)
            rs.acked_seq = top
            for r in rs.replicas:
                if r in up and r.applied_seq == top:
                    r.set_state(ReplicaState.LIVE)
            for r in rs.replicas:
                if r.state is not ReplicaState.LIVE:
                    r.set_state(ReplicaState.DEAD)
                    rs.start_recovery(r)
        if new:
            for res in results:
                if isinstance(res, BaseException):
                    raise res
        return CollectionRuntime(spec, sets, self.on_shard_search)

    async def create(self, spec: CollectionSpec) -> CollectionRuntime:
        async with self._lock:
            if spec.name in self.collections:
                raise AlreadyExists(f"collection {spec.name!r} already exists")
            leftover = collection_dir(self.data_dir, spec.name)
            if leftover.exists() and any(leftover.iterdir()):
                # A new collection never opens shard directories it did not create.
                raise FailedPrecondition(
                    f"collection {spec.name!r}: {leftover} holds data the registry does not "
                    "know (left by an earlier collection of that name); move it away first"
                )
            self.registry.add(spec)
            try:
                runtime = await self._open(spec, new=True)
            except BaseException:
                self.registry.remove(spec.name)
                await self._destroy(spec)
                raise
            self.collections[spec.name] = runtime
            return runtime

    def get(self, name: str) -> CollectionRuntime:
        validate_collection_name(name)
        runtime = self.collections.get(name)
        if runtime is None:
            raise NotFound(f"collection {name!r} does not exist")
        return runtime

    async def drop(self, name: str) -> None:
        async with self._lock:
            runtime = self.get(name)
            del self.collections[name]
            self.registry.remove(name)
            for rs in runtime.shard_sets:
                await rs.close()
            await self._destroy(runtime.spec)

    async def _destroy(self, spec: CollectionSpec) -> None:
        controls = [
            self.controls(spec, s, r, set)
            for s in range(spec.shards)
            for r in range(spec.replicas)
        ]
        await asyncio.gather(*(c.close() for c in controls), return_exceptions=True)
        shutil.rmtree(collection_dir(self.data_dir, spec.name), ignore_errors=True)

    async def shutdown(self) -> None:
        """Checkpoint and stop every replica; the data directory stays for the next start."""
        if self._health is not None:
            self._health.cancel()
        for runtime in self.collections.values():
            for rs in runtime.shard_sets:
                await rs.close()
            await asyncio.gather(
                *(r.control.close() for rs in runtime.shard_sets for r in rs.replicas),
                return_exceptions=True,
            )
        self.registry.close()
