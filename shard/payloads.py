"""Metadata texts and documents of a replica's rows read from its store, for a collection
created with `payload_on_disk` (shard/rowdata.py then holds none of them in memory).

Search hits with include_metadata / include_documents read the hits' rows from the store by
slot (`Store.payloads_at`, one statement per batch of hits, checksums checked), and a
where_document test runs as SQL instr() over the candidate slots, or over every row when more
than 1/8 of the slots are candidates (`Store.documents_holding`), as shard/documents.py
chooses for the in-memory documents.

Which version of a row. The store commits a batch before the engine applies it in memory
(shard/row_vectors.py), so under the index's read lock the store may be ahead of memory by the
one batch being applied: a slot there may hold another id, or a newer version of the same id.
A version is named by (id, seq): a batch writes an id at most once and the seqs of one shard
are assigned once by the coordinator (a peer's rows keep theirs in catch-up). RowData keeps
each slot's seq (8 bytes a row), so a store row is the one memory holds exactly when its id
is the slot's id in memory and its seq the slot's seq. Every other slot is stale: the read
raises `StaleRow`, its caller releases the read lock (the lock prefers writers, so the batch
being applied goes in first) and reads again, at most READ_TRIES times. The last try
(`settle`), which a steady stream of batches over the same rows can reach, reads a stale
slot's row by its in-memory id instead: the newest committed version of that same id (never
another id's), and a row that batch deleted counts as a tombstone, with no metadata and no
document (a hit returns "" for both, $contains fails, $not_contains passes).

A where_document test first tries the quick way: when no write of rows has begun since memory
last caught up with the store (the store's generation, bumped before and after every write of
rows, is the one the engine recorded at its last apply, before and after the statement), every
store row is the version memory holds, and SQL returns only the slots whose document holds
the text. Otherwise it reads every candidate's (id, seq) with the test and compares them.

Keyword search reads its postings in one store snapshot and drops any hit whose slot holds
another id there than in memory (shard/keyword_search.py); it passes that snapshot here, and
a hit's payload and a document test are those of the snapshot's row of the same id: the
version it scored, the one memory holds or the newest committed one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from shardvec.contract.errors import DataLoss
from shardvec.shard.documents import SCAN_FRACTION, Slots
from shardvec.shard.engine_state import EngineState, store_is_memory

# Tries of a read that meets a row the store holds newer than memory (hit payloads on disk;
# hit vectors under cosine, shard/row_vectors.py): each try after the first lets the batch
# being applied in first. Under a steady stream of batches over the hits
# (tests/unit/test_collection_runtime.py's churn: about one try in seven meets one on a loaded
# 2-core box) three tries left one search in a few hundred to the last try's fallback.
READ_TRIES = 8

T = TypeVar("T")
Texts = npt.NDArray[np.object_]


class StaleRow(Exception):
    """A slot read from the store holds another version of its row than memory: read again
    once the batch being applied is in (module docstring)."""


def read_locked(eng: EngineState, read: Callable[[bool], T]) -> T:
    """`read(settle)` under the index's read lock, again after a StaleRow (the lock let go
    in between), the last try with settle=True: every read that may meet a row the store
    holds newer than memory (searches, counts, group-by) retries through here."""
    for attempt in range(READ_TRIES):
        with eng._index.lock.read():
            try:
                return read(attempt == READ_TRIES - 1)
            except StaleRow:
                continue
    raise AssertionError("unreachable: the last try settles")


def _damaged(eng: EngineState, exc: DataLoss) -> DataLoss:
    eng.mark_damaged(exc.message)
    return exc


def hit_payloads(
    eng: EngineState,
    labels: npt.NDArray[np.int64],
    metadata: bool,
    documents: bool,
    settle: bool,
    db: sqlite3.Connection | None = None,
) -> tuple[Texts | None, Texts | None]:
    """The metadata texts and documents of hits `labels` (any shape; "" where -1), each None
    when not asked for; from RowData in memory, or from the store (module docstring: raises
    StaleRow for a slot the store holds another version of, unless `settle` or `db`). The
    caller holds the index's read lock."""
    rows = eng._rows
    if not rows.on_disk:
        return (
            rows.texts(labels) if metadata else None,
            rows.documents(labels) if documents else None,
        )
    if not (metadata or documents):
        return None, None
    flat = labels.ravel()
    slots = np.unique(flat[flat >= 0])
    try:
        stored = eng._store.payloads_at(slots.tolist(), db)
    except DataLoss as exc:
        raise _damaged(eng, exc) from exc
    ids = eng._slots.slot_to_id
    got: dict[int, tuple[str, str]] = {}
    stale: list[int] = []
    for slot, seq in zip(slots.tolist(), rows.seqs(slots).tolist(), strict=True):
        row = stored.get(slot)
        if row is not None and row[0] == ids[slot] and (db is not None or row[1] == seq):
            got[slot] = (row[2] or "", row[3] or "")
        else:
            stale.append(slot)
    if stale:
        if not settle and db is None:
            raise StaleRow
        got.update(_newest(eng, stale))
    texts = np.full(flat.shape, "", dtype=object)
    docs = np.full(flat.shape, "", dtype=object)
    for i, slot in enumerate(flat.tolist()):
        if slot >= 0:
            texts[i], docs[i] = got[slot]
    return (
        texts.reshape(labels.shape) if metadata else None,
        docs.reshape(labels.shape) if documents else None,
    )


