"""The coordinator's handle on one remote shard replica: an async gRPC stub with deadlines.

`RemoteShard` implements the shard interface (shardvec.contract.shard_api.ShardLike) over the
internal `shardvec.v1.Shard` service, converting domain values to wire messages and back with
shardvec.contract.convert_shard. gRPC failures are translated here, at the boundary, into shardvec
errors that name the replica.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any, overload

import grpc
import numpy as np

from shardvec.contract.buckets import encode_buckets
from shardvec.contract.convert_shard import (
    changes_from_proto,
    count_request,
    get_request,
    get_result_from_proto,
    scroll_page_from_proto,
    shard_hits_from_proto,
    shard_info_from_proto,
    shard_scroll_to_proto,
    shard_search_payload,
    snapshot_chunk_from_proto,
    stage_request,
    write_ack_from_proto,
)
from shardvec.contract.errors import (
    DeadlineExceeded,
    ReplicaDown,
    ReplicaFault,
    ShardvecError,
    StaleLayout,
    error_for_status,
)
from shardvec.contract.facets import FacetCounts, facet_counts_from_proto, facet_request
from shardvec.contract.filters import DocFilter, Filter
from shardvec.contract.groups import (
    GroupResult,
    ShardGroupSearch,
    group_result_from_proto,
    group_search_to_proto,
)
from shardvec.contract.keyword import (
    keyword_search_to_proto,
    keyword_stats_from_proto,
)
from shardvec.contract.limits import EPOCH_HEADER, TOKEN_HEADER
from shardvec.contract.limits import INTERNAL_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from shardvec.contract.types import (
    Change,
    GetResult,
    KeywordSearch,
    KeywordStats,
    ScrollPage,
    SearchResult,
    ShardInfo,
    ShardScroll,
    ShardSearch,
    ShardWrite,
    SnapshotChunk,
    WriteAck,
)
from shardvec.v1 import shard_pb2, shard_pb2_grpc

# Status codes that mean "this replica is not serving": transport failures alone (the
# connection broke, the process is gone or shutting down). A replica that answers INTERNAL or
# UNKNOWN (a bug on its side), RESOURCE_EXHAUSTED or UNAUTHENTICATED is serving: the read moves
# to another replica (ReplicaFault) but nobody is marked dead, and a caller's deadline never
# marks anyone (DeadlineExceeded).
REPLICA_DOWN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
REPLICA_FAULT = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                 grpc.StatusCode.UNAUTHENTICATED}


STREAM_MAX_QUERIES = 64  # larger batches go unary: throughput-bound, and no copy into a wrapper


class _SearchStream:
    """One long-lived SearchStream to a replica, shared by every caller: requests carry ids, a
    writer task sends them in order and a reader task resolves each caller's future as its
    answer arrives. Callers only queue a request and wait for its future, so a caller that
    leaves (its deadline, a cancellation) never cancels a write on the shared call, which
    would end the stream for every other caller. A broken stream fails its callers with
    ReplicaDown and is opened afresh by the next search."""

    def __init__(self, shard: RemoteShard) -> None:
        self._shard = shard
        self._call: Any = None
        self._outbox: asyncio.Queue[shard_pb2.ShardStreamRequest] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[int, asyncio.Future[shard_pb2.ShardStreamResponse]] = {}
        self._ids = itertools.count(1)

    def _open(self) -> asyncio.Queue[shard_pb2.ShardStreamRequest]:
        if self._call is None or self._outbox is None:
            call = self._call = self._shard._search_stream(metadata=self._shard._metadata)
            outbox = self._outbox = asyncio.Queue()
            self._tasks = [asyncio.ensure_future(self._read(call)),
                           asyncio.ensure_future(self._write(call, outbox))]
        return self._outbox

    async def _write(self, call: Any, outbox: asyncio.Queue[shard_pb2.ShardStreamRequest]) -> None:
        try:
            while True:
                req = await outbox.get()
                if req.id not in self._pending:  # its caller left before it went out
                    continue
                await call.write(req)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            call.cancel()  # the stream broke: the reader fails its callers

    async def _read(self, call: Any) -> None:
        error: ShardvecError | None = None
        try:
            async for answer in call:
                fut = self._pending.pop(answer.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(answer)
        except grpc.aio.AioRpcError as exc:
            error = self._shard._error(exc)
        except asyncio.CancelledError:
            error = ReplicaDown(f"{self._shard.name}: search stream closed")
        finally:
            if self._call is call:
                self._call, self._outbox = None, None
                for task in self._tasks[1:]:
                    task.cancel()
            message = error.message if error else f"{self._shard.name}: search stream ended"
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ReplicaDown(message))
            self._pending.clear()

    async def search(
        self, payload: bytes, timeout: float, epoch: int = 0
    ) -> shard_pb2.ShardSearchResponse:
        request_id = next(self._ids)
        fut: asyncio.Future[shard_pb2.ShardStreamResponse] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[request_id] = fut
        try:
            req = shard_pb2.ShardStreamRequest(
                id=request_id, search=payload, timeout_s=timeout, epoch=epoch
            )
            self._open().put_nowait(req)
            answer = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise DeadlineExceeded(
                f"{self._shard.name} ({self._shard.address}) timed out"
            ) from None
        finally:
            self._pending.pop(request_id, None)
        if answer.code:
            code = _STATUS_BY_VALUE.get(answer.code, grpc.StatusCode.UNKNOWN)
            raise self._shard._status_error(code, answer.message)
        return answer.result

    async def close(self) -> None:
        call, self._call, self._outbox = self._call, None, None
        if call is not None:
            call.cancel()
        for task in self._tasks:
            task.cancel()


_STATUS_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def being_cancelled() -> bool:
    """Whether the running task has been asked to stop (Task.cancel), as against a
    CancelledError that reached it from something it awaited, such as a gRPC call whose
    channel was closed under it."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class RemoteShard:
    """A persistent channel to one replica's gRPC server (a ShardLike). Small searches (single
    queries, micro-batches) go over one persistent SearchStream, large ones as unary calls."""

    def __init__(self, name: str, address: str, token: str, *, stream: bool = True) -> None:
        self.name = name
        self.address = address
        self.epoch = 0  # a query front's layout epoch, sent on every read (with_epoch)
        self._view = False  # a with_epoch view: shares the channel, does not close it
        self._metadata: tuple[tuple[str, str], ...] = ((TOKEN_HEADER, token),)
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.enable_retries", 0),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        self._stub = shard_pb2_grpc.ShardStub(self._channel)
        # Search sends the request already serialized: one batch goes to every shard, and
        # serializing 1.5 MB of queries once instead of S times keeps it off the fan-out.
        self._search = self._channel.unary_unary(
            "/shardvec.v1.Shard/Search",
            request_serializer=None,
            response_deserializer=shard_pb2.ShardSearchResponse.FromString,
        )
        self._search_stream = self._channel.stream_stream(
            "/shardvec.v1.Shard/SearchStream",
            request_serializer=shard_pb2.ShardStreamRequest.SerializeToString,
            response_deserializer=shard_pb2.ShardStreamResponse.FromString,
        )
        self._stream = _SearchStream(self) if stream else None

    def with_epoch(self, epoch: int) -> RemoteShard:
        """This replica's handle for reads fenced by layout `epoch` (a query front's, see
        coordinator/fronts/): the same channel and stream, every read carrying the epoch."""
        view = copy.copy(self)
        view.epoch = epoch
        view._view = True
        view._metadata = ((TOKEN_HEADER, dict(self._metadata)[TOKEN_HEADER]),
                          (EPOCH_HEADER, str(epoch)))  # fmt: skip
        return view

    async def set_epoch(self, epoch: int, timeout: float) -> int:
        """Set this replica's layout epoch (0: none); returns the one it held."""
        req = shard_pb2.EpochSetRequest(epoch=epoch)
        return int((await self._call(self._stub.SetEpoch, req, timeout)).previous)

    async def _call(self, method: Any, req: Any, timeout: float) -> Any:
        if timeout <= 0:
            raise DeadlineExceeded(f"deadline exceeded before calling {self.name}")
        try:
            return await method(req, timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None
        except asyncio.CancelledError:
            if being_cancelled():
                raise
            raise self._closed() from None

    def _closed(self) -> ReplicaDown:
        """A call in flight when this handle's channel closed (the replica removed, its
        collection dropped): grpc.aio raises CancelledError in the caller, which is not being
        cancelled; it is told, as for any replica gone, that this one is down."""
        return ReplicaDown(f"{self.name} ({self.address}): its connection was closed")

    def _error(self, exc: grpc.aio.AioRpcError) -> ShardvecError:
        return self._status_error(exc.code(), exc.details() or "")

    def _status_error(self, code: grpc.StatusCode, details: str) -> ShardvecError:
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(f"{self.name} ({self.address}) timed out")
        if code == StaleLayout.code:
            return StaleLayout(f"{self.name}: {details}")
        if code in REPLICA_DOWN:
            return ReplicaDown(f"{self.name} ({self.address}) is down: {details}")
        if code in REPLICA_FAULT:
            return ReplicaFault(f"{self.name} ({self.address}) failed: {code.name}: {details}")
        return error_for_status(code, f"{self.name}: {details}")

    async def stage(self, seq: int, write: ShardWrite, timeout: float) -> int:
        req = stage_request(seq, write)
        resp = await self._call(self._stub.Stage, req, timeout)
        return int(resp.staged_bytes)

    async def resolve(
        self, seq: int, commit: bool, timeout: float, owned: np.ndarray | None = None
    ) -> WriteAck:
        req = shard_pb2.ShardResolveRequest(seq=seq, commit=commit, owned=encode_buckets(owned))
        return write_ack_from_proto(await self._call(self._stub.Resolve, req, timeout))

    async def get(
        self,
        ids: Sequence[str],
        include_metadata: bool,
        include_vectors: bool,
        timeout: float,
        include_documents: bool = False,
    ) -> GetResult:
        req = get_request(ids, include_metadata, include_vectors, include_documents)
        return get_result_from_proto(await self._call(self._stub.Get, req, timeout))

    async def count(
        self,
        where: Filter | None,
        timeout: float,
        where_document: DocFilter | None = None,
        buckets: np.ndarray | None = None,
    ) -> int:
        req = count_request(where, where_document, buckets)
        resp = await self._call(self._stub.Count, req, timeout)
        return int(resp.count)

    @overload
    async def search(self, request: ShardSearch, timeout: float) -> SearchResult: ...
    @overload
    async def search(self, request: bytes, timeout: float) -> shard_pb2.ShardSearchResponse: ...
    async def search(
        self, request: ShardSearch | bytes, timeout: float
    ) -> SearchResult | shard_pb2.ShardSearchResponse:
        """Per query the best k rows of the shard (and their metadata and vectors if asked).

        The batch is serialized once for every shard it goes to (shard_search_payload). Given
        bytes (a serialized ShardSearchRequest) it returns the raw response: the wire alone,
        for the benchmarks that measure it.
        """
        if isinstance(request, bytes):
            resp: shard_pb2.ShardSearchResponse = await self._call(self._search, request, timeout)
            return resp
        payload = shard_search_payload(request)
        if self._stream is not None and request.nq <= STREAM_MAX_QUERIES:
            if timeout <= 0:
                raise DeadlineExceeded(f"deadline exceeded before calling {self.name}")
            resp = await self._stream.search(payload, timeout, self.epoch)
        else:
            resp = await self._call(self._search, payload, timeout)
        # Decoded as each shard answers: the early ones overlap the last one's search.
        return shard_hits_from_proto(resp, request.nq, int(request.queries.shape[1]))

    async def facet(
        self,
        field: str,
        where: Filter | None,
        timeout: float,
        where_document: DocFilter | None = None,
        buckets: np.ndarray | None = None,
    ) -> FacetCounts:
        req = facet_request(field, where, where_document, buckets)
        return facet_counts_from_proto(await self._call(self._stub.Facet, req, timeout))

    async def group_search(self, request: ShardGroupSearch, timeout: float) -> GroupResult:
        req = group_search_to_proto(request)
        resp = await self._call(self._stub.GroupSearch, req, timeout)
        return group_result_from_proto(resp, request.search.nq,
                                       int(request.search.queries.shape[1]))  # fmt: skip

    async def keyword_stats(
        self, texts: Sequence[str], timeout: float, buckets: np.ndarray | None = None
    ) -> KeywordStats:
        req = shard_pb2.KeywordStatsRequest(texts=list(texts), buckets=encode_buckets(buckets))
        return keyword_stats_from_proto(await self._call(self._stub.KeywordStats, req, timeout))

    async def keyword_search(self, request: KeywordSearch, timeout: float) -> SearchResult:
        req = keyword_search_to_proto(request)
        resp = await self._call(self._stub.KeywordSearch, req, timeout)
        slots = request.nq * int(resp.k)
        dim = len(resp.vectors) // (4 * slots) if resp.vectors and slots else 1
        return shard_hits_from_proto(resp, request.nq, dim)

    async def scroll(self, request: ShardScroll, timeout: float) -> ScrollPage:
        resp = await self._call(self._stub.Scroll, shard_scroll_to_proto(request), timeout)
        dim = int(resp.vectors.dim) or 1
        return scroll_page_from_proto(
            resp, dim, request.include_vectors, request.include_documents
        )

    async def info(self, timeout: float) -> ShardInfo:
        resp = await self._call(self._stub.Info, shard_pb2.ShardInfoRequest(), timeout)
        return shard_info_from_proto(resp)

    async def changes(
        self, after_seq: int, limit: int, timeout: float
    ) -> tuple[list[Change], int]:
        req = shard_pb2.ShardChangesRequest(after_seq=after_seq, limit=limit)
        resp = await self._call(self._stub.Changes, req, timeout)
        # The server sets vectors.dim whenever it sends vectors.
        return changes_from_proto(resp, int(resp.vectors.dim) or 1), int(resp.applied_seq)

    async def snapshot(self, timeout: float) -> AsyncIterator[SnapshotChunk]:
        """The replica's snapshot stream: a manifest chunk, then the files' bytes."""
        if timeout <= 0:
            raise DeadlineExceeded(f"deadline exceeded before calling {self.name}")
        call = self._stub.Snapshot(
            shard_pb2.ShardSnapshotRequest(), timeout=timeout, metadata=self._metadata
        )
        try:
            async for chunk in call:
                yield snapshot_chunk_from_proto(chunk)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None
        except asyncio.CancelledError:
            if being_cancelled():
                raise
            raise self._closed() from None
        finally:
            call.cancel()

    async def close(self) -> None:
        if self._view:
            return
        if self._stream is not None:
            await self._stream.close()
        await self._channel.close()
