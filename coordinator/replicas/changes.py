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
import logging
import re
import shutil
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shardvec.contract.errors import FailedPrecondition, InvalidArgument
from shardvec.contract.settings import CollectionSpec
from shardvec.coordinator.paths import collection_dir, replica_dir
from shardvec.coordinator.registry import ReplicaList
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

log = logging.getLogger(__name__)


class CoordinatorRuntime(Protocol):
    """What a replica change uses of coordinator/runtime.py's CoordinatorRuntime (which
    imports this module, so it is named here by its shape)."""

    data_dir: Path
    registry: Registry
    collections: dict[str, CollectionRuntime]
    restoring: set[str]
    node_list: Callable[[], list[str]] | None
    replica_locks: dict[str, asyncio.Lock]
    replica_tasks: set[asyncio.Future[None]]

    def controls(self, spec: CollectionSpec, shard: int, replica: int,
                 siblings: Callable[[], set[str]]) -> Any: ...

    def get(self, name: str) -> CollectionRuntime: ...

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


def placed(rt: CoordinatorRuntime) -> list[Placed]:
    """Every replica of every served collection, as placement sees it."""
    return [
        Placed(name, rs.shard, r.index, r.node_id, r.count, r.state is ReplicaState.LIVE)
        for name, col in sorted(rt.collections.items())
        for rs in col.shard_sets
        for r in rs.replicas
    ]


def nodes(rt: CoordinatorRuntime) -> list[str]:
    """The live nodes (the runtime's `node_list`), or else the nodes replicas run on."""
    if rt.node_list is not None:
        return sorted(rt.node_list())
    return sorted({p.node for p in placed(rt) if p.node})


def _lock(rt: CoordinatorRuntime, name: str) -> asyncio.Lock:
    return rt.replica_locks.setdefault(name, asyncio.Lock())


def new_replica(rt: CoordinatorRuntime, spec: CollectionSpec, rs: ReplicaSet, index: int,
                node: str) -> Replica:
    """The Replica of a new index of shard `rs`, its control placed on `node` if known."""

    def siblings(me: int) -> set[str]:
        return {r.node_id for r in rs.replicas if r.index != me and r.node_id}

    control = rt.controls(spec, rs.shard, index, partial(siblings, index))
    prefer(control, node)
    return Replica(rs.shard, index, control, spec.name)


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


async def add_replica(rt: CoordinatorRuntime, col: CollectionRuntime, rs: ReplicaSet,
                      node: str, progress: Progress | None = None) -> Replica:
    """Record a new replica of shard `rs` (on `node`), start it and wait until it is LIVE."""
    index = _free_index(rs)
    lists = _lists(col)
    lists[rs.shard] = ReplicaList(
        [*lists[rs.shard].replicas, index], {**lists[rs.shard].nodes, index: node}
    )
    rt.registry.set_replica_sets(col.spec.name, {rs.shard: lists[rs.shard]})
    replica = new_replica(rt, col.spec, rs, index, node)
    _report(progress, "adding", replica, node)
    rs.add(replica)
    await _wait_live(replica, rs)
    _report(progress, "added", replica, replica.node_id)
    return replica


async def remove_replica(rt: CoordinatorRuntime, col: CollectionRuntime, rs: ReplicaSet,
                         replica: Replica, progress: Progress | None = None) -> None:
    """Record shard `rs` without `replica`, take it out, stop its process, remove its files."""
    lists = _lists(col)
    kept = [i for i in lists[rs.shard].replicas if i != replica.index]
    nodes_kept = {i: n for i, n in lists[rs.shard].nodes.items() if i != replica.index}
    rt.registry.set_replica_sets(col.spec.name, {rs.shard: ReplicaList(kept, nodes_kept)})
    _report(progress, "removing", replica, replica.node_id)
    await rs.remove(replica)
    await replica.control.close()
    shutil.rmtree(replica_dir(rt.data_dir, col.spec.name, rs.shard, replica.index),
                  ignore_errors=True)
    _report(progress, "removed", replica, replica.node_id)


def _report(progress: Progress | None, phase: str, replica: Replica, node: str) -> None:
    log.info("replica change: %s %s on %s", phase, replica.name, node[:12] or "any node")
    if progress is not None:
        progress({"phase": phase, "shard": replica.shard, "replica": replica.index,
                  "node": node})


async def converge(rt: CoordinatorRuntime, name: str, progress: Progress | None = None) -> None:
    """Add or remove replicas until every shard of `name` has spec.replicas of them."""
    col = rt.collections[name]
    target = col.spec.replicas
    # shards in parallel; within a shard one replica at a time
    async def shard(rs: ReplicaSet) -> None:
        while len(rs.replicas) < target:
            node = choose_node(nodes(rt), placed(rt), (name, rs.shard))
            await add_replica(rt, col, rs, node, progress)
        while len(rs.replicas) > target:
            # not LIVE first: a LIVE one goes only when every other is LIVE too, so the
            # shard keeps min(old R, new R) LIVE replicas
            victim = choose_removals(nodes(rt), placed(rt), (name, rs.shard), 1)[0]
            replica = next(r for r in rs.replicas if r.index == victim.replica)
            await remove_replica(rt, col, rs, replica, progress)

    await asyncio.gather(*(shard(rs) for rs in col.shard_sets))


