"""The reads of one replica: rows by id, counts, vector search and scroll pages.

Each read is one function of ShardEngine's (shard/engine.py) state, which the engine calls
after checking it is usable; the caller built the request and checked it (the contract
layer's conversions). The filters become one mask over the slots (`mask_of`): the routing
buckets' and the metadata columns' first, then the document substring tests over only the
slots those left. Every mask starts from the rows visible now (shard/slots.py `visible`:
live and not expired), so an expired row is invisible to every read from the moment it
expires; the reads served from the store (get, scroll) bound the same time in SQL.
Searches and filtered counts hold the index's read lock, so they see the
index, the slot table and the columns of one state. With `payload_on_disk` the documents a
filter tests and the payloads hits return are read from the store (shard/payloads.py), and a
read meeting a row the store holds newer than memory is read again (`read_locked`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from shardvec.contract.errors import DataLoss
from shardvec.contract.filters import DocFilter, Filter
from shardvec.contract.types import Record, ScrollPage, SearchResult, ShardScroll
from shardvec.shard.documents import Documents, DocumentTests, document_mask
from shardvec.shard.engine_state import EngineState
from shardvec.shard.payloads import StaleRow, StoredDocuments, hit_payloads, read_locked
from shardvec.shard.planner import drop_past_threshold
from shardvec.shard.row_vectors import RowVectors
from shardvec.shard.scroll_pages import scroll_page
from shardvec.shard.store_rows import decode_metadata, decode_vector


def mask_of(
    eng: EngineState,
    where: Filter | None,
    where_document: DocFilter | None = None,
    buckets: npt.NDArray[np.bool_] | None = None,
    *,
    settle: bool = True,
    db: sqlite3.Connection | None = None,
) -> npt.NDArray[np.bool_]:
    """Visible slots (live, not expired) of `buckets` passing both filters (None: no test);
    the bucket and metadata masks first, then the substring tests over only the slots they
    left (shard/documents.py). The caller holds the index lock or the write mutex. With the
    documents on disk, a row the store holds newer than memory raises StaleRow unless
    `settle` or `db` (a store snapshot, keyword search's): shard/payloads.py."""
    slots, columns = eng._slots, eng._columns
    n = slots.n_slots
    mask = slots.visible(buckets)
    if where is not None:
        mask &= columns.mask(where, n)
    if where_document is not None:
        docs: DocumentTests = (
            StoredDocuments(eng, n, settle, db) if eng._rows.on_disk else Documents(eng._rows, n)
        )
        mask = document_mask(where_document, docs, np.flatnonzero(mask), len(mask))
    return mask


def get(
    eng: EngineState,
    ids: Sequence[str],
    include_vectors: bool,
    include_metadata: bool,
    include_documents: bool,
) -> list[Record | None]:
    """Rows by id from the store (vectors as upserted), each with its expiry; None for
    missing, deleted or expired ids. A row failing its checksum marks the replica damaged."""
    try:
        rows = eng._store.get_rows(
            ids,
            vectors=include_vectors,
            metadata=include_metadata,
            documents=include_documents,
            now=eng._slots.clock(),
        )
    except DataLoss as exc:
        eng.mark_damaged(exc.message)
        raise
    out: list[Record | None] = []
    for rid in ids:
        row = rows.get(rid)
        if row is None:
            out.append(None)
            continue
        vec = decode_vector(row.vector) if include_vectors else None
        md = decode_metadata(row.metadata) if include_metadata else None
        doc = row.document if include_documents else None
        out.append(Record(rid, vec, md, doc, row.expires_at or 0.0))
    return out


def count(
    eng: EngineState,
    where: Filter | None,
    where_document: DocFilter | None,
    buckets: npt.NDArray[np.bool_] | None,
) -> int:
    """Live rows (of `buckets`), or live rows passing `where` and `where_document`."""
    if where is None and where_document is None and buckets is None:
        if not eng._slots.n_expiring:  # no lock, no scan: as before expiry existed
            return len(eng._slots)
        with eng._index.lock.read():
            return eng._slots.n_visible()
    return read_locked(
        eng, lambda settle: int(mask_of(eng, where, where_document, buckets, settle=settle).sum())
    )


def scroll(eng: EngineState, request: ShardScroll) -> ScrollPage:
    """The next page of live rows in (bucket, id) order (shard/scroll_pages.py). With a
    filter, its mask over the slots is taken under the index lock and only prefilters: each
    row is judged on the metadata read with it."""
    mask = None
    if request.where is not None:
        with eng._index.lock.read():
            mask = mask_of(eng, request.where)
    return scroll_page(eng._store, request, eng.settings.dim, mask, eng._slots.clock())


def search(
    eng: EngineState,
    queries: npt.NDArray[np.float32],
    k: int,
    *,
    where: Filter | None,
    ef: int | None,
    exact: bool,
    min_score: float | None,
    max_distance: float | None,
    include_metadata: bool,
    include_vectors: bool,
    include_documents: bool,
    where_document: DocFilter | None,
    buckets: npt.NDArray[np.bool_] | None,
) -> SearchResult:
    """Best `k` live rows per query, best first (shard/planner.py says how); each hit's
    payloads are read under the same lock as the hits, so they are the hit's own. Vectors come
    from the store (shard/row_vectors.py); under cosine, a hit whose row a batch being applied
    rewrote is searched again once that batch is in (a few tries, then hnswlib's values)."""
    settings = eng.settings
    q = np.ascontiguousarray(queries, dtype=np.float32)
    ef = settings.ef if ef is None else ef
    slots = eng._slots
    filtered = where is not None or where_document is not None or buckets is not None

    def read(settle: bool) -> SearchResult:  # under the read lock (read_locked)
        mask: npt.NDArray[np.bool_] | None
        if filtered:
            mask = mask_of(eng, where, where_document, buckets, settle=settle)
        else:  # None unless some row has expired: the plain search stays lean
            expired = slots.expired()
            mask = None if expired is None else slots.alive & ~expired
        labels, scores = eng._planner.search(
            eng._index,
            q,
            k,
            ef,
            alive=slots.alive,
            n_live=len(slots),
            mask=mask,
            exact=exact,
        )
        drop_past_threshold(labels, scores, settings.metric, min_score, max_distance)
        vectors = None
        if include_vectors:
            vectors = RowVectors(eng).hits(labels, settle)
            if vectors is None:
                raise StaleRow
        texts, docs = hit_payloads(eng, labels, include_metadata, include_documents, settle)
        valid = labels >= 0
        ids = np.full(labels.shape, "", dtype=object)
        ids[valid] = slots.slot_to_id[labels[valid]]
        counts = valid.sum(axis=1).astype(np.int32)
        return SearchResult(ids, scores, counts, texts, vectors, docs)

    return read_locked(eng, read)
