"""Keyword search on one replica: the two phases of a BM25 search over the full-text index
(shard/bm25.py), as ShardEngine (shard/engine.py) serves them.

Phase one (`keyword_stats`) gives the coordinator this replica's statistics of the query terms;
phase two (`keyword_search`) scores the postings under the global statistics it sends back.
Postings, lengths and the slots' ids are read in one store snapshot, the filter mask and
payloads under the index's read lock; a hit whose slot holds another id in memory than in that
snapshot (a write committed and not yet applied) is left out, as a vector search would not see
it yet either. With `payload_on_disk` the hits' metadata and documents, and the documents a
where_document tests, are those of the same snapshot's rows (shard/payloads.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from shardvec.contract.types import KeywordSearch, KeywordStats, KeywordTerms, SearchResult
from shardvec.shard.bm25 import local_stats, match, slot_ids
from shardvec.shard.engine_state import EngineState
from shardvec.shard.payloads import hit_payloads
from shardvec.shard.reads import mask_of
from shardvec.shard.row_vectors import RowVectors


def keyword_stats(
    eng: EngineState, texts: Sequence[str], buckets: npt.NDArray[np.bool_] | None
) -> KeywordStats:
    """Each text's terms (the collection's tokenizer) with their document frequencies here,
    and this replica's document count and token total; `buckets`: of the rows of those
    routing buckets only (None: every row). Expired rows awaiting the sweep count for
    nothing (then the statistics are read through the visible mask, not FTS5's totals)."""
    tokenizer = eng._query_tokenizer()
    if buckets is None and not eng._slots.n_expiring:
        with eng._store.snapshot() as db:
            got = local_stats(db, tokenizer, texts)
    else:
        with eng._index.lock.read(), eng._store.snapshot() as db:
            plain = buckets is None and eng._slots.expired() is None
            mask = None if plain else eng._slots.visible(buckets)
            got = local_stats(db, tokenizer, texts, mask)
    return KeywordStats(
        [KeywordTerms(tuple(t), tuple(f)) for t, f in zip(got.terms, got.doc_freqs, strict=True)],
        got.doc_count,
        got.total_tokens,
    )


def keyword_search(eng: EngineState, request: KeywordSearch) -> SearchResult:
    """Per query the best `request.k` live rows by BM25 under the request's (global)
    statistics, best first, filters and payloads as in a vector search."""
    k, nq = request.k, request.nq
    ids = np.full((nq, k), "", dtype=object)
    scores = np.full((nq, k), np.nan, dtype=np.float32)
    labels = np.full((nq, k), -1, dtype=np.int64)
    filtered = (
        request.where is not None
        or request.where_document is not None
        or request.buckets is not None
    )
    store, table = eng._store, eng._slots
    gen: int | None = store.generation
    with eng._index.lock.read(), store.snapshot() as db:
        if gen != store.generation or gen % 2:  # a write under way: cache nothing
            gen = None
        mask = (
            mask_of(eng, request.where, request.where_document, request.buckets, db=db)
            if filtered
            else None
        )
        # the live rows now; a copy with the expired ones out only when some row has expired
        alive = table.alive if mask is not None or table.expired() is None else table.visible()
        for qi, q in enumerate(request.queries):
            slots, got = match(
                db,
                q.terms,
                q.doc_freqs,
                request.doc_count,
                request.total_tokens,
                eng._postings,
                gen,
            )
            keep = slots < len(alive)
            slots, got = slots[keep], got[keep]
            ok = (mask if mask is not None else alive)[slots]
            slots, got = slots[ok], got[ok]
            order = np.lexsort((slots, -got))  # best first, ties by slot
            row = 0
            for start in range(0, len(order), 4 * k):
                part = order[start : start + 4 * k]
                stored = slot_ids(db, slots[part])
                for j in part:
                    slot = int(slots[j])
                    rid = table.slot_to_id[slot]
                    if stored.get(slot) != rid:
                        continue
                    ids[qi, row], scores[qi, row], labels[qi, row] = rid, got[j], slot
                    row += 1
                    if row == k:
                        break
                if row == k:
                    break
        texts, docs = hit_payloads(  # on disk: the snapshot's rows (shard/payloads.py)
            eng, labels, request.include_metadata, request.include_documents, True, db
        )
        vectors = None
        if request.include_vectors:  # the snapshot's rows are the ones in memory (checked)
            vectors = RowVectors(eng).hits(labels, True)
    counts = (labels >= 0).sum(axis=1).astype(np.int32)
    return SearchResult(ids, scores, counts, texts, vectors, docs)
