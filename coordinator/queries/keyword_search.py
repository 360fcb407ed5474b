"""Keyword search across shards with global statistics, and hybrid search (coordinator side).

BM25 scores depend on corpus statistics (how many documents hold a term, how long documents
are on average) that each shard sees only in part; a shard scoring on its own would rank
differently from one index over every document. So a keyword search runs in two phases, as
Elasticsearch's "DFS query then fetch":

1. `KeywordStats` to one replica of every shard: each tokenizes the texts (the collection's
   tokenizer; every shard cuts alike) and returns each term's document frequency there, its
   document count and its token total. The coordinator sums them.
2. `KeywordSearch` with the sums to every shard: each scores its documents with the global
   statistics and returns its top k; merging the shards' top k by score gives the top k of
   one index over all the documents (every shard scored on the same scale).

Phase one reads only the term dictionary and two small records per shard. A write landing
between the phases shifts the statistics by that write, no more. Both phases run under one
read view (coordinator/queries/read_view.py): while a layout change has rows on two shards, each
shard counts and scores only the rows of the buckets it owns, so statistics and hits are
those of one index over the rows, each once. A hybrid search runs the
vector leg and the keyword leg in parallel, each `leg_depth(k)` deep, and fuses them
(coordinator/queries/fusion.py). This module knows nothing of SQLite or FTS5: the shards do.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import numpy as np

from shardvec.contract.errors import Unavailable
from shardvec.contract.keyword import Fusion, check_terms
from shardvec.contract.shard_api import ShardLike
from shardvec.contract.types import Hits, KeywordSearch, KeywordStats, KeywordTerms, SearchResult
from shardvec.coordinator.queries.fusion import fuse_hits
from shardvec.coordinator.queries.merge import merge_with_payloads
from shardvec.coordinator.queries.read_view import ReadView
from shardvec.coordinator.queries.reads import CollectionReads, SearchParams, payload_of


def merge_stats(parts: Sequence[KeywordStats]) -> KeywordStats:
    """The shards' statistics summed: per query the same terms, document frequencies added,
    document counts and token totals added. Shards that cut a text differently (another
    tokenizer: never, unless a store was built otherwise) fail the search with Unavailable."""
    first = parts[0]
    queries = []
    for qi, q in enumerate(first.queries):
        freqs = np.zeros(len(q.terms), dtype=np.int64)
        for p in parts:
            other = p.queries[qi]
            if other.terms != q.terms:
                raise Unavailable(
                    f"text_query[{qi}]: shards tokenized it differently ({list(q.terms)[:8]} "
                    f"against {list(other.terms)[:8]})"
                )
            freqs += np.asarray(other.doc_freqs, dtype=np.int64)
        queries.append(KeywordTerms(q.terms, tuple(int(f) for f in freqs)))
    return KeywordStats(
        queries,
        sum(p.doc_count for p in parts),
        sum(p.total_tokens for p in parts),
    )


async def gather_stats(view: ReadView, texts: Sequence[str], deadline: float) -> KeywordStats:
    """Phase one: every shard's statistics for `texts`, summed (one replica per shard)."""

    async def call(
        shard_: ShardLike, timeout: float, buckets: np.ndarray | None
    ) -> KeywordStats:
        return await shard_.keyword_stats(texts, timeout, buckets)

    return merge_stats(await view.fan_out(call, deadline))


async def keyword_search(
    col: CollectionReads, texts: Sequence[str], params: SearchParams, deadline: float
) -> Hits:
    """The BM25 top `params.k` of each text over every shard, scored with global statistics;
    `where` / `where_document` filter, payloads as asked. A collection without documents
    answers empty rows."""
    async with col.views.read() as view:
        return await keyword_search_in(view, texts, params, deadline)


async def keyword_search_in(
    view: ReadView, texts: Sequence[str], params: SearchParams, deadline: float
) -> Hits:
    """`keyword_search` under a view the caller holds."""
    stats = await gather_stats(view, texts, deadline)
    check_terms(stats.queries)
    request = KeywordSearch(
        stats.queries,
        stats.doc_count,
        stats.total_tokens,
        params.k,
        params.where,
        params.where_document,
        params.include_metadata,
        params.include_vectors,
        params.include_documents,
    )

    async def call(
        shard_: ShardLike, timeout: float, buckets: np.ndarray | None
    ) -> SearchResult:
        mine = request if buckets is None else dataclasses.replace(request, buckets=buckets)
        return await shard_.keyword_search(mine, timeout)

    parts = await view.fan_out(call, deadline)
    payloads: list[list[np.ndarray]] = []
    if params.include_metadata:
        payloads.append([payload_of(p.metadata, "metadata") for p in parts])
    if params.include_vectors:
        payloads.append([payload_of(p.vectors, "vectors") for p in parts])
    if params.include_documents:
        payloads.append([payload_of(p.documents, "documents") for p in parts])
    ids, scores, counts, merged = merge_with_payloads(
        [p.ids for p in parts],
        [p.scores for p in parts],
        params.k,
        higher_is_better=True,
        payloads=payloads,
    )
    metadata = merged.pop(0) if params.include_metadata else None
    vectors = merged.pop(0) if params.include_vectors else None
    documents = merged.pop(0) if params.include_documents else None
    return Hits(ids, scores, counts, metadata, vectors, documents)


async def hybrid_search(
    col: CollectionReads,
    queries: np.ndarray,
    texts: Sequence[str],
    params: SearchParams,
    fusion: Fusion,
    depth: int,
    deadline: float,
) -> Hits:
    """Per query the fused top `params.k` of the vector leg (`queries`) and the keyword leg
    (`texts`), each `depth` deep, searched in parallel with the same filters."""
    wide = dataclasses.replace(params, k=depth)
    async with col.views.read() as view:  # both legs read the same rows
        vector, keyword = await asyncio.gather(
            col.search_in(view, queries, wide, deadline),
            keyword_search_in(view, texts, wide, deadline),
        )
    return fuse_hits(
        vector, keyword, params.k, fusion, vector_higher_is_better=col.higher_is_better
    )
