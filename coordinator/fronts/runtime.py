"""A front's read state: the collections as the views the coordinator pushed say, with a
shard client per replica (closed a while after no view names it)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from shardvec.contract.errors import (
    FailedPrecondition,
    NotFound,
    Unavailable,
)
from shardvec.contract.validation import validate_collection_name
from shardvec.coordinator.aliases import AliasMap
from shardvec.coordinator.fronts.publish import CollectionView, PushedReplica
from shardvec.coordinator.queries.reads import CollectionReads, ShardTimer
from shardvec.coordinator.replicas.replica_set import Replica, ReplicaSet, ReplicaState
from shardvec.coordinator.replicas.shard_client import RemoteShard

log = logging.getLogger(__name__)

CLIENT_LINGER_S = 30.0  # a replica handle no view uses is closed this long after


class PushedControl:
    """A front replica's control: the coordinator controls replicas, a front only reads; it
    knows what the last view said of the replica."""

    def __init__(self, pushed: PushedReplica, client: RemoteShard | None) -> None:
        self._pushed = pushed
        self._client = client

    async def address(self) -> str:
        if not self._pushed.address:
            raise Unavailable("replica has no address in the pushed layout")
        return self._pushed.address

    def client(self, name: str, address: str) -> Any:
        return self._client

    async def describe(self) -> dict[str, Any]:
        p = self._pushed
        return {"applied_seq": p.applied_seq, "count": p.count, "pid": p.pid,
                "node_id": p.node_id}  # fmt: skip

    async def catch_up(self, peer: Any) -> int:
        raise FailedPrecondition("a query front does not control replicas")

    async def repair(self) -> None:
        raise FailedPrecondition("a query front does not control replicas")

    async def close(self) -> None:
        return None


class FrontReplicaSet(ReplicaSet):
    """A shard's replicas as a front reads them: LIVE ones on the front's node first, then
    the others (each group round-robin); a replica that fails is left out until the next
    view (the coordinator recovers it)."""

    def __init__(self, shard: int, replicas: list[Replica], node_id: str) -> None:
        super().__init__(shard, replicas)  # no sequence numbers: it only reads
        self.node_id = node_id

    def read_order(self, candidates: list[Replica]) -> list[Replica]:
        return prefer_local(candidates, self.node_id, self._next_turn())

    def _next_turn(self) -> int:
        self._rr += 1
        return self._rr - 1

    def mark_dead(self, replica: Replica, why: str = "") -> None:
        replica.set_state(ReplicaState.DEAD, why)


def prefer_local(candidates: list[Replica], node_id: str, turn: int) -> list[Replica]:
    """`candidates` with those on `node_id` first, each group rotated by `turn`."""
    local = [r for r in candidates if r.node_id == node_id]
    rest = [r for r in candidates if r.node_id != node_id]

    def rotate(group: list[Replica]) -> list[Replica]:
        if not group:
            return group
        i = turn % len(group)
        return group[i:] + group[:i]

    return rotate(local) + rotate(rest)


class FrontRuntime:
    """The collections as the last view of each says (a ReadRuntime,
    coordinator/queries/read_runtime.py)."""

    def __init__(
        self, node_id: str, token: str, *, stream: bool = True,
        on_shard_search: ShardTimer | None = None,
    ) -> None:  # fmt: skip
        self.node_id = node_id
        self.token = token
        self.stream = stream
        self.on_shard_search = on_shard_search
        self.collections: dict[str, CollectionReads] = {}
        self.views: dict[str, CollectionView] = {}
        self.aliases = AliasMap()  # as the coordinator pushed them
        self._clients: dict[str, RemoteShard] = {}
        self._closing: set[asyncio.Future[None]] = set()

    def epoch(self, name: str) -> int:
        view = self.views.get(name)
        return view.epoch if view else 0

    def apply(self, name: str, view: CollectionView | None) -> bool:
        """Take collection `name`'s view (None: dropped); an older one than held is ignored.
        Returns whether it was taken."""
        if view is None:
            self.views.pop(name, None)
            self.collections.pop(name, None)
            self._linger()
            return True
        held = self.views.get(name)
        if held is not None and held.uid == view.uid and held.epoch >= view.epoch:
            return False
        self.collections[name] = self._build(view)
        self.views[name] = view
        self._linger()
        return True

    def replace_all(self, views: dict[str, CollectionView]) -> None:
        """Take a pull's views: every collection as published, the others dropped."""
        for name in [n for n in self.views if n not in views]:
            self.apply(name, None)
        for name, view in views.items():
            self.apply(name, view)

    def _build(self, view: CollectionView) -> CollectionReads:
        spec = view.spec
        sets: list[ReplicaSet] = []
        for shard, reps in enumerate(view.shards):
            replicas = []
            for p in reps:
                client = self._client(f"{spec.name}/shard-{shard}/replica-{p.index}", p.address)
                fenced = client.with_epoch(view.epoch) if client is not None else None
                r = Replica(shard, p.index, PushedControl(p, fenced), spec.name)
                r.client = fenced
                r.node_id, r.pid, r.count, r.applied_seq = p.node_id, p.pid, p.count, p.applied_seq
                r.fault = p.fault
                r.state = p.state if fenced is not None else ReplicaState.DEAD
                replicas.append(r)
            sets.append(FrontReplicaSet(shard, replicas, self.node_id))
        col = CollectionReads(spec, sets, self.on_shard_search, view.layout)
        col.tuned = view.tuned  # the coordinator's tuned breadth, for searches without ef
        # The coordinator's read rule (coordinator/queries/read_view.py): shards that may hold
        # rows they do not own answer only for their own buckets.
        col.publish_view(foreign=view.foreign)
        return col

    def _client(self, name: str, address: str) -> RemoteShard | None:
        if not address:
            return None
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = RemoteShard(
                name, address, self.token, stream=self.stream
            )
        return client

    def _linger(self) -> None:
        """Close, after CLIENT_LINGER_S (reads of the older view may still use them), the
        replica handles no view names any more."""
        used = {a for v in self.views.values() for a in v.addresses()}
        for address in [a for a in self._clients if a not in used]:
            client = self._clients.pop(address)

            async def close_later(c: RemoteShard = client) -> None:
                await asyncio.sleep(CLIENT_LINGER_S)
                await c.close()

            task = asyncio.ensure_future(close_later())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def set_aliases(self, aliases: AliasMap) -> bool:
        """Take the coordinator's alias map unless a newer one is held; whether taken."""
        if aliases.version < self.aliases.version:
            return False
        self.aliases = aliases
        return True

    def get(self, name: str) -> CollectionReads:
        validate_collection_name(name)
        name = self.aliases.resolve(name)  # the coordinator's rule (coordinator/aliases.py)
        col = self.collections.get(name)
        if col is None:
            raise NotFound(f"collection {name!r} does not exist")
        return col

    def served(self) -> list[str]:
        return sorted(self.collections)

    def uid(self, name: str) -> bytes:
        return self.views[name].uid

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