def _newest(eng: EngineState, slots: Sequence[int]) -> dict[int, tuple[str, str]]:
    """The newest committed metadata text and document of the rows memory holds at `slots`,
    read by their ids ("" and "" for a row deleted since)."""
    ids = eng._slots.slot_to_id
    try:
        by_id = eng._store.get_rows(
            [ids[s] for s in slots], vectors=False, metadata=True, documents=True
        )
    except DataLoss as exc:
        raise _damaged(eng, exc) from exc
    out: dict[int, tuple[str, str]] = {}
    for slot in slots:
        row = by_id.get(ids[slot])
        out[slot] = ("", "") if row is None else (row.metadata or "", row.document or "")
    return out


class StoredDocuments:
    """The documents of a replica's slots [0, n_slots) as where_document tests read them from
    the store (shard/documents.py's `Documents` reads them from memory)."""

    def __init__(
        self, eng: EngineState, n_slots: int, settle: bool, db: sqlite3.Connection | None
    ) -> None:
        self.eng = eng
        self.n_slots = n_slots
        self.settle = settle
        self.db = db

    def contains(self, needle: str, cand: Slots) -> npt.NDArray[np.bool_]:
        """Per slot of `cand` (ascending, live in memory): whether the document of the row
        version memory holds there contains `needle` (module docstring for stale slots)."""
        eng, n = self.eng, self.n_slots
        every = len(cand) * SCAN_FRACTION > n
        if "\x00" not in needle and self.db is None:
            quick = self._quick(needle, None if every else cand)
            if quick is not None:
                return quick[cand]
        try:
            if "\x00" in needle:  # tested in Python: instr() and NUL do not mix
                stored = eng._store.payloads_at(cand.tolist(), self.db)
                found = [(s, r[0], r[1], int(needle in (r[3] or ""))) for s, r in stored.items()]
            else:
                found = eng._store.documents_holding(
                    needle, None if every else cand.tolist(), self.db
                )
        except DataLoss as exc:
            raise _damaged(eng, exc) from exc
        hit = np.zeros(n, dtype=np.bool_)
        known = np.zeros(n, dtype=np.bool_)
        if found:
            cols = list(zip(*found, strict=True))
            slots = np.asarray(cols[0], dtype=np.int64)
            inside = slots < n
            slots = slots[inside]
            ids = np.asarray(cols[1], dtype=object)[inside]
            same = np.asarray(ids == eng._slots.slot_to_id[slots], dtype=np.bool_)
            if self.db is None:  # the version memory holds (a snapshot's row is taken)
                seqs = np.asarray(cols[2], dtype=np.int64)[inside]
                same &= seqs == eng._rows.seqs(slots)
            holds = np.asarray(cols[3], dtype=np.bool_)[inside]
            hit[slots[same]] = holds[same]
            known[slots[same]] = True
        unknown = cand[~known[cand]]
        if len(unknown) and self.db is None:  # with a snapshot, keyword search drops them
            if not self.settle:
                raise StaleRow
            newest = _newest(eng, unknown.tolist())
            hit[unknown] = [needle in newest[s][1] for s in unknown.tolist()]
        return hit[cand]

    def _quick(self, needle: str, cand: Slots | None) -> npt.NDArray[np.bool_] | None:
        """A mask over the slots holding `needle`, read as only the slots whose document
        holds it, when no write of rows has begun since memory last caught up with the store
        (its generation, bumped before and after every write of rows, is where memory left
        it before and after the statement): then every store row is the version memory holds.
        None otherwise (the caller compares each row's id and seq)."""
        store, eng = self.eng._store, self.eng
        gen = store.generation
        if not store_is_memory(eng, gen):
            return None
        try:
            found = store.documents_holding(
                needle, None if cand is None else cand.tolist(), hits_only=True
            )
        except DataLoss as exc:
            raise _damaged(eng, exc) from exc
        if not store_is_memory(eng, gen):
            return None
        hit = np.zeros(self.n_slots, dtype=np.bool_)
        slots = np.asarray([f[0] for f in found], dtype=np.int64)
        hit[slots[slots < self.n_slots]] = True
        return hit
