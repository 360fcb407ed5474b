"""Searches whose results are shaped after the merge: grouped by a metadata field
(coordinator/queries/groups.py) or diversified by MMR (coordinator/queries/diversity.py).

The request is checked whole (group_by / groups / group_size, diversity / candidates, then
everything a plain search checks) before any shard sees it. Group-by takes vector searches
(queries or query_texts), keyword searches (text_query) and hybrid ones (both); diversity
takes vector searches; with query_ids either is refused, as is asking for both.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np

from shardvec.contract.convert import vectors_from_proto
from shardvec.contract.convert_public import search_response
from shardvec.contract.errors import InvalidArgument, ResourceExhausted
from shardvec.contract.groups import GroupBy, diversity_from_request, group_by_from_request
from shardvec.contract.keyword import Fusion, fusion_from_request, leg_depth
from shardvec.contract.types import Hits
from shardvec.contract.validation import validate_vectors
from shardvec.coordinator.api.sizing import check_search_response
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.queries.diversity import diversify
from shardvec.coordinator.queries.groups import GroupedHits, group_ranked, group_search
from shardvec.coordinator.queries.keyword_search import hybrid_search, keyword_search
from shardvec.coordinator.queries.reads import CollectionReads, SearchParams


class ReadEdge(Protocol):
    """What a shaped search uses of the public service (coordinator/api/read_service.py
    ReadService): its settings and batcher, and the checks every search shares."""

    settings: CoordinatorSettings
    batcher: MicroBatcher

    def _search_params(self, col: CollectionReads, request: Any, k: int | None = None
                       ) -> SearchParams: ...  # fmt: skip

    async def _embed_query_texts(self, col: CollectionReads, request: Any, context: Any
                                 ) -> np.ndarray | None: ...  # fmt: skip

    async def _keyword_inputs(
        self, col: CollectionReads, request: Any, context: Any
    ) -> tuple[list[str], np.ndarray | None, Fusion | None]: ...

    def _rows_limit(self, n: int, limit: int, what: str) -> None: ...

    def _bytes_limit(self, size: int, what: str) -> None: ...

    def _deadline(self, context: Any) -> float: ...


def shaped(request: Any) -> bool:
    """Whether a SearchRequest asks for groups or diversity."""
    return bool(
        request.group_by or request.HasField("groups") or request.HasField("group_size")
        or request.HasField("diversity") or request.candidates
    )  # fmt: skip


async def shaped_search(service: ReadEdge, col: CollectionReads, request: Any,
                        context: Any) -> Any:  # fmt: skip
    """A grouped or diverse Search, answered as a SearchResponse (group values beside the
    hits of a grouped one)."""
    settings = service.settings
    group = group_by_from_request(request, settings.max_k)
    field = "group_by" if group is not None else "diversity"
    if request.query_ids:
        raise InvalidArgument(f"{field}: not with query_ids (give queries or query_texts)")
    if group is not None and request.HasField("diversity"):
        raise InvalidArgument("diversity: not with group_by (give one of them)")
    if request.text_query:
        if group is None:
            raise InvalidArgument("diversity: vector searches only (queries or query_texts), "
                                  "not text_query")  # fmt: skip
        return await _grouped_keywords(service, col, request, context, group)
    fusion_from_request(request, hybrid=False)
    params = service._search_params(col, request, k=group.hits if group else None)
    diversity = diversity_from_request(request, params.k, settings.max_k)
    depth = diversity.candidates if diversity is not None else params.k
    text_queries = await service._embed_query_texts(col, request, context)
    if text_queries is not None:
        queries = text_queries
    else:
        queries = vectors_from_proto(request.queries, col.dim, field="queries")
    nq = queries.shape[0]
    service._rows_limit(nq, settings.max_query_rows, "search queries")
    if nq * depth > settings.max_search_hits:
        raise ResourceExhausted(
            f"search: {nq} queries x {depth} hits is {nq * depth} hits, the limit is "
            f"{settings.max_search_hits} (max_search_hits)"
        )
    if params.include_vectors or diversity is not None:
        service._bytes_limit(nq * depth * col.dim * 4, "search")
    queries = validate_vectors(queries, col.dim, col.spec.index.metric, field="queries")
    deadline = service._deadline(context)
    if group is not None:
        grouped = await group_search(col, queries, params, group, deadline)
        return _grouped_response(grouped, col, settings.max_message_bytes)
    assert diversity is not None
    wide = dataclasses.replace(params, k=diversity.candidates, include_vectors=True)

    async def run(batch: np.ndarray, deadline: float) -> Hits:
        return await col.search(batch, wide, deadline)

    hits = await service.batcher.submit((col.spec.name, wide), queries, deadline, run, Hits.rows)
    hits = diversify(hits, params.k, diversity, col.spec.index.metric, params.include_vectors)
    check_search_response(hits, col.dim, settings.max_message_bytes)
    return search_response(hits)


async def _grouped_keywords(service: ReadEdge, col: CollectionReads, request: Any,
                            context: Any, group: GroupBy) -> Any:  # fmt: skip
    """A keyword or hybrid search grouped at the coordinator (coordinator/queries/groups.py
    group_ranked), checked as ReadService._search_keywords checks an ungrouped one."""
    settings = service.settings
    params = service._search_params(col, request, k=group.hits)
    texts, vectors, fusion = await service._keyword_inputs(col, request, context)
    if len(texts) * settings.max_k > settings.max_search_hits:
        raise ResourceExhausted(
            f"search: a grouped search of {len(texts)} queries may rank {settings.max_k} hits "
            f"each, over the limit of {settings.max_search_hits} (max_search_hits)"
        )
    if params.include_vectors:
        service._bytes_limit(len(texts) * settings.max_k * col.dim * 4, "search")
    if vectors is not None:
        vectors = validate_vectors(vectors, col.dim, col.spec.index.metric, field="queries")
    deadline = service._deadline(context)

    async def run(depth: int) -> Hits:
        wide = dataclasses.replace(params, k=depth, include_metadata=True)
        if vectors is None or fusion is None:
            return await keyword_search(col, texts, wide, deadline)
        legs = leg_depth(depth, settings.max_k)
        return await hybrid_search(col, vectors, texts, wide, fusion, legs, deadline)

    grouped = await group_ranked(run, group, settings.max_k, params.include_metadata)
    return _grouped_response(grouped, col, settings.max_message_bytes)


def _grouped_response(grouped: GroupedHits, col: CollectionReads, max_bytes: int) -> Any:
    check_search_response(grouped.hits, col.dim, max_bytes)
    resp = search_response(grouped.hits)
    for res, keys, c in zip(resp.results, grouped.keys.tolist(), grouped.hits.counts.tolist(),
                            strict=True):  # fmt: skip
        res.group_values.extend(keys[:c])
    return resp
