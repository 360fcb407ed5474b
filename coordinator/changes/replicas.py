"""Online replica changes: raising or lowering a collection's replica count, and moving
replicas between nodes (rebalancing). Where replicas go is decided by
coordinator/replicas/placement.py.

The state is persisted before it takes effect (coordinator/registry.py, table replica_sets):
- spec.replicas is the target count; each shard's replica list (indices, with the node a
  replica was placed on) is what exists. A change first records the target and every shard's
  current list in one transaction, then converges shard by shard, recording each shard's new
  list before a replica is added or removed.
- Adding: the new index (the smallest unused) is recorded, then the replica is started on its
  node, DEAD, and recovers as any DEAD replica does (coordinator/replicas/replica_set.py:
  copies every row from a LIVE peer while writes go on, rejoins LIVE only when level). The
  change waits for it.
- Removing: the list without it is recorded, then it leaves the set under the shard's write
  lock, and its process and directory go. Replicas not LIVE go first, then those on the most
  loaded nodes, so a shard keeps min(old R, new R) LIVE replicas throughout.
- Moving: a replica is added on the target node and caught up, then the source is removed, so
  a shard never has fewer LIVE replicas than R.
- At start-up (`remove_strays`, `resume`): a replica directory or process not in the list is
  closed and removed; a listed replica not yet caught up recovers; a shard whose list is not
  of the target length converges again. A change killed part way so ends in the old or the
  new replica set, and a move killed part way ends with the extra replica trimmed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shardvec.contract.errors import FailedPrecondition, InvalidArgument
from shardvec.contract.settings import CollectionSpec
from shardvec.coordinator.paths import collection_dir, replica_dir
from shardvec.coordinator.registry import ReplicaList
from shardvec.coordinator.replicas import events
from shardvec.coordinator.replicas.placement import (
    Move,
    Placed,
    choose_node,
    choose_removals,
    plan_moves,
)
from shardvec.coordinator.replicas.replica_set import Replica, ReplicaSet, ReplicaState

if TYPE_CHECKING:
    from shardvec.coordinator.collection import CollectionRuntime
    from shardvec.coordinator.registry import Registry



MAX_REPLICA_INDEX = 99  # replica directories are replica-NN
Progress = Callable[[dict[str, Any]], None]
_REPLICA_DIR = re.compile(r"replica-(\d{2})")


def prefer(control: Any, node: str) -> None:
    """Ask a replica's control to create its process on `node` (controls that place
    processes, RayReplicaControl, have `prefer`; in-process ones have no nodes)."""
    if node and hasattr(control, "prefer"):
        control.prefer(node)


def _lists(col: CollectionRuntime) -> dict[int, ReplicaList]:
    """Every shard's current replica list, with the nodes its replicas run on."""
    return {
        rs.shard: ReplicaList(
            [r.index for r in rs.replicas], {r.index: r.node_id for r in rs.replicas if r.node_id}
        )
        for rs in col.shard_sets
    }


def _free_index(rs: ReplicaSet) -> int:
    used = {r.index for r in rs.replicas}
    index = next(i for i in range(MAX_REPLICA_INDEX + 2) if i not in used)
    if index > MAX_REPLICA_INDEX:
        raise FailedPrecondition(f"shard {rs.shard}: no free replica index")
    return index


async def _wait_live(replica: Replica, rs: ReplicaSet) -> None:
    while replica.state is not ReplicaState.LIVE:
        if replica not in rs.replicas:
            raise FailedPrecondition(f"{replica.name} was removed before it caught up")
        await asyncio.sleep(0.05)


def _report(progress: Progress | None, phase: str, replica: Replica, node: str) -> None:
    events.replica_event(replica.name, f"{phase} (node {node[:12] or 'any'})")
    if progress is not None:
        progress({"phase": phase, "shard": replica.shard, "replica": replica.index,
                  "node": node})



