"""Replica catch-up: what a replica applied after a seq (`changes_since`), and applying a
peer's changes (`apply_changes`), so a replica that missed writes copies them from a peer.

A row's change is its latest state (a tombstone, or its vector, metadata and document) under
the seq that wrote it; pages end on whole seqs, so a batch is never half-applied. These are
ShardEngine's (shard/engine.py) parts: `apply_changes` runs under its write mutex and changes
its state only through `ShardEngine._apply`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shardvec.contract.errors import DataLoss, InvalidArgument
from shardvec.contract.settings import IndexSettings
from shardvec.contract.types import Change
from shardvec.contract.validation import (
    check_int,
    validate_ids,
    validate_metadatas,
    validate_vectors,
)
from shardvec.shard.checkpoint import remove_manifest
from shardvec.shard.engine_state import EngineState
from shardvec.shard.store_rows import (
    decode_metadata,
    decode_vector,
    encode_metadata,
    encode_vectors,
)


def changes_since(eng: EngineState, seq: int, limit: int) -> tuple[list[Change], int]:
    """Rows and tombstones with seq > `seq`, ascending, at most `limit` (one seq's rows are
    never split across pages), and the replica's applied_seq at read time."""
    try:
        rows, applied = eng._store.changes_since(seq, limit)
    except DataLoss as exc:
        eng.mark_damaged(exc.message)
        raise
    out = [
        Change(r.id, r.seq, None, None, True)
        if r.deleted
        else Change(
            r.id, r.seq, decode_vector(r.vector), decode_metadata(r.metadata), False, r.document,
            r.expires_at or 0.0,
        )
        for r in rows
    ]
    return out, applied


@dataclass(frozen=True)
class Latest:
    """A peer's page of changes, checked: each id's latest change, the live ones among them
    with their vectors ((n, dim) float32) and metadata objects."""

    latest: dict[str, Change]
    live: list[Change]
    vectors: npt.NDArray[np.float32] | None
    metadatas: list[dict[str, Any]]


def check_changes(changes: Sequence[Change], settings: IndexSettings) -> Latest:
    """Each id's latest change, its ids, vectors and metadata checked (InvalidArgument)."""
    latest: dict[str, Change] = {}
    for c in changes:
        if not isinstance(c, Change):
            raise InvalidArgument(f"changes: expected Change, got {type(c).__name__}")
        check_int("change seq", c.seq, 1, 2**63 - 1)
        if c.id not in latest or c.seq >= latest[c.id].seq:
            latest[c.id] = c
    if latest:
        validate_ids(list(latest))
    live = [c for c in latest.values() if not c.deleted]
    vecs = None
    if live:
        if any(c.vector is None for c in live):
            raise InvalidArgument("changes: a live change has no vector")
        stacked = np.stack([np.asarray(c.vector) for c in live])
        vecs = validate_vectors(stacked, settings.dim, settings.metric, field="changes.vector")
    mds = validate_metadatas([c.metadata or {} for c in live], len(live), field="changes.metadata")
    return Latest(latest, live, vecs, mds)


def apply_changes(eng: EngineState, changes: Latest, up_to_seq: int) -> None:
    """Apply a peer's rows' latest states, each only if newer than this replica's state of
    that id, in one transaction, then raise applied_seq to `up_to_seq` (under the write
    mutex)."""
    latest, live, vecs, mds = changes.latest, changes.live, changes.vectors, changes.metadatas
    local = eng._store.seqs_of(list(latest))
    fresh = {rid for rid, c in latest.items() if c.seq > local.get(rid, 0)}
    up_idx = [i for i, c in enumerate(live) if c.id in fresh]
    up_ids = [live[i].id for i in up_idx]
    dels = [c for c in latest.values() if c.deleted and c.id in fresh]
    new_seq = up_to_seq if up_to_seq > eng.applied_seq else None
    if not up_ids and not dels and new_seq is None:
        return
    up_vecs = vecs[up_idx] if vecs is not None else None
    up_mds = [mds[i] for i in up_idx]
    up_docs = [live[i].document or None for i in up_idx]
    up_expires = [float(live[i].expires_at or 0.0) for i in up_idx]
    if any(latest[r].seq <= eng._checkpoint_seq for r in up_ids):
        remove_manifest(eng.directory)  # replay by seq would miss these rows
    plan = eng._slots.plan(up_ids, [c.id for c in dels])
    up_texts = encode_metadata(up_mds)
    upserts = zip(
        up_ids,
        plan.up_slots,
        [live[i].seq for i in up_idx],
        encode_vectors(up_vecs) if up_vecs is not None else [],
        up_texts,
        up_docs,
        [e or None for e in up_expires],
        strict=True,
    )
    eng._store.write(
        new_seq,
        upserts=upserts,
        tombstones=[(c.id, c.seq) for c in dels],
        unstage_upto=new_seq,
    )
    if new_seq is not None:  # a staged batch at or below it is applied or obsolete
        eng._staged = {s: b for s, b in eng._staged.items() if s > new_seq}
    eng._apply(
        plan, up_ids, up_vecs, up_mds, up_texts, new_seq or 0, up_docs, None,
        up_expires if any(up_expires) else None, [live[i].seq for i in up_idx],
    )
