"""The client's paging and search-by-id calls, behind `Collection.scroll`, `scroll_pages` and
`search_by_ids` (cluster/client_collection.py).

A scroll walks the collection (or the rows matching `where`) in the server's stable order,
page by page, each page's `next_cursor` leading to the next; a cursor is opaque and sealed by
the server, and may be kept to resume a scroll later (while the collection exists).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shardvec.contract.convert import filter_to_proto, where_document_to_proto
from shardvec.contract.convert_public import hits_from_response, records_from_response
from shardvec.contract.filters import parse_where, parse_where_document
from shardvec.contract.types import Hit, Record
from shardvec.v1 import vector_search_pb2 as pb


class _Caller(Protocol):
    def call(self, method: str, request: Any, timeout: float | None = None) -> Any: ...


class Collection(Protocol):
    """What these calls need of shardvec.cluster.client.Collection (no import of it: no cycle)."""

    @property
    def client(self) -> _Caller: ...

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...


@dataclass(frozen=True)
class Page:
    """One page of a scroll: its rows in order, and the cursor of the next (b"": the last)."""

    records: list[Record]
    next_cursor: bytes


def scroll_pages(
    col: Collection,
    where: Mapping[str, Any] | None = None,
    *,
    page_size: int = 0,
    include_metadata: bool = True,
    include_vectors: bool = False,
    include_documents: bool = False,
    where_document: Mapping[str, Any] | None = None,
    cursor: bytes = b"",
    part: tuple[int, int] | None = None,
    timeout: float | None = None,
) -> Iterator[Page]:
    """Pages from `cursor` (b"": the start) to the end. `part` = (i, n): only slice i of n of
    the order (with n = the shard count, shard i's rows), for parallel readers."""
    req = pb.ScrollRequest(collection=col.name, limit=page_size)
    if where:
        req.filter.CopyFrom(filter_to_proto(parse_where(where)))
    if where_document is not None:
        req.where_document.CopyFrom(where_document_to_proto(parse_where_document(where_document)))
    req.include.metadata = include_metadata
    req.include.vectors = include_vectors
    req.include.documents = include_documents
    if part is not None:
        req.slice, req.slices = part
    while True:
        req.cursor = cursor
        resp = col.client.call("Scroll", req, timeout)
        cursor = bytes(resp.next_cursor)
        yield Page(records_from_response(resp, col.dim), cursor)
        if not cursor:
            return


def scroll(
    col: Collection, where: Mapping[str, Any] | None = None, **kwargs: Any
) -> Iterator[Record]:
    """Every row (or every row matching `where`) once, in the server's scroll order."""
    for page in scroll_pages(col, where, **kwargs):
        yield from page.records


def search_by_ids(
    col: Collection,
    ids: Sequence[str],
    k: int = 10,
    *,
    where: Mapping[str, Any] | None = None,
    ef: int | None = None,
    exact: bool = False,
    min_score: float | None = None,
    max_distance: float | None = None,
    include_metadata: bool = True,
    include_vectors: bool = False,
    include_documents: bool = False,
    timeout: float | None = None,
) -> list[list[Hit]]:
    """"More like these": one result per id, its stored vector the query; the ids asked for
    are left out of every result."""
    req = pb.SearchRequest(collection=col.name, k=k, ef=ef or 0, exact=exact, query_ids=list(ids))
    if where:
        req.filter.CopyFrom(filter_to_proto(parse_where(where)))
    if min_score is not None:
        req.min_score = min_score
    if max_distance is not None:
        req.max_distance = max_distance
    req.include.metadata = include_metadata
    req.include.vectors = include_vectors
    req.include.documents = include_documents
    return hits_from_response(col.client.call("Search", req, timeout), col.dim)
