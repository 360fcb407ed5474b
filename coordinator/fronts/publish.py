"""The coordinator side of the query fronts: layout views, epoch fencing, the push.

A query front (coordinator/fronts/) answers reads from a copy of each collection's layout:
the spec, the Layout (version and bucket owners), and per shard its replicas' addresses, node
ids and states. That copy is a *view* (`collection_view`), versioned by the collection's
layout *epoch*. `LayoutPublisher.layout_changed(name)` is the one hook every change of what a
reader must see goes through (create, drop, restore, a replica's state change, a layout
switch of the resharding work, a changed spec, and a new search breadth from the recall
tuner), and it runs in this order:

1. a new epoch, greater than any before (`next_epoch`: it also grows across coordinator
   restarts, as it is taken from the clock when that is ahead);
2. the epoch is set on every LIVE replica (Shard.SetEpoch), and cleared (0) on every replica
   that is not LIVE and can still be reached;
3. the view is published (what a front's pull answers) and pushed to every front.

A replica answers a front's read only under its own epoch, so a front holding an older view
(it missed a push) is refused ("stale layout") by every replica the change concerns, pulls the
published view and retries: it can never read a replica that left LIVE (it may have missed
writes), a restarted replica catching up (it has no epoch until it is LIVE again), or, after
a layout switch, a shard under the old bucket owners. A LIVE replica the epoch could not be set
on is shown to the fronts as not LIVE, so no front is sent to it.

Aliases (coordinator/aliases.py) go the same way: `aliases_changed` pushes the whole alias map,
versioned like an epoch, to every front after the registry holds it, and a front's pull
(`FrontState`) carries it with the views. A front whose push failed is reloaded with the whole
state at the pool's next refresh; until then it resolves an alias as before (to a collection
that is still served: a collection an alias names is never dropped), and a name it does not
know makes it pull.

Successive calls for one collection are serialized; each takes the state as it is when it
runs, so a burst of state changes ends with a view of the last.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shardvec.contract.settings import CollectionSpec
from shardvec.contract.types import TunedBreadth
from shardvec.coordinator.aliases import AliasMap
from shardvec.coordinator.layout import Layout, next_epoch
from shardvec.coordinator.queries.reads import CollectionReads
from shardvec.coordinator.replicas.replica_set import Replica, ReplicaState

log = logging.getLogger(__name__)

EPOCH_TIMEOUT_S = 2.0  # a LIVE replica that cannot take its epoch this fast is kept from fronts
PUSH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PushedReplica:
    """One replica as a view shows it to the fronts."""

    index: int
    address: str  # "" when it has none (not started)
    node_id: str
    state: ReplicaState
    pid: int = 0
    count: int = 0
    applied_seq: int = 0
    fault: str = ""


@dataclass(frozen=True)
class CollectionView:
    """What a front needs of a collection to read it, under `epoch` (pushed through Ray)."""

    spec: CollectionSpec
    layout: Layout
    foreign: frozenset[int]  # shards that answer only for their own buckets (read_view.py)
    epoch: int
    uid: bytes  # the registry's uid: a collection dropped and created again is another
    shards: tuple[tuple[PushedReplica, ...], ...]
    # The search breadth the recall tuner set (coordinator/queries/recall_tuner.py): a
    # front's searches without an `ef` use the coordinator's (None: the static rule).
    tuned: TunedBreadth | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def addresses(self) -> set[str]:
        return {r.address for reps in self.shards for r in reps if r.address}


@dataclass(frozen=True)
class FrontState:
    """What a front's pull answers: every published view, the fronts, the coordinator's
    address and the scroll cursors' key."""

    views: dict[str, CollectionView]
    fronts: list[dict[str, str]]
    coordinator: str
    cursor_secret: bytes
    aliases: AliasMap = field(default_factory=AliasMap)


