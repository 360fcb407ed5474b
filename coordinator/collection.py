"""One collection on the coordinator: its reads (coordinator/queries/reads.py) and its writes,
routed to shards by the layout and applied as atomic batches.

It speaks to replicas only through the shard interface (shardvec.contract.shard_api), in
domain types: it knows neither the wire nor the engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shardvec.contract.buckets import bucket_of
from shardvec.contract.filters import Filter
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.types import (
    ShardUpdate,
    ShardWrite,
)
from shardvec.coordinator.layout import Layout
from shardvec.coordinator.queries.reads import CollectionReads, ShardTimer
from shardvec.coordinator.replicas.replica_set import ReplicaSet
from shardvec.coordinator.writes.atomic import AtomicWriter, Decisions, Rerouted
from shardvec.coordinator.writes.group_commit import WriteCombiner


@dataclass(frozen=True)
class UpdateOutcome:
    """An Update's result across shards: rows changed, ids not found (request order) and
    rows inserted (upsert_missing)."""

    updated: int
    missing_ids: list[str]
    inserted: int


class CollectionRuntime(CollectionReads):
    """A collection on the coordinator: its reads (CollectionReads) and its write path, which
    routes writes to shards by the layout and applies them as atomic batches."""

    def __init__(
        self,
        spec: CollectionSpec,
        shard_sets: list[ReplicaSet],
        decisions: Decisions,
        on_shard_search: ShardTimer | None = None,
        layout: Layout | None = None,
    ) -> None:
        super().__init__(spec, shard_sets, on_shard_search, layout)
        # During a resharding (coordinator/changes/resharding.py): bucket -> the new owner its
        # writes also go to once its rows are copied (-1: none).
        self.dual: np.ndarray | None = None
        self.snapshots = 0  # CreateSnapshot calls running (no layout change starts meanwhile)
        # Grows at every change of where writes go (AtomicWriter's Rerouted): a layout
        # change's start, switch and end, and changes of the shard list.
        self.route_epoch = 0
        self.atomic = AtomicWriter(spec.name, shard_sets, decisions, lambda: self.route_epoch)
        self.writes = WriteCombiner(self.atomic.apply)

    def reroute(self) -> None:
        """Record a change of where writes go (call under the write locks it concerns)."""
        self.route_epoch += 1

    def route_dual(self, dual: np.ndarray | None) -> None:
        """Send writes of moving buckets to their new owners too (`dual`: bucket -> new owner,
        -1 for none), or stop (None). Call under every shard's write lock."""
        self.dual = dual
        self.reroute()

    def switch_layout(self, spec: CollectionSpec, layout: Layout, foreign: frozenset[int]) -> None:
        """A layout change's switch: the new spec and layout route writes and serve reads,
        `foreign` (the givers, until the cleanup) masked. Call under every write lock."""
        self.spec, self.dual = spec, None
        self.reroute()
        self.publish_view(layout, foreign)

    def owned_masks(self, shards: Sequence[int]) -> dict[int, np.ndarray] | None:
        """Per shard the buckets whose rows a write's acks count (the layout's owner's): None
        unless a layout change may have put rows on shards that do not own them."""
        if self.dual is None and not self.foreign:
            return None
        owners = self.layout.owners
        return {s: owners == s for s in shards}

    def route(self, ids: Sequence[str]) -> dict[int, np.ndarray]:
        """Row indices of `ids` for each shard a write of them goes to: the layout's owner and,
        for a bucket being moved whose rows are already copied, its new owner too."""
        parts = {s: rows for s, rows in enumerate(self.layout.partition(ids)) if len(rows)}
        dual = self.dual
        if dual is None or not len(ids):
            return parts
        buckets = np.fromiter((bucket_of(i) for i in ids), dtype=np.int64, count=len(ids))
        extra = dual[buckets]
        for target in np.unique(extra[extra >= 0]).tolist():
            rows = np.flatnonzero(extra == target)
            mine = parts.get(target)
            parts[target] = rows if mine is None else np.union1d(mine, rows)
        return parts

    async def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata_json: Sequence[str],
        deadline: float,
        documents: Sequence[str] = (),
        decide_by: float | None = None,
        expires_at: Sequence[float] = (),
    ) -> int:
        """Route rows to their shards and apply them as one atomic batch (joining the
        collection's group commit): every row lands, or, when the call fails, none does.
        `decide_by`: abort unless committed by then (the caller's own deadline);
        `expires_at`: each row's absolute expiry (0.0: never), or empty: none expires."""
        while True:
            epoch = self.route_epoch
            try:
                await self.writes.write(
                    self._upserts(ids, vectors, metadata_json, documents, expires_at), deadline,
                    decide_by=decide_by, epoch=epoch,
                )
                return len(ids)
            except Rerouted:
                continue  # a resharding step moved buckets meanwhile: route again

    def _upserts(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadata_json: Sequence[str],
        documents: Sequence[str],
        expires_at: Sequence[float] = (),
    ) -> dict[int, ShardWrite]:
        parts = self.route(ids)
        meta = list(metadata_json)
        docs = list(documents)
        expires = list(expires_at)
        writes: dict[int, ShardWrite] = {}
        for shard, rows in parts.items():
            rows_l = rows.tolist()
            writes[shard] = ShardWrite(
                ids=[ids[i] for i in rows_l],
                vectors=vectors[rows],
                metadata_json=[meta[i] for i in rows_l] if meta else [],
                documents=[docs[i] for i in rows_l] if docs else [],
                expires_at=[expires[i] for i in rows_l] if expires else [],
            )
        return writes

    async def update(
        self, request: ShardUpdate, deadline: float, decide_by: float | None = None
    ) -> UpdateOutcome:
        """Route an Update's rows to their shards and apply it as one atomic batch, like an
        upsert: each shard stages its part (checking it against its rows: a merged metadata
        object past the limit refuses the stage, so nothing is applied anywhere) and changes
        the rows in place at commit, under the batch's seq, so catch-up copies it."""
        while True:
            epoch = self.route_epoch
            try:
                return await self._update(request, deadline, decide_by, epoch)
            except Rerouted:
                continue

    async def _update(
        self, request: ShardUpdate, deadline: float, decide_by: float | None, epoch: int
    ) -> UpdateOutcome:
        id_list = request.ids
        parts = self.route(id_list)
        writes: dict[int, ShardWrite] = {}
        for shard, rows in parts.items():
            r = rows.tolist()
            writes[shard] = ShardWrite(
                update=ShardUpdate(
                    ids=[id_list[i] for i in r],
                    metadata_json=[request.metadata_json[i] for i in r]
                    if request.metadata_json
                    else [],
                    documents=[request.documents[i] for i in r] if request.documents else [],
                    replace_metadata=request.replace_metadata,
                    upsert_missing=request.upsert_missing,
                    vectors=request.vectors[rows] if request.vectors is not None else None,
                    max_metadata_bytes=request.max_metadata_bytes,
                    reembed=request.reembed,
                    expires_at=[request.expires_at[i] for i in r] if request.expires_at else [],
                    insert_expires_at=request.insert_expires_at,
                    accepted_at=request.accepted_at,
                )
            )
        writes = _counting(writes, self.owned_masks(list(writes)))
        acked = await self.atomic.apply_acks(writes, deadline, decide_by, epoch)
        acks = list(acked.values())  # each counts only its own rows (owned_masks)
        missing = {i for a in acks for i in a.missing_ids}
        inserted = sum(a.inserted for a in acks)
        return UpdateOutcome(
            updated=sum(a.affected for a in acks) - inserted,
            missing_ids=[i for i in id_list if i in missing],
            inserted=inserted,
        )

    async def apply_atomic(
        self, writes: dict[int, ShardWrite], deadline: float, decide_by: float | None = None
    ) -> int:
        """Apply per-shard row changes (upserts and tombstones) as one atomic batch, in their
        place among the collection's other writes; returns the rows affected. (Routed by the
        caller: not for use during a resharding, which RestoreSnapshot, its one caller, never
        runs beside.)"""
        affected = await self.writes.write(
            writes, deadline, combinable=False, decide_by=decide_by
        )
        return sum(affected.values())

    async def delete(
        self,
        ids: Sequence[str] | None,
        where: Filter | None,
        deadline: float,
        decide_by: float | None = None,
    ) -> int:
        """Tombstone rows by id or by filter on every shard they live on, atomically."""
        while True:
            epoch = self.route_epoch
            try:
                return await self._delete(ids, where, deadline, decide_by, epoch)
            except Rerouted:
                continue

    async def _delete(
        self,
        ids: Sequence[str] | None,
        where: Filter | None,
        deadline: float,
        decide_by: float | None,
        epoch: int,
    ) -> int:
        if where is not None:
            writes = {
                s: ShardWrite(delete_where=where) for s in range(len(self.shard_sets))
            }
        else:
            id_list = list(ids or [])
            writes = {
                s: ShardWrite(delete_ids=[id_list[i] for i in rows.tolist()])
                for s, rows in self.route(id_list).items()
            }
        writes = _counting(writes, self.owned_masks(list(writes)))
        affected = await self.writes.write(
            writes, deadline, combinable=False, decide_by=decide_by, epoch=epoch
        )
        return sum(affected.values())  # each shard counts only its own rows (owned_masks)


def _counting(
    writes: dict[int, ShardWrite], owned: dict[int, np.ndarray] | None
) -> dict[int, ShardWrite]:
    if owned is None:
        return writes
    return {s: dataclasses.replace(w, owned=owned[s]) for s, w in writes.items()}

