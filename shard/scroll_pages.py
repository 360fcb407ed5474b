"""One page of a shard's rows in scroll order, (bucket, id), read from the SQLite store.

The store's partial index rows_scroll(bucket, id) serves the range; each row's key, vector and
metadata come from one statement, so a row is returned as one committed version of it. With a
filter, the engine's filter mask (taken under the index lock just before) skips rows by slot
without decoding them, and the rows it lets through are checked again on the metadata read with
them, so a row whose metadata changed in between is judged by what is returned. A filtered page
reads at most SCAN_ROWS rows and then answers with what it found and the position it reached,
so a selective filter never holds a call for a whole shard.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shardvec.contract.filters import document_matches
from shardvec.contract.types import ScrollPage, ShardScroll
from shardvec.shard.columns import MetadataColumns
from shardvec.shard.store import Store
from shardvec.shard.store_rows import ScrollRow, decode_metadata, decode_vector_rows

SCAN_ROWS = 20_000  # rows a filtered page reads at most before it answers
FILTERED_CHUNK = 1024  # rows read per statement under a filter


def scroll_page(
    store: Store,
    request: ShardScroll,
    dim: int,
    mask: npt.NDArray[np.bool_] | None = None,
    now: float | None = None,
) -> ScrollPage:
    """The next page after request's position; `mask` (by slot) given with request.where;
    rows expired at `now` are skipped (None: none is). Each row's expiry comes too, when some
    row of the page has one (a bucket copy carries it; Scroll and Get return it)."""
    filtered = request.where is not None or request.where_document is not None
    pos = (request.after_bucket, request.after_id)
    ids: list[str] = []
    texts: list[str] = []
    docs: list[str] = []
    blobs: list[bytes] = []
    expires: list[float] = []
    size = scanned = 0
    while True:
        need = request.limit - len(ids)
        fetch = need + 1 if not filtered else max(need + 1, FILTERED_CHUNK)
        rows = store.scroll_rows(
            pos,
            request.end_bucket,
            fetch,
            vectors=request.include_vectors,
            metadata=request.include_metadata or request.where is not None,
            documents=request.include_documents or request.where_document is not None,
            now=now,
        )
        keep = _matching(rows, request, mask) if filtered else None
        for j, row in enumerate(rows):
            if keep is not None and not keep[j]:
                pos = (row.bucket, row.id)
                scanned += 1
                continue
            row_bytes = (
                len(row.id)
                + len(row.metadata or "")
                + len(row.document or "")
                + 4 * dim * request.include_vectors
            )
            full = len(ids) >= request.limit or (
                request.max_bytes > 0 and bool(ids) and size + row_bytes > request.max_bytes
            )
            if full:  # a live row follows the position: not done
                return _page(ids, texts, docs, blobs, expires, request, dim, pos, done=False)
            ids.append(row.id)
            if request.include_metadata:
                texts.append(row.metadata or "")
            if request.include_documents:
                docs.append(row.document or "")
            if request.include_vectors and row.vector is not None:
                blobs.append(row.vector)
            expires.append(row.expires_at or 0.0)
            size += row_bytes
            pos = (row.bucket, row.id)
            scanned += 1
        if len(rows) < fetch:
            return _page(ids, texts, docs, blobs, expires, request, dim, pos, done=True)
        if filtered and scanned >= SCAN_ROWS:
            return _page(ids, texts, docs, blobs, expires, request, dim, pos, done=False)


def _matching(
    rows: list[ScrollRow], request: ShardScroll, mask: npt.NDArray[np.bool_] | None
) -> list[bool]:
    """Which rows pass request.where and request.where_document: the mask's verdict by slot
    first (a slot past the mask is a row newer than it: checked), then the filters on the
    metadata and document read with the row."""
    wd = request.where_document
    cand = [
        j
        for j, r in enumerate(rows)
        if (mask is None or r.slot is None or r.slot >= len(mask) or mask[r.slot])
        and (wd is None or document_matches(wd, r.document))
    ]
    out = [False] * len(rows)
    if not cand or request.where is None:
        for j in cand:
            out[j] = True
        return out
    cols = MetadataColumns()
    cols.set(np.arange(len(cand)), [decode_metadata(rows[j].metadata) for j in cand])
    passed = cols.mask(request.where, len(cand))
    for j, ok in zip(cand, passed.tolist(), strict=True):
        out[j] = bool(ok)
    return out


def _page(
    ids: list[str],
    texts: list[str],
    docs: list[str],
    blobs: list[bytes],
    expires: list[float],
    request: ShardScroll,
    dim: int,
    pos: tuple[int, str],
    *,
    done: bool,
) -> ScrollPage:
    vectors = None
    if request.include_vectors:
        vectors = decode_vector_rows(blobs, dim).astype(np.float32)  # a writable copy
    documents = docs if request.include_documents else None
    expiry = expires if any(expires) else None
    return ScrollPage(ids, texts, vectors, pos[0], pos[1], done, documents, expiry)