def collection_view(
    col: CollectionReads, epoch: int, uid: bytes, fenced: set[int]
) -> CollectionView:
    """Collection `col`'s view under `epoch`; the replicas whose ids are in `fenced` (LIVE, but
    their epoch could not be set) are shown DEAD."""
    shards = []
    for rs in col.shard_sets:
        reps = []
        for r in rs.replicas:
            state = r.state
            if state is ReplicaState.LIVE and id(r) in fenced:
                state = ReplicaState.DEAD
            address = r.client.address if r.client is not None else ""
            reps.append(PushedReplica(
                r.index, address, r.node_id, state, r.pid, r.count, r.applied_seq, r.fault
            ))  # fmt: skip
        shards.append(tuple(reps))
    return CollectionView(
        col.spec, col.layout, col.foreign, epoch, uid, tuple(shards), col.tuned
    )


class FrontSink(Protocol):
    """Where views go: the fronts (coordinator/fronts/pool.py FrontPool)."""

    async def push(self, name: str, view: CollectionView | None) -> None:
        """Send collection `name`'s new view (None: dropped) to every front."""
        ...

    async def push_aliases(self, aliases: AliasMap) -> None:
        """Send the new alias map to every front."""
        ...


class LayoutPublisher:
    """Epochs and published views of the coordinator's collections (module docstring)."""

    def __init__(
        self,
        collections: Callable[[], Mapping[str, CollectionReads]],
        served: Callable[[str], bool],
        uid: Callable[[str], bytes],
        sink: FrontSink | None = None,
    ) -> None:
        self._collections = collections
        self._served = served
        self._uid = uid
        self.sink = sink
        self.epochs: dict[str, int] = {}
        self.published: dict[str, CollectionView] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending: set[asyncio.Future[None]] = set()
        self.aliases = AliasMap()  # as last pushed

    def schedule(self, name: str) -> None:
        """`layout_changed(name)` soon (from synchronous code: a replica's state change)."""
        task = asyncio.ensure_future(self.layout_changed(name))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        task.add_done_callback(_log_failure)

    async def settled(self) -> None:
        """Wait for every scheduled layout change to be fenced and pushed."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def layout_changed(self, name: str) -> None:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            col = self._collections().get(name)
            if col is None or not self._served(name):
                if self.published.pop(name, None) is not None and self.sink is not None:
                    await self.sink.push(name, None)
                return
            epoch = next_epoch(self.epochs.get(name, 0))
            live = [r for rs in col.shard_sets for r in rs.live()]
            others = [
                r for rs in col.shard_sets for r in rs.replicas
                if r.state is not ReplicaState.LIVE and r.client is not None
            ]  # fmt: skip
            results = await asyncio.gather(
                *(_set_epoch(r, epoch, EPOCH_TIMEOUT_S) for r in live),
                *(_set_epoch(r, 0, EPOCH_TIMEOUT_S / 2) for r in others),
                return_exceptions=True,
            )
            fenced = {
                id(r) for r, res in zip(live, results, strict=False)
                if isinstance(res, BaseException)
            }  # fmt: skip
            for r in live:
                if id(r) in fenced:
                    log.warning("%s: could not set its layout epoch; fronts skip it", r.name)
            self.epochs[name] = epoch
            view = collection_view(col, epoch, self._uid(name), fenced)
            self.published[name] = view
        if self.sink is not None:
            await self.sink.push(name, view)

    async def aliases_changed(self, aliases: AliasMap) -> None:
        """Push the alias map, as the registry now holds it, to every front."""
        self.aliases = aliases
        if self.sink is not None:
            await self.sink.push_aliases(aliases)

    def views(self) -> dict[str, CollectionView]:
        return dict(self.published)


async def _set_epoch(replica: Replica, epoch: int, timeout: float) -> None:
    client: Any = replica.client
    if client is None or not hasattr(client, "set_epoch"):
        raise RuntimeError(f"{replica.name}: no remote handle to set its epoch on")
    await client.set_epoch(epoch, timeout)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("layout change not pushed: %s", task.exception())
