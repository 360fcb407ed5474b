"""Scroll: paging through a collection, or the rows matching a filter, with an opaque cursor.

Order. Rows are walked in (bucket, id) order, bucket being the routing bucket of the id
(shardvec.contract.buckets). Buckets map to shards in runs of contiguous buckets (one range
per shard until a resharding moves buckets; coordinator/layout.py), so the walk reads one
run's rows, then the next's, and a page usually costs one shard call; each shard pages its
own rows in that order from the SQLite index rows_scroll(bucket, id) (shard/scroll_pages.py).

Why every row alive for the whole scroll appears exactly once, whatever writes arrive: a row's
key (bucket, id) never changes, the position only moves forward, and a page returns every live
row with a key in (previous position, new position] as the shard's store held it when read
(one SQL statement per shard call, ordered, with a limit). Consecutive pages cover disjoint
key ranges, so no row comes twice; a row alive throughout is live when its range is read, so
it comes once. A row written or deleted during the scroll may or may not appear. Reads go to
one LIVE replica (ReplicaSet.read), and a LIVE replica holds every acknowledged write, so a
page read from another replica than the last one keeps the rule.

The cursor (coordinator/queries/cursor.py) carries the position, the collection's name and uid and
the slice, sealed with an HMAC. Slices split the order into near-equal bucket ranges for
parallel readers (Ray Data's datasource reads one slice per shard).
"""

from __future__ import annotations

import numpy as np

from shardvec.contract.buckets import NUM_BUCKETS, slice_buckets
from shardvec.contract.convert import filter_from_proto, where_document_from_proto
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.filters import DocFilter, Filter
from shardvec.contract.limits import DEFAULT_SCROLL_ROWS
from shardvec.contract.shard_api import ShardLike
from shardvec.contract.types import ScrollPage, ShardScroll
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.cursor import Cursor, check_cursor, decode_cursor, encode_cursor
from shardvec.coordinator.queries.read_runtime import ReadRuntime
from shardvec.coordinator.queries.reads import CollectionReads
from shardvec.v1 import vector_search_pb2 as pb

Position = tuple[int, str]


async def scroll_collection(
    col: CollectionReads,
    start: Position,
    end_bucket: int,
    limit: int,
    where: Filter | None,
    include_metadata: bool,
    include_vectors: bool,
    max_bytes: int,
    deadline: float,
    where_document: DocFilter | None = None,
    include_documents: bool = False,
) -> tuple[list[ScrollPage], Position | None]:
    """Pages of the shards holding the rows after `start` (exclusive) below `end_bucket`, in
    order, with at most `limit` rows and about `max_bytes` in all; and the position to go on
    from (None: the range is done)."""
    pos = start
    pages: list[ScrollPage] = []
    rows = size = 0
    while pos[0] < end_bucket and rows < limit and size < max_bytes:
        async with col.views.read() as view:  # a page reads its buckets from their owner
            shard = view.layout.shard_of_bucket(pos[0])
            stop = min(end_bucket, view.layout.run_end(pos[0]))
            request = ShardScroll(
                after_bucket=pos[0],
                after_id=pos[1],
                end_bucket=stop,
                limit=limit - rows,
                where=where,
                include_metadata=include_metadata,
                include_vectors=include_vectors,
                max_bytes=max_bytes - size,
                where_document=where_document,
                include_documents=include_documents,
            )

            async def call(shard_: ShardLike, timeout: float,
                           req: ShardScroll = request) -> ScrollPage:  # fmt: skip
                return await shard_.scroll(req, timeout)

            page = await view.sets[shard].read(call, deadline)
        pages.append(page)
        rows += len(page.ids)
        size += _page_bytes(page)
        if not page.done:
            pos = (page.last_bucket, page.last_id)
            break
        pos = (stop, "")
    return pages, (pos if pos[0] < end_bucket else None)


def _page_bytes(page: ScrollPage) -> int:
    vec = 0 if page.vectors is None else int(page.vectors.nbytes)
    docs = sum(map(len, page.documents)) if page.documents is not None else 0
    return sum(len(i) for i in page.ids) + sum(len(m) for m in page.metadata_json) + vec + docs


def page_expiries(pages: list[ScrollPage]) -> list[float]:
    """The rows' absolute expiries across `pages`, one per id (0.0: never), or empty when no
    row of them expires (the wire's expires_at)."""
    if not any(p.expires_at for p in pages):
        return []
    return [e for p in pages for e in (p.expires_at or [0.0] * len(p.ids))]


