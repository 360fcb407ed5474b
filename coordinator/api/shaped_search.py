"""Searches whose results are shaped after the merge: grouped by a metadata field
(coordinator/queries/groups.py) or diversified by MMR (coordinator/queries/diversity.py).

The request is checked whole (group_by / groups / group_size, diversity / candidates, then
everything a plain search checks) before any shard sees it. Both take their queries as
vectors or query_texts; with text_query or query_ids they are refused, as is asking for both.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np

from shardvec.contract.convert import search_response, vectors_from_proto
from shardvec.contract.errors import InvalidArgument, ResourceExhausted
from shardvec.contract.groups import diversity_from_request, group_by_from_request
from shardvec.contract.keyword import fusion_from_request
from shardvec.contract.types import Hits
from shardvec.contract.validation import validate_vectors
from shardvec.coordinator.api.sizing import check_search_response
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.queries.diversity import diversify
from shardvec.coordinator.queries.groups import group_search
from shardvec.coordinator.queries.reads import CollectionReads, SearchParams


class ReadEdge(Protocol):
    """What a shaped search uses of the public service (coordinator/api/service.py
    ReadService): its settings and batcher, and the checks every search shares."""

    settings: CoordinatorSettings
    batcher: MicroBatcher

    def _search_params(self, col: CollectionReads, request: Any, k: int | None = None
                       ) -> SearchParams: ...  # fmt: skip

    async def _embed_query_texts(self, col: CollectionReads, request: Any, context: Any
                                 ) -> np.ndarray | None: ...  # fmt: skip

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
    if request.text_query or request.query_ids:
        raise InvalidArgument(f"{field}: vector searches only (queries or query_texts), not "
                              "text_query or query_ids")  # fmt: skip
    fusion_from_request(request, hybrid=False)
    if group is not None and request.HasField("diversity"):
        raise InvalidArgument("diversity: not with group_by (give one of them)")
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
        check_search_response(grouped.hits, col.dim, settings.max_message_bytes)
        resp = search_response(grouped.hits)
        for res, keys, c in zip(resp.results, grouped.keys.tolist(),
                                grouped.hits.counts.tolist(), strict=True):  # fmt: skip
            res.group_values.extend(keys[:c])
        return resp
    assert diversity is not None
    wide = dataclasses.replace(params, k=diversity.candidates, include_vectors=True)

    async def run(batch: np.ndarray, deadline: float) -> Hits:
        return await col.search(batch, wide, deadline)

    hits = await service.batcher.submit((col.spec.name, wide), queries, deadline, run, Hits.rows)
    hits = diversify(hits, params.k, diversity, col.spec.index.metric, params.include_vectors)
    check_search_response(hits, col.dim, settings.max_message_bytes)
    return search_response(hits)
