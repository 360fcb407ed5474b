"""The public `shardvec.v1.VectorSearch` service: validation at the edge, then the runtime.

A request is checked whole before any shard sees it, so a bad row rejects the batch and
changes nothing. A write that has started fanning out to the shards is finished even when
its caller's deadline runs out (the caller then sees DEADLINE_EXCEEDED), so a short client
deadline never leaves a batch applied on some shards and not on others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import numpy as np
from shardvec.contract.convert import (
    collection_info,
    filter_from_proto,
    search_response,
    spec_from_request,
    vectors_from_proto,
)
from shardvec.contract.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from shardvec.contract.types import Hits, ReplicaStatus
from shardvec.contract.validation import parse_metadata_json, validate_ids, validate_vectors
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc

from coordinator.batching import MicroBatcher
from coordinator.collection import CollectionRuntime, SearchParams, deadline_from
from coordinator.config import CoordinatorSettings
from coordinator.runtime import CoordinatorRuntime
from coordinator.sizing import check_get_response, check_search_response
from coordinator.snapshots import (
    RESTORE_BATCH_ROWS,
    SNAPSHOT_DEADLINE_S,
    create_archive,
    restore_archive,
)

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset(
    {"CreateCollection", "DropCollection", "Upsert", "Delete", "CreateSnapshot", "RestoreSnapshot"}
)  # CreateSnapshot too: it copies every row out, and holds disk and a stream slot
WRITE_GRACE_S = 10.0  # the least time shards get to finish a write that has started
T = TypeVar("T")


class VectorSearchService(pb_grpc.VectorSearchServicer):
    def __init__(
        self, runtime: CoordinatorRuntime, settings: CoordinatorSettings, batcher: MicroBatcher
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.batcher = batcher
        self._writes: set[asyncio.Future[Any]] = set()
        self._snapshot_streams = 0

    @contextlib.contextmanager
    def _snapshot_stream(self, what: str) -> Iterator[None]:
        """Hold one of max_snapshot_streams slots; none free is RESOURCE_EXHAUSTED."""
        limit = self.settings.max_snapshot_streams
        if self._snapshot_streams >= limit:
            raise ResourceExhausted(
                f"{what}: {self._snapshot_streams} snapshot streams are running, the limit is "
                f"{limit} (max_snapshot_streams); retry when one has finished"
            )
        self._snapshot_streams += 1
        try:
            yield
        finally:
            self._snapshot_streams -= 1

    def _deadline(self, context: Any) -> float:
        return deadline_from(context.time_remaining(), self.settings.default_deadline_s)

    def _rows_limit(self, n: int, limit: int, what: str) -> None:
        if n > limit:
            raise ResourceExhausted(f"{what}: {n} rows, the limit is {limit}")

    def _bytes_limit(self, size: int, what: str) -> None:
        if size > self.settings.max_message_bytes:
            raise ResourceExhausted(
                f"{what}: the response would hold {size} bytes of vectors, the limit is "
                f"{self.settings.max_message_bytes} (max_message_bytes)"
            )

    async def _write(self, context: Any, what: str, start: Any) -> T:
        """Run the write `start(deadline, decide_by)` to the end, shielded from the caller
        going away.

        Nothing is sent when the caller's deadline has already passed; once sent, every shard
        gets at least WRITE_GRACE_S, so the batch lands whole or fails whole. `decide_by` is
        the caller's own deadline: a batch not decided by then is aborted (coordinator/atomic.py),
        so a DEADLINE_EXCEEDED the caller sees before the decision means the batch is absent.
        """
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded(f"{what}: the deadline passed before any shard was written")
        decide_by = self._deadline(context)
        deadline = max(decide_by, time.monotonic() + WRITE_GRACE_S)
        task: asyncio.Future[T] = asyncio.ensure_future(start(deadline, decide_by))
        self._writes.add(task)
        task.add_done_callback(_finished_write)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(task)

    async def CreateCollection(self, request: Any, context: Any) -> Any:
        spec = spec_from_request(request)
        await self.runtime.create(spec)
        return collection_info(spec)

    async def DropCollection(self, request: Any, context: Any) -> Any:
        await self.runtime.drop(request.name)
        return pb.DropCollectionResponse(dropped=True)

    async def ListCollections(self, request: Any, context: Any) -> Any:
        resp = pb.ListCollectionsResponse()
        for name in self.runtime.served():  # a collection being restored is left out
            resp.collections.append(collection_info(self.runtime.collections[name].spec))
        return resp

    async def DescribeCollection(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.name)
        count = await col.count(None, self._deadline(context))
        live = [r for rs in col.shard_sets for r in rs.live()]
        # Refresh pid/node/rows concurrently and briefly: this is status, not the data path.
        results = await asyncio.gather(
            *(asyncio.wait_for(r.connect(), timeout=5.0) for r in live), return_exceptions=True
        )
        for r, res in zip(live, results, strict=True):
            if isinstance(res, BaseException):
                log.debug("describe: %s: %s", r.name, res)
        return collection_info(col.spec, _states(col), count)

    async def Upsert(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.collection)
        n = len(request.ids)
        self._rows_limit(n, self.settings.max_upsert_rows, "upsert")
        ids = validate_ids(list(request.ids))
        vectors = validate_vectors(
            vectors_from_proto(request.vectors, col.dim), col.dim, col.spec.index.metric
        )
        if vectors.shape[0] != n:
            raise InvalidArgument(f"vectors: {vectors.shape[0]} rows for {n} ids")
        metas = list(request.metadata_json)
        if metas:
            parse_metadata_json(metas, n)  # reject the whole batch before any shard sees it
        await self._write(
            context,
            "upsert",
            lambda deadline, decide_by: col.upsert(ids, vectors, metas, deadline, decide_by),
        )
        return pb.UpsertResponse(upserted=n)

    async def Delete(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.collection)
        has_filter = request.HasField("filter")
        if has_filter == bool(request.ids):
            raise InvalidArgument("delete: give exactly one of ids and filter")
        where = filter_from_proto(request.filter) if has_filter else None
        if where is None and has_filter:
            raise InvalidArgument("filter: empty filter")
        ids = None if has_filter else validate_ids(list(request.ids))
        if ids is not None:
            self._rows_limit(len(ids), self.settings.max_upsert_rows, "delete")
        deleted: int = await self._write(
            context,
            "delete",
            lambda deadline, decide_by: col.delete(ids, where, deadline, decide_by),
        )
        return pb.DeleteResponse(deleted=deleted)

    async def Get(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.collection)
        self._rows_limit(len(request.ids), self.settings.max_query_rows, "get")
        ids = validate_ids(list(request.ids))
        if request.include.vectors:
            self._bytes_limit(len(ids) * col.dim * 4, "get")
        found, metas, vectors = await col.get(
            ids, request.include.metadata, request.include.vectors, self._deadline(context)
        )
        # Sized from what it will hold (metadata included) before the message is built.
        check_get_response(
            found, metas, col.dim, request.include.vectors, self.settings.max_message_bytes
        )
        resp = pb.GetResponse(ids=found, metadata_json=metas)
        if request.include.vectors:
            resp.vectors.dim = col.dim
            resp.vectors.packed = vectors.astype("<f4").tobytes()
        return resp

    async def Count(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.collection)
        where = filter_from_proto(request.filter) if request.HasField("filter") else None
        return pb.CountResponse(count=await col.count(where, self._deadline(context)))

    def _search_params(self, col: CollectionRuntime, request: Any) -> SearchParams:
        k = int(request.k)
        if not 1 <= k <= self.settings.max_k:
            raise InvalidArgument(f"k must be in [1, {self.settings.max_k}], got {k}")
        ef = int(request.ef)
        if ef and not k <= ef <= self.settings.max_ef:
            raise InvalidArgument(f"ef must be 0 or in [k={k}, {self.settings.max_ef}], got {ef}")
        metric = col.spec.index.metric
        min_score = request.min_score if request.HasField("min_score") else None
        max_distance = request.max_distance if request.HasField("max_distance") else None
        if min_score is not None and (metric == "euclidean" or not math.isfinite(min_score)):
            raise InvalidArgument(
                "min_score: needs a finite value and metric cosine or dot; use max_distance"
                " for euclidean"
            )
        if max_distance is not None and (metric != "euclidean" or not max_distance >= 0):
            raise InvalidArgument(
                "max_distance: needs a value >= 0 and metric euclidean; use min_score"
            )
        where = filter_from_proto(request.filter) if request.HasField("filter") else None
        return SearchParams(
            k=k,
            where=where,
            ef=ef or None,
            exact=request.exact,
            min_score=min_score,
            max_distance=max_distance,
            include_metadata=request.include.metadata,
            include_vectors=request.include.vectors,
        )

    async def Search(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.collection)
        params = self._search_params(col, request)
        queries = vectors_from_proto(request.queries, col.dim, field="queries")
        nq = queries.shape[0]
        self._rows_limit(nq, self.settings.max_query_rows, "search queries")
        if nq * params.k > self.settings.max_search_hits:
            raise ResourceExhausted(
                f"search: {nq} queries x k={params.k} is {nq * params.k} hits, the limit is "
                f"{self.settings.max_search_hits} (max_search_hits)"
            )
        if params.include_vectors:
            self._bytes_limit(nq * params.k * col.dim * 4, "search")
        queries = validate_vectors(queries, col.dim, col.spec.index.metric, field="queries")

        # A call the batcher sends on its own goes to the shards with its query bytes as
        # received (the validated array is a view of them); a merged batch is packed anew.
        received = request.queries.packed or None

        async def run(batch: np.ndarray, deadline: float) -> Hits:
            packed = received if batch is queries else None
            return await col.search(batch, params, deadline, packed)

        hits = await self.batcher.submit(
            (col.spec.name, params), queries, self._deadline(context), run, Hits.rows
        )
        # Sized from what it will hold (each hit slot repeats its row's metadata) before the
        # message is built, stopping at the first row past the limit.
        check_search_response(hits, col.dim, self.settings.max_message_bytes)
        return search_response(hits)

    async def CreateSnapshot(self, request: Any, context: Any) -> AsyncIterator[Any]:
        deadline = deadline_from(context.time_remaining(), SNAPSHOT_DEADLINE_S)
        with self._snapshot_stream("create snapshot"):
            async for data in create_archive(self.runtime, request.collection, deadline):
                yield pb.SnapshotChunk(data=data)

    async def RestoreSnapshot(self, request_iterator: Any, context: Any) -> Any:
        deadline = deadline_from(context.time_remaining(), SNAPSHOT_DEADLINE_S)
        batch = min(self.settings.max_upsert_rows, RESTORE_BATCH_ROWS)
        with self._snapshot_stream("restore snapshot"):
            col = await restore_archive(self.runtime, request_iterator, deadline, batch)
        return collection_info(col.spec, _states(col), await col.count(None, deadline))


def _states(col: CollectionRuntime) -> list[ReplicaStatus]:
    return [r.status() for rs in col.shard_sets for r in rs.replicas]


def _finished_write(task: asyncio.Future[Any]) -> None:
    """Retrieve a shielded write's outcome, so a write its caller left is still logged."""
    if not task.cancelled() and task.exception() is not None:
        log.info("write finished with an error: %s", task.exception())
