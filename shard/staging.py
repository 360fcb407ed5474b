"""Atomic writes of one replica, in two phases: a batch is staged (kept durably, invisible to
reads) and later committed or dropped by the coordinator's decision.

This module holds the disk-space check made before staging, the planning of an Update against
the stored rows (`UpdatePlan`, `plan_update`) and the two phases themselves (`stage`,
`resolve`); the staged batch's format is shard/staged_batch.py. They are ShardEngine's
(shard/engine.py) parts: the engine calls them holding its write mutex, and they change its
state only through `ShardEngine._apply`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shardvec.contract.buckets import bucket_of
from shardvec.contract.codec import loads_json
from shardvec.contract.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from shardvec.contract.limits import MAX_METADATA_BYTES
from shardvec.contract.shard_requests import RowBatch
from shardvec.contract.sqlite_errors import map_storage_error
from shardvec.contract.types import ShardUpdate, WriteAck
from shardvec.contract.validation import check_metadata_size
from shardvec.shard.engine_state import EngineState
from shardvec.shard.reads import mask_of
from shardvec.shard.slots import SlotTable
from shardvec.shard.staged_batch import Staged, StagedUpdate, Updated
from shardvec.shard.store import Store
from shardvec.shard.store_rows import (
    StagedRows,
    decode_metadata,
    encode_metadata,
    encode_vectors,
)

log = logging.getLogger(__name__)

# A batch is staged only with this many times its size free on the replica's disk (plus
# STAGE_SPACE_MIN_BYTES): the staged copy, its move into `rows` and the WAL frames of both,
# so a batch that could be staged can almost always be committed too.
STAGE_SPACE_FACTOR = 4
STAGE_SPACE_MIN_BYTES = 1 << 20


@dataclass(frozen=True)
class UpdatePlan:
    """One shard's part of an Update as the engine takes it (checked by the caller): per id,
    a metadata object to merge (or, with replace_metadata, to store) or None, a document or
    None (None: that part unchanged); with upsert_missing, ids not held are inserted from
    `vectors` ((n, dim) float32, one row per id)."""

    ids: list[str]
    metadatas: list[dict[str, Any] | None]
    documents: list[str | None]
    replace_metadata: bool = False
    upsert_missing: bool = False
    vectors: npt.NDArray[np.float32] | None = None
    max_metadata_bytes: int = MAX_METADATA_BYTES
    # `vectors` also holds the new vector of each row whose document is given: such a row is
    # rewritten whole (an upsert of its merged metadata, new document and new vector).
    reembed: bool = False
    # Per id the new absolute expiry (0.0: never), or None: each row keeps its own; rows that
    # upsert_missing inserts take `insert_expires_at` then (the collection default, 0.0: none).
    expires_at: list[float] | None = None
    insert_expires_at: float = 0.0
    # The coordinator's clock at acceptance (0.0: this replica's): a row expired by then is
    # missing, judged alike on every replica (the sweep waits SWEEP_GRACE_S past an expiry).
    accepted_at: float = 0.0


def stage(eng: EngineState, seq: int, batch: RowBatch | UpdatePlan) -> int:
    """Phase one (ShardEngine.stage, under the write mutex): plan the batch, check the disk
    has room, keep it in the store and in `eng._staged`; returns the bytes staged."""
    if seq <= eng.applied_seq:
        raise FailedPrecondition(
            f"stage: seq {seq} is not above this replica's applied seq {eng.applied_seq}"
        )
    dim = eng.settings.dim
    staged_update = None
    delete_where = None
    deletes: list[str] = []
    expires: list[float] | None
    if isinstance(batch, UpdatePlan):
        ids, vectors, metadatas, documents, staged_update, expires = plan_update(
            batch, eng._slots, eng._store, dim
        )
    else:
        ids, vectors, metadatas, documents, expires = (
            batch.ids, batch.vectors, batch.metadatas, batch.documents, batch.expires_at
        )
        delete_where, deletes = batch.delete_where, list(batch.delete_ids)
    if expires is not None and not any(expires):
        expires = None  # no row of the batch expires: it costs nothing
    vecs = np.ascontiguousarray(vectors, dtype="<f4").reshape(len(ids), dim)
    texts = encode_metadata(metadatas)
    docs: list[str | None] = [None] * len(ids)
    if documents:
        docs = [d or None for d in documents]
    if delete_where is not None:
        mask = mask_of(eng, delete_where)  # the write mutex: the store is memory
        deletes = eng._slots.slot_to_id[np.flatnonzero(mask)].tolist()
    blob = vecs.tobytes()
    rows = StagedRows(
        seq,
        json.dumps(list(ids)),
        blob,
        json.dumps(texts, ensure_ascii=False),
        json.dumps(deletes),
        json.dumps(docs, ensure_ascii=False) if any(docs) else None,
        staged_update.to_json() if staged_update is not None else None,
        json.dumps(expires) if expires is not None else None,
    )
    texts_json = (
        rows.ids_json,
        rows.metadata_json,
        rows.deletes_json,
        rows.documents_json,
        rows.updates_json,
        rows.expires_json,
    )
    size = len(blob) + sum(len(t or "") for t in texts_json)
    check_space(eng.directory, size)
    eng._store.stage(rows)
    eng._staged = {s: b for s, b in eng._staged.items() if s > seq}
    eng._staged[seq] = Staged(
        seq,
        list(ids),
        vecs.astype(np.float32),
        list(metadatas),
        texts,
        deletes,
        docs,
        staged_update,
        expires,
    )
    return size


def plan_update(
    u: UpdatePlan, slots: SlotTable, store: Store, dim: int
) -> tuple[
    list[str],
    npt.NDArray[np.float32],
    list[dict[str, Any]],
    list[str | None],
    StagedUpdate,
    list[float] | None,
]:
    """An update checked against the stored rows (under the write mutex): the upserts it
    makes (upsert_missing ids not held) with their expiries, and what it changes in place at
    commit. Refused (InvalidArgument naming the row) when an upsert_missing id not held has no
    vector or a merged metadata object passes its limit. An expired row is not held: an
    update finds it missing (upsert_missing inserts it afresh), as after the sweep."""
    n = len(u.ids)
    held = slots.id_to_slot
    expired = slots.expired(u.accepted_at or None)

    def holds(rid: str) -> bool:
        slot = held.get(rid)
        return slot is not None and (expired is None or not expired[slot])

    missing = [i for i, rid in enumerate(u.ids) if not holds(rid)]
    if missing and u.upsert_missing and u.vectors is None:
        rid = u.ids[missing[0]]
        raise InvalidArgument(
            f"ids[{missing[0]}]: {rid!r} is not in the collection; upsert_missing "
            f"inserts it, and needs its vector (vectors, one row per id)"
        )
    mds = list(u.metadatas) if u.metadatas else [None] * n
    docs = list(u.documents) if u.documents else [None] * n
    present = [i for i in range(n) if holds(u.ids[i])]
    # Rows whose new document comes with its new vector are rewritten whole, as upserts.
    rewrite = [i for i in present if u.reembed and docs[i] is not None]
    if rewrite and u.vectors is None:
        raise InvalidArgument("update: reembed without the documents' vectors")
    merging = [i for i in present if mds[i] is not None and not u.replace_metadata]
    keep = [i for i in rewrite if mds[i] is None]  # their stored metadata goes with them
    reading = merging + keep  # rows whose stored metadata the update needs
    stored = store.get_rows(
        [u.ids[i] for i in reading], vectors=False, metadata=True, documents=False
    ) if reading else {}
    merged: dict[int, dict[str, Any]] = {}
    for i in reading:
        row = stored.get(u.ids[i])
        old = decode_metadata(row.metadata) if row is not None else {}
        merged[i] = {**old, **(mds[i] or {})}
        if i in merging:
            check_metadata_size(
                merged[i], f"metadata_json[{i}] ({u.ids[i]!r} merged)", u.max_metadata_bytes
            )
    rewritten = set(rewrite)
    in_place = [i for i in present if i not in rewritten]
    ins = missing if u.upsert_missing else []
    ups = ins + rewrite
    ups_vecs = (
        np.ascontiguousarray(u.vectors[ups], dtype=np.float32)
        if ups and u.vectors is not None
        else np.empty((0, dim), dtype=np.float32)
    )
    staged = StagedUpdate(
        ids=[u.ids[i] for i in in_place],
        metadatas=[mds[i] for i in in_place],
        documents=[docs[i] for i in in_place],
        replace_metadata=u.replace_metadata,
        missing=[] if u.upsert_missing else [u.ids[i] for i in missing],
        inserted=len(ins),
        expires=[u.expires_at[i] for i in in_place] if u.expires_at is not None else None,
        accepted_at=u.accepted_at,
    )
    # Inserted rows take the update's expiry or the default; rewritten ones keep theirs.
    ups_expires = [
        u.expires_at[i] if u.expires_at is not None else u.insert_expires_at for i in ins
    ] + [
        u.expires_at[i] if u.expires_at is not None else _expiry_of(slots, held[u.ids[i]])
        for i in rewrite
    ]
    return (
        [u.ids[i] for i in ups],
        ups_vecs,
        [dict(mds[i] or {}) for i in ins] + [merged.get(i, mds[i] or {}) for i in rewrite],
        [docs[i] for i in ups],
        staged,
        ups_expires if any(ups_expires) else None,
    )


def _expiry_of(slots: SlotTable, slot: int) -> float:
    """The live row at `slot`'s absolute expiry (0.0: never)."""
    at = float(slots.expires[slot])
    return at if math.isfinite(at) else 0.0