async def scale_replicas(rt: CoordinatorRuntime, name: str, replicas: int,
                         progress: Progress | None = None) -> None:
    """Change collection `name` to `replicas` replicas per shard, online; returns once every
    shard has them, every new one LIVE."""
    col = rt.get(name)
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        raise InvalidArgument(f"replicas must be an integer, got {replicas!r}")
    async with _lock(rt, name):
        spec = dataclasses.replace(col.spec, replicas=replicas)  # validates the count
        # the target and every shard's present list, before anything changes
        rt.registry.set_replica_sets(name, _lists(col), spec)
        col.spec = spec
        await converge(rt, name, progress)


async def rebalance(rt: CoordinatorRuntime, name: str | None = None,
                    progress: Progress | None = None) -> list[dict[str, object]]:
    """Move replicas (of `name`, or of every collection) until the nodes hold about the same
    rows; returns the moves made. Shards with a replica not LIVE are left for a later round."""
    if name is not None:
        rt.get(name)
    settled = {
        (n, rs.shard)
        for n, col in rt.collections.items()
        for rs in col.shard_sets
        if all(r.state is ReplicaState.LIVE for r in rs.replicas) and n not in rt.restoring
    }

    def movable(p: Placed) -> bool:
        return (name is None or p.collection == name) and p.key in settled

    plan = plan_moves(nodes(rt), placed(rt), movable=movable)
    done: list[dict[str, object]] = []
    for move in plan:
        if await _move(rt, move, progress):
            done.append(move.to_dict())
    return done


async def _move(rt: CoordinatorRuntime, move: Move, progress: Progress | None) -> bool:
    col = rt.collections.get(move.collection)
    if col is None:
        return False
    async with _lock(rt, move.collection):
        rs = col.shard_sets[move.shard]
        source = next((r for r in rs.replicas if r.index == move.replica), None)
        if source is None or source.node_id != move.source:
            return False  # the cluster changed since the plan
        log.info("moving %s from %s to %s", source.name, move.source[:12], move.target[:12])
        await add_replica(rt, col, rs, move.target, progress)
        await remove_replica(rt, col, rs, source, progress)
        return True


def indices_on_disk(rt: CoordinatorRuntime, spec: CollectionSpec, shard: int) -> set[int]:
    """The replica indices with a directory under shard `shard` of `spec`."""
    shard_dir = collection_dir(rt.data_dir, spec.name) / f"shard-{shard:04d}"
    found: set[int] = set()
    if shard_dir.is_dir():
        for entry in shard_dir.iterdir():
            m = _REPLICA_DIR.fullmatch(entry.name)
            if m and entry.is_dir() and not entry.is_symlink():
                found.add(int(m.group(1)))
    return found


async def remove_strays(rt: CoordinatorRuntime, spec: CollectionSpec,
                        lists: dict[int, ReplicaList]) -> None:
    """Close and delete every replica of `spec` a shard's recorded list does not hold (a
    change stopped between recording a list and removing a replica)."""
    for shard, rl in sorted(lists.items()):
        keep = set(rl.replicas)
        on_disk = indices_on_disk(rt, spec, shard)
        top = max(keep | on_disk | {spec.replicas - 1})
        for index in sorted((on_disk | set(range(top + 2))) - keep):
            control = rt.controls(spec, shard, index, set)
            await control.close()
            if index in on_disk:
                log.warning("removing replica %s/shard-%d/replica-%d: not in its shard's list "
                            "(a replica change was interrupted)", spec.name, shard, index)
                shutil.rmtree(replica_dir(rt.data_dir, spec.name, shard, index),
                              ignore_errors=True)


def resume(rt: CoordinatorRuntime) -> None:
    """After restore: finish the replica changes a restart interrupted, in the background."""
    for name, col in rt.collections.items():
        if any(len(rs.replicas) != col.spec.replicas for rs in col.shard_sets):
            log.warning("collection %s: resuming an interrupted replica change", name)
            task = asyncio.ensure_future(_resume_one(rt, name))
            rt.replica_tasks.add(task)
            task.add_done_callback(rt.replica_tasks.discard)


async def _resume_one(rt: CoordinatorRuntime, name: str) -> None:
    try:
        async with _lock(rt, name):
            await converge(rt, name)
    except Exception:
        log.exception("resuming the replica change of %s failed", name)


class AutoRebalancer:
    """Rebalances when the set of live nodes changes (a node joins, or one leaves and its
    replicas have been re-created elsewhere): once every replica is LIVE again."""

    def __init__(self, rt: CoordinatorRuntime, interval: float = 2.0) -> None:
        self.rt = rt
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
                log.exception("automatic rebalance failed")

    async def tick(self) -> None:
        if self.rt.node_list is None:
            return
        current = sorted(await asyncio.to_thread(self.rt.node_list))
        if current != list(self.seen):
            self.seen, self.pending = current, True
        if not self.pending:
            return
        everyone = [r for col in self.rt.collections.values() for rs in col.shard_sets
                    for r in rs.replicas]
        if any(r.state is not ReplicaState.LIVE for r in everyone):
            return  # a node left: its replicas are still being re-created
        if any(lock.locked() for lock in self.rt.replica_locks.values()):
            return
        moves = await rebalance(self.rt)
        self.rounds += 1
        self.pending = False
        if moves:
            log.info("automatic rebalance moved %d replica(s)", len(moves))