class ReplicaChanges:
    """The replica changes of one coordinator: it owns their per-collection locks and the
    background tasks that resume interrupted changes, and reads the runtime's collections
    (the same dict) and registry. A layout change takes `lock(name)` too, so a collection
    changes its replicas or its shards, never both at once."""

    def __init__(
        self,
        data_dir: Path,
        registry: Registry,
        collections: dict[str, CollectionRuntime],
        restoring: set[str],
        controls: Callable[[CollectionSpec, int, int, Callable[[], set[str]]], Any],
        get: Callable[[str], CollectionRuntime],
    ) -> None:
        self.data_dir = data_dir
        self.registry = registry
        self.collections = collections  # the runtime's, shared
        self.restoring = restoring  # the runtime's, shared: collections not served yet
        self.controls = controls
        self.get = get
        # The live nodes (None: the nodes replicas run on), set by `follow_nodes`.
        self.node_list: Callable[[], list[str]] | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Future[None]] = set()

    def lock(self, name: str) -> asyncio.Lock:
        """The lock a change of collection `name`'s replicas or shards holds throughout."""
        return self._locks.setdefault(name, asyncio.Lock())

    def busy(self) -> bool:
        """A change holds some collection's lock."""
        return any(lock.locked() for lock in self._locks.values())

    def resuming(self) -> bool:
        """An interrupted change is still being finished in the background."""
        return bool(self._tasks)

    def close(self) -> None:
        """Stop the background resumptions (persisted: the next start resumes them)."""
        for task in list(self._tasks):
            task.cancel()

    def placed(self) -> list[Placed]:
        """Every replica of every served collection, as placement sees it."""
        return [
            Placed(name, rs.shard, r.index, r.node_id, r.count, r.state is ReplicaState.LIVE)
            for name, col in sorted(self.collections.items())
            for rs in col.shard_sets
            for r in rs.replicas
        ]


    def nodes(self) -> list[str]:
        """The live nodes (the runtime's `node_list`), or else the nodes replicas run on."""
        if self.node_list is not None:
            return sorted(self.node_list())
        return sorted({p.node for p in self.placed() if p.node})




    def new_replica(self, spec: CollectionSpec, rs: ReplicaSet, index: int,
                    node: str) -> Replica:
        """The Replica of a new index of shard `rs`, its control placed on `node` if known."""

        def siblings(me: int) -> set[str]:
            return {r.node_id for r in rs.replicas if r.index != me and r.node_id}

        control = self.controls(spec, rs.shard, index, partial(siblings, index))
        prefer(control, node)
        return Replica(rs.shard, index, control, spec.name)


    async def add_replica(self, col: CollectionRuntime, rs: ReplicaSet,
                          node: str, progress: Progress | None = None) -> Replica:
        """Record a new replica of shard `rs` (on `node`), start it and wait until it is LIVE."""
        index = _free_index(rs)
        lists = _lists(col)
        lists[rs.shard] = ReplicaList(
            [*lists[rs.shard].replicas, index], {**lists[rs.shard].nodes, index: node}
        )
        self.registry.set_replica_sets(col.spec.name, {rs.shard: lists[rs.shard]})
        replica = self.new_replica(col.spec, rs, index, node)
        _report(progress, "adding", replica, node)
        rs.add(replica)
        await _wait_live(replica, rs)
        _report(progress, "added", replica, replica.node_id)
        return replica


    async def remove_replica(self, col: CollectionRuntime, rs: ReplicaSet,
                             replica: Replica, progress: Progress | None = None) -> None:
        """Record shard `rs` without `replica`, take it out, stop its process, remove its files."""
        lists = _lists(col)
        kept = [i for i in lists[rs.shard].replicas if i != replica.index]
        nodes_kept = {i: n for i, n in lists[rs.shard].nodes.items() if i != replica.index}
        self.registry.set_replica_sets(col.spec.name, {rs.shard: ReplicaList(kept, nodes_kept)})
        _report(progress, "removing", replica, replica.node_id)
        await rs.remove(replica)
        await replica.control.close()
        shutil.rmtree(replica_dir(self.data_dir, col.spec.name, rs.shard, replica.index),
                      ignore_errors=True)
        _report(progress, "removed", replica, replica.node_id)


    async def converge(self, name: str, progress: Progress | None = None) -> None:
        """Add or remove replicas until every shard of `name` has spec.replicas of them."""
        col = self.collections[name]
        target = col.spec.replicas
        # shards in parallel; within a shard one replica at a time
        async def shard(rs: ReplicaSet) -> None:
            while len(rs.replicas) < target:
                node = choose_node(self.nodes(), self.placed(), (name, rs.shard))
                await self.add_replica(col, rs, node, progress)
            while len(rs.replicas) > target:
                # not LIVE first: a LIVE one goes only when every other is LIVE too, so the
                # shard keeps min(old R, new R) LIVE replicas
                victim = choose_removals(self.nodes(), self.placed(), (name, rs.shard), 1)[0]
                replica = next(r for r in rs.replicas if r.index == victim.replica)
                await self.remove_replica(col, rs, replica, progress)

        await asyncio.gather(*(shard(rs) for rs in col.shard_sets))


    async def scale_replicas(self, name: str, replicas: int,
                             progress: Progress | None = None) -> None:
        """Change collection `name` to `replicas` replicas per shard, online; returns once every
        shard has them, every new one LIVE."""
        col = self.get(name)
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise InvalidArgument(f"replicas must be an integer, got {replicas!r}")
        async with self.lock(name):
            spec = dataclasses.replace(col.spec, replicas=replicas)  # validates the count
            # the target and every shard's present list, before anything changes
            self.registry.set_replica_sets(name, _lists(col), spec)
            col.spec = spec
            await self.converge(name, progress)


    async def rebalance(self, name: str | None = None,
                        progress: Progress | None = None) -> list[dict[str, object]]:
        """Move replicas (of `name`, or of every collection) until the nodes hold about the same
        rows; returns the moves made. Shards with a replica not LIVE are left for a later round."""
        if name is not None:
            self.get(name)
        settled = {
            (n, rs.shard)
            for n, col in self.collections.items()
            for rs in col.shard_sets
            if all(r.state is ReplicaState.LIVE for r in rs.replicas) and n not in self.restoring
        }

        def movable(p: Placed) -> bool:
            return (name is None or p.collection == name) and p.key in settled

        plan = plan_moves(self.nodes(), self.placed(), movable=movable)
        done: list[dict[str, object]] = []
        for move in plan:
            if await self._move(move, progress):
                done.append(move.to_dict())
        return done


    async def _move(self, move: Move, progress: Progress | None) -> bool:
        col = self.collections.get(move.collection)
        if col is None:
            return False
        async with self.lock(move.collection):
            rs = col.shard_sets[move.shard]
            source = next((r for r in rs.replicas if r.index == move.replica), None)
            if source is None or source.node_id != move.source:
                return False  # the cluster changed since the plan
            events.replica_event(source.name, f"moving from node {move.source[:12]} to "
                                              f"{move.target[:12]} ({source.count:,} rows)")
            await self.add_replica(col, rs, move.target, progress)
            await self.remove_replica(col, rs, source, progress)
            return True


    def indices_on_disk(self, spec: CollectionSpec, shard: int) -> set[int]:
        """The replica indices with a directory under shard `shard` of `spec`."""
        shard_dir = collection_dir(self.data_dir, spec.name) / f"shard-{shard:04d}"
        found: set[int] = set()
        if shard_dir.is_dir():
            for entry in shard_dir.iterdir():
                m = _REPLICA_DIR.fullmatch(entry.name)
                if m and entry.is_dir() and not entry.is_symlink():
                    found.add(int(m.group(1)))
        return found


    async def remove_strays(self, spec: CollectionSpec,
                            lists: dict[int, ReplicaList]) -> None:
        """Close and delete every replica of `spec` a shard's recorded list does not hold (a
        change stopped between recording a list and removing a replica)."""
        for shard, rl in sorted(lists.items()):
            keep = set(rl.replicas)
            on_disk = self.indices_on_disk(spec, shard)
            top = max(keep | on_disk | {spec.replicas - 1})
            for index in sorted((on_disk | set(range(top + 2))) - keep):
                control = self.controls(spec, shard, index, set)
                await control.close()
                if index in on_disk:
                    events.replica_event(f"{spec.name}/shard-{shard}/replica-{index}",
                                         "removed: not in its shard's list (a replica change "
                                         "was interrupted)")
                    shutil.rmtree(replica_dir(self.data_dir, spec.name, shard, index),
                                  ignore_errors=True)


    def resume(self) -> None:
        """After restore: finish the replica changes a restart interrupted, in the background."""
        for name, col in self.collections.items():
            if any(len(rs.replicas) != col.spec.replicas for rs in col.shard_sets):
                events.layout_event(name, "resuming an interrupted replica change")
                task = asyncio.ensure_future(self._resume_one(name))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)


    async def _resume_one(self, name: str) -> None:
        try:
            async with self.lock(name):
                await self.converge(name)
        except Exception:
            events.needs_action(f"collection {name}", "resuming its replica change failed",
                                exc_info=True)



class AutoRebalancer:
    """Rebalances when the set of live nodes changes (a node joins, or one leaves and its
    replicas have been re-created elsewhere): once every replica is LIVE again."""

    def __init__(self, changes: ReplicaChanges, interval: float = 2.0) -> None:
        self.changes = changes
        self.interval = interval
        self.seen: Sequence[str] = ()
        self.pending = False
        self.rounds = 0  # rebalances run (for tests and status)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except Exception:
                events.needs_action("automatic rebalance", "failed", exc_info=True)

    async def tick(self) -> None:
        if self.changes.node_list is None:
            return
        current = sorted(await asyncio.to_thread(self.changes.node_list))
        if current != list(self.seen):
            self.seen, self.pending = current, True
        if not self.pending:
            return
        everyone = [r for col in self.changes.collections.values() for rs in col.shard_sets
                    for r in rs.replicas]
        if any(r.state is not ReplicaState.LIVE for r in everyone):
            return  # a node left: its replicas are still being re-created
        if self.changes.busy():
            return
        moves = await self.changes.rebalance()
        self.rounds += 1
        self.pending = False
        if moves:
            events.cluster_event(f"automatic rebalance moved {len(moves)} replica(s)")
