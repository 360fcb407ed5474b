"""The coordinator's state: the registry and every collection's replica sets.

How a replica's process is created, found and stopped is handed in as a `ControlFactory`
(Ray actors in production, built by coordinator/server.py; in-process engines in tests), so
this module knows neither Ray nor the engine.

A collection RestoreSnapshot is filling is registered 'restoring' (coordinator/registry.py)
and is not served until every row is in: `get` answers FAILED_PRECONDITION ("collection X is
being restored") for it, so no data call (Upsert, Delete, Get, Count, Search, Describe,
Drop, CreateSnapshot) sees it half filled, and ListCollections leaves it out. At start-up a
collection still 'restoring' (its coordinator died during the restore, so the client's call
failed) is dropped, and the snapshot work directories a crash left are removed.

Aliases (coordinator/aliases.py) are resolved by `get`, the one lookup of a collection by name;
what follows a lookup uses the collection's own name (`spec.name`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

from shardvec.contract.errors import AlreadyExists, FailedPrecondition, NotFound
from shardvec.contract.limits import MAX_REPLICAS
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.validation import validate_collection_name
from shardvec.coordinator import phases
from shardvec.coordinator.aliases import (
    AliasMap,
    check_alias_name,
    check_new_alias,
    check_not_alias,
    check_same_shape,
    check_target,
    check_unaliased,
)
from shardvec.coordinator.changes import plan, replica_job, resharding
from shardvec.coordinator.changes.replica_job import ReplicaJob
from shardvec.coordinator.changes.replicas import AutoRebalancer, Progress, ReplicaChanges, prefer
from shardvec.coordinator.changes.resharding import Resharder
from shardvec.coordinator.collection import CollectionRuntime
from shardvec.coordinator.layout import Layout, next_epoch
from shardvec.coordinator.paths import collection_dir, snapshot_dir
from shardvec.coordinator.queries.reads import ShardTimer
from shardvec.coordinator.queries.recall_tuner import RecallTuner, TunerSettings
from shardvec.coordinator.registry import READY, RESTORING, CollectionDecisions, Registry
from shardvec.coordinator.replicas.replica_set import (
    ControlFactory,
    Replica,
    ReplicaSet,
    ReplicaState,
)
from shardvec.coordinator.replicas.shard_client import being_cancelled

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """Where changes of what a reader must see go: the fronts' LayoutPublisher
    (coordinator/fronts/publish.py), set by the coordinator when it runs query fronts."""

    async def layout_changed(self, name: str) -> None: ...

    def schedule(self, name: str) -> None: ...

    async def settled(self) -> None: ...

    async def aliases_changed(self, aliases: AliasMap) -> None: ...


class CoordinatorRuntime:
    """Collections by name; creates, restores and drops their replicas."""

    def __init__(self, data_dir: Path, controls: ControlFactory) -> None:
        self.data_dir = Path(data_dir)
        self.controls = controls
        self.registry = Registry(self.data_dir)
        self.collections: dict[str, CollectionRuntime] = {}
        self.restoring: set[str] = set()  # in `collections`, but not served (see `get`)
        self._uids: dict[str, bytes] = {}  # registry uids, cached
        self.aliases = AliasMap()  # as the registry holds them (restore, then each change)
        self._lock = asyncio.Lock()
        self._health: asyncio.Task[None] | None = None
        self.on_shard_search: ShardTimer | None = None  # given to every collection
        self.changes: dict[str, Resharder | ReplicaJob] = {}  # layout changes, by collection
        # The query fronts' layout pushes (coordinator/fronts/publish.py); None: no fronts.
        self.publisher: Publisher | None = None
        # Replica changes and rebalancing (coordinator/changes/replicas.py): their locks,
        # one per collection (a layout change takes it too), and background resumptions.
        self.replica_changes = ReplicaChanges(
            self.data_dir, self.registry, self.collections, self.restoring, self.controls,
            self.get,
        )
        self._rebalancer: asyncio.Task[None] | None = None
        self._tuning: asyncio.Task[None] | None = None  # the recall tuner, once started

    async def layout_changed(self, name: str) -> None:
        """THE hook for every change of what a reader of collection `name` must see (created,
        dropped, restored, a replica's state, a layout switch): sets a new layout epoch on
        the collection's LIVE replicas, then pushes the layout to the query fronts. Returns
        once both are done; without fronts it does nothing."""
        if self.publisher is not None:
            await self.publisher.layout_changed(name)

    def layout_changed_soon(self, name: str) -> None:
        """`layout_changed(name)` from synchronous code (a replica's state change)."""
        if self.publisher is not None:
            self.publisher.schedule(name)

    async def layouts_settled(self) -> None:
        """Wait until every layout change scheduled so far is fenced and pushed."""
        if self.publisher is not None:
            await self.publisher.settled()

    def start_recall_tuner(self, settings: TunerSettings | None = None) -> RecallTuner:
        """Tune every served collection's search breadth to its target recall, in the
        background (coordinator/queries/recall_tuner.py); new breadths reach the fronts
        through `layout_changed`."""
        tuner = RecallTuner(
            lambda: {n: c for n, c in self.collections.items() if n not in self.restoring},
            self.layout_changed,
            settings,
            self.registry.set_tuned,
        )
        self._tuning = asyncio.ensure_future(tuner.run())
        return tuner

    def start_health_checks(self, interval: float = 1.0) -> None:
        """Probe every live replica each `interval` seconds (see ReplicaSet.probe)."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                for col in list(self.collections.values()):
                    for rs in col.shard_sets:
                        try:
                            await rs.probe()
                        except asyncio.CancelledError:
                            if being_cancelled():  # the coordinator stops
                                raise
                            # cancelled under the probe (a collection dropped meanwhile):
                            # not the end of health checks
                            log.info("health probe of %s cancelled", col.spec.name)
                        except Exception:
                            log.exception("health probe of %s failed", col.spec.name)

        self._health = asyncio.ensure_future(loop())

    async def restore(self) -> None:
        """Bring back every registered collection, attaching to replicas that still run.

        A collection left 'restoring' by a crash is dropped (replicas, directory, registry
        row), and snapshot work directories left by a crash are removed."""
        self._remove_snapshot_workdirs()
        self.aliases = AliasMap(self.registry.aliases(), next_epoch(0))
        for spec, state in self.registry.all_with_state():
            if state == RESTORING:
                log.warning(
                    "dropping collection %s: a snapshot restore into it was interrupted "
                    "(the coordinator stopped before every row was copied)",
                    spec.name,
                    extra={"collection": spec.name},
                )
                await self._destroy(spec)
                self.registry.remove(spec.name)
                continue
            try:
                self.collections[spec.name] = await self._open(spec, new=False)
            except Exception:
                log.exception("could not restore collection %s", spec.name)
                raise
            await self.layout_changed(spec.name)
        self.replica_changes.resume()

    def _remove_snapshot_workdirs(self) -> None:
        """Remove the create-* / restore-* work directories coordinator/snapshots.py makes;
        at start-up no snapshot call is running, so any there were left by a crash."""
        root = snapshot_dir(self.data_dir)
        if not root.is_dir():
            return
        for entry in root.iterdir():
            if entry.name.startswith(("create-", "restore-")) and not entry.is_symlink():
                log.warning("removing snapshot work directory %s left by a crash", entry)
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def replica_set(
        self, spec: CollectionSpec, shard: int, decisions: CollectionDecisions,
        indices: list[int] | None = None,
    ) -> ReplicaSet:
        """The replica set of shard `shard` of `spec` (replicas `indices`, by default
        0..spec.replicas-1), its seq continuing from the registry's reservation; nothing is
        connected yet."""
        replicas: list[Replica] = []

        def siblings(me: int, group: list[Replica] = replicas) -> set[str]:
            return {r.node_id for r in group if r.index != me and r.node_id}

        for index in indices if indices is not None else range(spec.replicas):
            control = self.controls(spec, shard, index, partial(siblings, index))
            replica = Replica(shard, index, control, spec.name)
            replica.on_state = lambda _r, n=spec.name: self.layout_changed_soon(n)
            replicas.append(replica)
        reserved = self.registry.reserved(spec.name, shard)

        def reserve(upto: int) -> int:
            return self.registry.reserve(spec.name, shard, upto)

        def committed(seq: int) -> bool:
            return decisions.committed(shard, seq)

        return ReplicaSet(shard, replicas, reserved=reserved, reserve=reserve, committed=committed)

    async def bring_up(self, sets: list[ReplicaSet], *, new: bool) -> None:
        """Connect every replica of `sets`, resolve the batches a crash left staged, and set
        each LIVE (level with its shard's newest) or DEAD and recovering. `new`: the first
        replica that cannot start fails the call."""
        all_replicas = [r for rs in sets for r in rs.replicas]
        by_shard = {rs.shard: rs for rs in sets}
        results = await asyncio.gather(*(r.connect() for r in all_replicas), return_exceptions=True)
        # Batches a crash left staged: committed where the registry holds the decision, else
        # dropped, before any replica's seq is compared or any write is sent.
        connected = [i for i, res in enumerate(results) if not isinstance(res, BaseException)]
        resolved = await asyncio.gather(
            *(by_shard[all_replicas[i].shard].resolve_staged(all_replicas[i]) for i in connected),
            return_exceptions=True,
        )
        for i, res in zip(connected, resolved, strict=True):
            if isinstance(res, BaseException):  # left DEAD: its recovery resolves them
                log.warning("%s: could not resolve its staged batches: %s",
                            all_replicas[i].name, res)
                results[i] = res
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

    async def _open(self, spec: CollectionSpec, *, new: bool) -> CollectionRuntime:
        decisions = CollectionDecisions(self.registry, spec.name)
        raw = None if new else self.registry.layout(spec.name)
        layout = Layout.from_json(raw) if raw else Layout.initial(spec.shards)
        lists = {} if new else self.registry.replica_sets(spec.name)
        if lists:  # a replica change ran: what it left outside the lists goes
            await self.replica_changes.remove_strays(spec, lists)
        sets = [
            self.replica_set(spec, s, decisions, lists[s].replicas if s in lists else None)
            for s in range(layout.shards)
        ]
        for rs in sets:
            if rs.shard in lists:
                for r in rs.replicas:
                    prefer(r.control, lists[rs.shard].nodes.get(r.index, ""))
        await self.bring_up(sets, new=new)
        col = CollectionRuntime(spec, sets, decisions, self.on_shard_search, layout)
        if not new:  # the breadth the recall tuner last set, kept by the registry
            col.tuned = self.registry.tuned(spec.name)
        change = None if new else self.registry.change(spec.name)
        if change is not None:  # a layout change a kill interrupted: finished before serving
            self.changes[spec.name] = await resharding.resume(self, col, change)
        return col

    async def scale(self, name: str, shards: int | None, replicas: int | None) -> None:
        """Start changing collection `name` to `shards` shards and `replicas` replicas (None:
        as now); returns once the change is persisted and running (DescribeCollection shows
        its progress). FAILED_PRECONDITION while another change of it runs."""
        plan.check_counts(shards, replicas)
        async with self._lock:
            col = self.get(name)
            name = col.spec.name
            running = self.changes.get(name)
            if isinstance(running, Resharder) and running.failed:
                raise FailedPrecondition(
                    f"collection {name!r}: its layout change failed ({running.error}); abort "
                    "it first (shardvec scale --abort)"
                )
            if (running is not None and not running.done.is_set()) or col.change is not None:
                phase = col.change.phase if col.change is not None else "running"
                raise FailedPrecondition(
                    f"collection {name!r}: a layout change is already in progress "
                    f"(phase {phase}); wait for it or abort it first"
                )
            if col.snapshots:
                raise FailedPrecondition(
                    f"collection {name!r}: a snapshot of it is being taken; scale it after"
                )
            shards = shards or col.layout.shards
            replicas = replicas or col.spec.replicas
            if shards != col.layout.shards:
                self.changes[name] = await resharding.begin(self, col, shards, replicas)
            elif replicas != col.spec.replicas:
                self.changes[name] = replica_job.replica_job(self, col, replicas)

    async def abort_change(self, name: str) -> None:
        """Roll back the layout change of `name` that has not switched yet."""
        name = self.get(name).spec.name
        job = self.changes.get(name)
        failed = isinstance(job, Resharder) and job.failed
        if job is None or (job.done.is_set() and not failed):
            raise FailedPrecondition(f"collection {name!r}: no layout change is in progress")
        await job.abort()

    async def remove_shards(self, spec: CollectionSpec, shards: range) -> None:
        """Stop the replicas of `shards` of `spec`, remove their directories and forget their
        seqs (shards a shrink or a rolled-back growth left); idempotent."""
        for s in shards:
            indices = set(range(MAX_REPLICAS)) | self.replica_changes.indices_on_disk(spec, s)
            controls = [self.controls(spec, s, r, set) for r in sorted(indices)]
            await asyncio.gather(*(c.close() for c in controls), return_exceptions=True)
            # Off the event loop, which serves every other collection's reads meanwhile.
            await asyncio.to_thread(
                shutil.rmtree, collection_dir(self.data_dir, spec.name) / f"shard-{s:04d}",
                ignore_errors=True,
            )
            await asyncio.to_thread(self.registry.forget_shard, spec.name, s)

    async def create(self, spec: CollectionSpec, *, restoring: bool = False) -> CollectionRuntime:
        """Create collection `spec`; with `restoring` it is registered 'restoring' (durably,
        before it gets any row) and not served until `mark_ready`."""
        async with self._lock:
            if spec.name in self.collections:
                raise AlreadyExists(f"collection {spec.name!r} already exists")
            if spec.name in self.aliases.names:
                raise AlreadyExists(
                    f"name: {spec.name!r} is an alias (of {self.aliases.names[spec.name]!r}); "
                    "a collection may not take an alias's name"
                )
            leftover = collection_dir(self.data_dir, spec.name)
            if leftover.exists() and any(leftover.iterdir()):
                # A new collection never opens shard directories it did not create.
                raise FailedPrecondition(
                    f"collection {spec.name!r}: {leftover} holds data the registry does not "
                    "know (left by an earlier collection of that name); move it away first"
                )
            self.registry.add(spec, RESTORING if restoring else READY)
            try:
                runtime = await self._open(spec, new=True)
            except BaseException:
                self.registry.remove(spec.name)
                await self._destroy(spec)
                raise
            self.collections[spec.name] = runtime
            if restoring:
                self.restoring.add(spec.name)
        await self.layout_changed(spec.name)
        return runtime

    async def set_options(
        self, name: str, target_recall: float | None, ttl_seconds: float | None = None
    ) -> CollectionRuntime:
        """Change collection `name`'s options that move no data (None: as now): persisted,
        then in force; the recall tuner retunes for a new target, and fronts get the spec.
        A new default `ttl_seconds` applies to rows written from now on."""
        async with self._lock:
            col = self.get(name)
            name, spec = col.spec.name, col.spec
            if target_recall is not None:
                spec = dataclasses.replace(spec, target_recall=target_recall)  # validates it
            if ttl_seconds is not None:
                spec = dataclasses.replace(spec, ttl_seconds=ttl_seconds)  # validates it
            running = self.changes.get(name)
            if (running is not None and not running.done.is_set()) or col.change is not None:
                # Its switch persists the spec it read before: the two would race.
                raise FailedPrecondition(
                    f"collection {name!r}: a layout change is in progress; set its options "
                    "once it has finished"
                )
            while spec != col.spec:  # again if a replica change replaced it meanwhile
                await asyncio.to_thread(self.registry.set_spec, spec)
                before, col.spec = col.spec, spec
                spec = dataclasses.replace(
                    before, target_recall=spec.target_recall, ttl_seconds=spec.ttl_seconds
                )
        await self.layout_changed(name)
        return col

    def mark_ready(self, name: str) -> None:
        """A restored collection has every row: persist 'ready', then serve it."""
        if name not in self.restoring:
            raise FailedPrecondition(f"collection {name!r} is not being restored")
        self.registry.set_state(name, READY)
        self.restoring.discard(name)
        self.layout_changed_soon(name)

    def get(self, name: str) -> CollectionRuntime:
        """The served collection `name` or, when `name` is an alias, the one it names."""
        validate_collection_name(name)
        name = self.aliases.resolve(name)
        runtime = self.collections.get(name)
        if runtime is None:
            raise NotFound(f"collection {name!r} does not exist")
        if name in self.restoring:
            raise FailedPrecondition(
                f"collection {name!r} is being restored; it is served once every row is in"
            )
        return runtime

    def uid(self, name: str) -> bytes:
        """The identity of this incarnation of collection `name` (Registry.uid)."""
        uid = self._uids.get(name)
        if uid is None:
            uid = self._uids[name] = self.registry.uid(name)
        return uid

    def served(self) -> list[str]:
        """The names of the collections that are served (not being restored), sorted."""
        return sorted(n for n in self.collections if n not in self.restoring)

    async def drop(self, name: str, *, restoring: bool = False) -> None:
        """Drop collection `name`; one being restored only with `restoring` (the restore
        itself giving up), otherwise that is FAILED_PRECONDITION like every data call."""
        async with self._lock:
            check_not_alias(self.aliases, name, "DropCollection")
            if restoring and name in self.restoring:
                runtime = self.collections[name]
            else:
                runtime = self.get(name)
            check_unaliased(self.aliases, name)
            self.restoring.discard(name)
            job = self.changes.pop(name, None)
            if job is not None and job.task is not None:
                job.task.cancel()
            del self.collections[name]
            self._uids.pop(name, None)
            self.registry.remove(name)
            for rs in runtime.shard_sets:
                await rs.close()
            await self._destroy(runtime.spec, len(runtime.shard_sets))
        await self.layout_changed(name)

    async def create_alias(self, alias: str, collection: str) -> None:
        """Make `alias` name `collection` (persisted, then in force, then pushed to fronts)."""
        async with self._lock:
            check_new_alias(self.aliases, alias, self.collections)
            check_target(self.aliases, collection, self.collections)
            self.get(collection)  # served (FAILED_PRECONDITION while being restored)
            await self._set_alias(alias, collection)
        await self._publish_aliases()

    async def switch_alias(
        self, alias: str, collection: str, embedding_changed: bool = False
    ) -> str:
        """Point `alias` at `collection`, of the same dimension (unless `embedding_changed`)
        and metric as the one it names now, atomically; returns the collection it named
        before. Reads that resolved the alias before finish on that one."""
        async with self._lock:
            check_alias_name(alias)
            old = self.aliases.names.get(alias)
            if old is None:
                raise NotFound(f"alias: {alias!r} does not exist")
            check_target(self.aliases, collection, self.collections)
            check_same_shape(
                alias, self.collections[old].spec, self.get(collection).spec, embedding_changed
            )
            if old != collection:
                await phases.reached("alias-switch-begun")  # nothing written: `old` holds
                await self._set_alias(alias, collection)
        await self._publish_aliases()
        return old

    async def delete_alias(self, alias: str) -> str:
        """Remove `alias` (the collection stays); returns the collection it named."""
        async with self._lock:
            check_alias_name(alias)
            old = self.aliases.names.get(alias)
            if old is None:
                raise NotFound(f"alias: {alias!r} does not exist")
            await asyncio.to_thread(self.registry.remove_alias, alias)
            names = {a: c for a, c in self.aliases.names.items() if a != alias}
            self.aliases = AliasMap(names, next_epoch(self.aliases.version))
        await self._publish_aliases()
        return old

    async def _set_alias(self, alias: str, collection: str) -> None:
        """Persist `alias` -> `collection`, then put it in force (the caller holds the lock)."""
        await asyncio.to_thread(self.registry.set_alias, alias, collection)
        await phases.reached("alias-switched")  # persisted, not yet in force
        names = {**self.aliases.names, alias: collection}
        self.aliases = AliasMap(names, next_epoch(self.aliases.version))

    async def _publish_aliases(self) -> None:
        """Push the alias map to the query fronts (none: nothing to do)."""
        if self.publisher is not None:
            await self.publisher.aliases_changed(self.aliases)

    async def scale_replicas(
        self, name: str, replicas: int, progress: Progress | None = None
    ) -> None:
        """Give every shard of `name` `replicas` replicas, online; returns once the new set
        serves (coordinator/changes/replicas.py)."""
        await self.replica_changes.scale_replicas(name, replicas, progress)

    async def rebalance(self, name: str | None = None) -> list[dict[str, object]]:
        """Move replicas (of `name`, or of every collection) until every node holds about the
        same rows; returns the moves made (collection, shard, replica, source, target, rows)."""
        return await self.replica_changes.rebalance(name)

    def start_auto_rebalance(
        self, node_list: Callable[[], list[str]], interval: float = 2.0
    ) -> AutoRebalancer:
        """Rebalance whenever the set of live nodes (`node_list()`) changes."""
        self.replica_changes.node_list = node_list
        rebalancer = AutoRebalancer(self.replica_changes, interval)
        self._rebalancer = asyncio.ensure_future(rebalancer.run())
        return rebalancer

    async def _destroy(self, spec: CollectionSpec, shards: int = 0) -> None:
        indices = {
            s: set(range(spec.replicas)) | self.replica_changes.indices_on_disk(spec, s)
            for s in range(max(spec.shards, shards))
        }
        controls = [
            self.controls(spec, s, r, set)
            for s in indices
            for r in sorted(indices[s])
        ]
        await asyncio.gather(*(c.close() for c in controls), return_exceptions=True)
        shutil.rmtree(collection_dir(self.data_dir, spec.name), ignore_errors=True)

    async def shutdown(self) -> None:
        """Checkpoint and stop every replica; the data directory stays for the next start."""
        if self._health is not None:
            self._health.cancel()
        if self._tuning is not None:
            self._tuning.cancel()
        for job in self.changes.values():  # persisted: the next start resumes them
            if job.task is not None:
                job.task.cancel()
        if self._rebalancer is not None:
            self._rebalancer.cancel()
        self.replica_changes.close()
        for runtime in self.collections.values():
            for rs in runtime.shard_sets:
                await rs.close()
            await asyncio.gather(
                *(r.control.close() for rs in runtime.shard_sets for r in rs.replicas),
                return_exceptions=True,
            )
        self.registry.close()