def slice_range(slice_: int, slices: int) -> tuple[int, int]:
    """The bucket range of slice `slice_` of `slices` (0 of 0: every bucket)."""
    if slices == 0:
        if slice_ != 0:
            raise InvalidArgument(f"slice: {slice_} needs slices > {slice_}")
        return 0, NUM_BUCKETS
    if not 1 <= slices <= NUM_BUCKETS:
        raise InvalidArgument(f"slices: must be 0 (the whole collection) or in [1, {NUM_BUCKETS}]"
                              f", got {slices}")
    if slice_ >= slices:
        raise InvalidArgument(f"slice: must be in [0, {slices}) for slices {slices}, got {slice_}")
    return slice_buckets(slice_, slices)


async def scroll_rpc(
    runtime: ReadRuntime,
    settings: CoordinatorSettings,
    secret: bytes,
    request: pb.ScrollRequest,
    deadline: float,
) -> pb.ScrollResponse:
    """One Scroll call, checked whole first: limit, slice, filter, cursor.

    A cursor carries its collection's own name: a scroll asked through an alias goes on with
    the collection it began on, whatever the alias names now (coordinator/aliases.py)."""
    col = runtime.get(request.collection)
    cursor = decode_cursor(request.cursor, secret) if request.cursor else None
    if cursor is not None and request.collection in runtime.aliases.names:
        col = runtime.get(cursor.collection)
    limit = int(request.limit) or min(DEFAULT_SCROLL_ROWS, settings.max_scroll_rows)
    if limit > settings.max_scroll_rows:
        raise InvalidArgument(
            f"limit: {limit} rows per page is over the cap {settings.max_scroll_rows} "
            "(max_scroll_rows)"
        )
    wd = None
    if request.HasField("where_document"):
        wd = where_document_from_proto(request.where_document)
        if wd is None:
            raise InvalidArgument("where_document: empty filter (leave it unset for none)")
    first, end = slice_range(int(request.slice), int(request.slices))
    where = filter_from_proto(request.filter) if request.HasField("filter") else None
    uid = runtime.uid(col.spec.name)
    start: Position = (first, "")
    if cursor is not None:
        check_cursor(cursor, col.spec.name, uid, int(request.slice), int(request.slices))
        if not first <= cursor.bucket <= end:
            raise InvalidArgument("cursor: its position is outside its slice")
        start = (cursor.bucket, cursor.id)
    inc_meta, inc_vec = request.include.metadata, request.include.vectors
    inc_doc = request.include.documents
    pages, nxt = await scroll_collection(
        col,
        start,
        end,
        limit,
        where,
        inc_meta,
        inc_vec,
        settings.max_message_bytes // 2,
        deadline,
        wd,
        inc_doc,
    )
    resp = pb.ScrollResponse()
    for page in pages:
        resp.ids.extend(page.ids)
        if inc_meta:
            resp.metadata_json.extend(page.metadata_json)
        if inc_doc:
            resp.documents.extend(page.documents or [])
    resp.expires_at.extend(page_expiries(pages))
    if inc_vec:
        resp.vectors.dim = col.dim
        parts = [p.vectors for p in pages if p.vectors is not None and len(p.vectors)]
        if parts:
            resp.vectors.packed = np.concatenate(parts).astype("<f4").tobytes()
    if nxt is not None:
        resp.next_cursor = encode_cursor(
            Cursor(col.spec.name, uid, int(request.slice), int(request.slices), *nxt), secret
        )
    return resp


async def get_matching(
    col: CollectionReads,
    where: Filter | None,
    where_document: DocFilter | None,
    limit: int,
    include_metadata: bool,
    include_vectors: bool,
    include_documents: bool,
    max_bytes: int,
    deadline: float,
) -> list[ScrollPage]:
    """Get by filter: the first `limit` rows (in scroll order) matching `where` and
    `where_document` (either may be None: every row), as scroll pages walked to the end or the
    limit. Each page is consistent as a scroll page is; for a stable walk of more rows than one
    answer holds, use Scroll."""
    pos: Position | None = (0, "")
    pages: list[ScrollPage] = []
    rows = size = 0
    while pos is not None and rows < limit and size < max_bytes:
        got, pos = await scroll_collection(
            col,
            pos,
            NUM_BUCKETS,
            limit - rows,
            where,
            include_metadata,
            include_vectors,
            max_bytes - size,
            deadline,
            where_document,
            include_documents,
        )
        pages.extend(got)
        rows += sum(len(p.ids) for p in got)
        size += sum(_page_bytes(p) for p in got)
    return pages