def check_space(directory: Path, size: int) -> None:
    """Refuse (ResourceExhausted) a batch of `size` bytes the disk lacks room to stage and
    commit."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        raise map_storage_error(exc, f"replica directory {directory}") from exc
    need = STAGE_SPACE_FACTOR * size + STAGE_SPACE_MIN_BYTES
    if free < need:
        raise ResourceExhausted(
            f"replica directory {directory}: the disk is full: {free} bytes free, "
            f"a batch of {size} bytes needs {need} to be staged and committed; free space "
            "and retry"
        )


def resolve(
    eng: EngineState, seq: int, commit: bool, owned: npt.NDArray[np.bool_] | None
) -> WriteAck:
    """Phase two (ShardEngine.resolve, under the write mutex): commit staged batch `seq` or
    drop it."""
    batch = eng._staged.get(seq)
    if not commit or seq <= eng.applied_seq:
        if batch is not None:
            eng._store.unstage(seq)
            del eng._staged[seq]
        if commit:
            return WriteAck(False, 0, eng.applied_seq)
        return WriteAck(batch is not None, 0, eng.applied_seq)
    if batch is None:
        raise FailedPrecondition(
            f"commit: seq {seq} is not staged on this replica (applied seq {eng.applied_seq})"
        )
    slots = eng._slots
    up = set(batch.ids)
    targets = [i for i in batch.deletes if i in slots.id_to_slot and i not in up]
    plan = slots.plan(batch.ids, targets)
    rows = zip(
        batch.ids,
        plan.up_slots,
        [seq] * len(batch.ids),
        encode_vectors(batch.vectors),
        batch.texts,
        batch.documents,
        [e or None for e in batch.expires] if batch.expires else [None] * len(batch.ids),
        strict=True,
    )
    at = batch.update.accepted_at if batch.update is not None else 0.0
    changed, updates, missing = updated_rows(eng._store, seq, batch.update, at or slots.clock())
    eng._store.write(
        seq,
        upserts=rows,
        tombstones=[(r, seq) for r in targets],
        updates=updates,
        unstage_upto=seq,
    )
    eng._staged = {s: b for s, b in eng._staged.items() if s > seq}
    # `owned`: count by the slots' buckets; the deleted rows' before the batch can
    # hand their slots to new rows, the upserted and updated rows' after it. A deleted row
    # that had expired (invisible already) is tombstoned but not counted.
    del_slots = np.asarray(plan.del_slots, dtype=np.int64)
    expired = slots.expired()
    if expired is not None and len(del_slots):
        del_slots = del_slots[~expired[del_slots]]
    deleted = len(del_slots) if owned is None else owned_rows(slots, owned, del_slots)
    vecs = batch.vectors if batch.ids else None
    eng._apply(
        plan, batch.ids, vecs, batch.metadatas, batch.texts, seq, batch.documents, changed,
        batch.expires,
    )
    inserted = batch.update.inserted if batch.update is not None else 0
    if owned is None:
        affected = len(batch.ids) + deleted + len(changed.slots)
    else:
        upserted = owned_rows(slots, owned, plan.up_slots)
        if batch.update is not None:
            inserted = upserted  # an update's upserts are its inserted rows
        affected = upserted + deleted + owned_rows(slots, owned, changed.slots)
        missing = [i for i in missing if owned[bucket_of(i)]]
    return WriteAck(True, affected, eng.applied_seq, tuple(missing), inserted)


def owned_rows(
    table: SlotTable, owned: npt.NDArray[np.bool_], slots: Sequence[int] | npt.NDArray[np.int64]
) -> int:
    """How many of `slots` hold rows of the buckets `owned` marks."""
    return int(owned[table.bucket[np.asarray(slots, dtype=np.int64)]].sum())


def updated_rows(
    store: Store, seq: int, u: StagedUpdate | None, now: float
) -> tuple[Updated, list[tuple[int, str | None, str | None, str, float | None]], list[str]]:
    """The rows a staged update changes in place, from their stored state now (a row expired
    at `now` is not held): the in-memory change, the store's (seq, metadata, document, id,
    expires_at) rows, ids not held."""
    none = np.empty(0, dtype=np.int64)
    if u is None or not u.ids:
        return Updated(none, [], [], []), [], list(u.missing) if u else []
    stored = store.get_rows(u.ids, vectors=False, metadata=True, documents=True, now=now)
    missing = list(u.missing)
    ids: list[str] = []
    slots: list[int] = []
    mds: list[dict[str, Any]] = []
    docs: list[str | None] = []
    expires: list[float] = []
    new_expiry = u.expires if u.expires is not None else [None] * len(u.ids)
    for rid, md, doc, exp in zip(u.ids, u.metadatas, u.documents, new_expiry, strict=True):
        row = stored.get(rid)
        if row is None or row.slot is None:  # deleted (or expired) since it was staged
            missing.append(rid)
            continue
        old = decode_metadata(row.metadata)
        ids.append(rid)
        slots.append(int(row.slot))
        mds.append(old if md is None else dict(md) if u.replace_metadata else {**old, **md})
        docs.append(doc if doc is not None else row.document)
        expires.append(float(exp) if exp is not None else float(row.expires_at or 0.0))
    texts = encode_metadata(mds)
    updates = [
        (seq, t, d, rid, e or None)
        for rid, t, d, e in zip(ids, texts, docs, expires, strict=True)
    ]
    changed = Updated(np.asarray(slots, dtype=np.int64), mds, texts, docs, expires)
    return changed, updates, missing


def update_plan(u: ShardUpdate) -> UpdatePlan:
    """One shard's part of an Update (the wire form decoded: "" per row leaves that part
    unchanged) as the engine stages it; what the shard service and LocalShard both do."""
    n = len(u.ids)
    metadatas: list[dict[str, Any] | None] = [None] * n
    if u.metadata_json:
        for i, text in enumerate(u.metadata_json):
            if text:
                metadatas[i] = loads_json(text)
    vectors = None
    if u.vectors is not None:
        vectors = np.ascontiguousarray(u.vectors, dtype=np.float32)
    return UpdatePlan(
        ids=list(u.ids),
        metadatas=metadatas,
        documents=[d or None for d in u.documents] if u.documents else [None] * n,
        replace_metadata=u.replace_metadata,
        upsert_missing=u.upsert_missing,
        vectors=vectors,
        max_metadata_bytes=u.max_metadata_bytes or MAX_METADATA_BYTES,
        reembed=u.reembed,
        expires_at=[float(e) for e in u.expires_at] if len(u.expires_at) else None,
        insert_expires_at=float(u.insert_expires_at),
        accepted_at=float(u.accepted_at),
    )
