"""The coordinator's handle on one remote shard replica: an async gRPC stub with deadlines.

`ShardLike` is the shard interface the coordinator codes against; `RemoteShard` implements
it over the internal `shardvec.v1.Shard` service. gRPC failures are translated here, at the
boundary, into shardvec errors that name the replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc
from shardvec.contract.errors import DeadlineExceeded, ShardvecError, Unavailable, error_for_status
from shardvec.contract.limits import INTERNAL_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from shardvec.contract.limits import TOKEN_HEADER
from shardvec.v1 import shard_pb2, shard_pb2_grpc

# Status codes that mean "this replica is not serving", as opposed to "the request is bad".
REPLICA_DOWN = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAUTHENTICATED,
}


class ReplicaDown(Unavailable):
    """A replica did not answer (process dead, restarting, unreachable)."""


class ShardLike(Protocol):
    """What the coordinator needs from one shard replica; every call takes a timeout."""

    name: str

    async def upsert(self, req: shard_pb2.ShardUpsertRequest, timeout: float) -> Any: ...
    async def delete(self, req: shard_pb2.ShardDeleteRequest, timeout: float) -> Any: ...
    async def get(self, req: shard_pb2.ShardGetRequest, timeout: float) -> Any: ...
    async def count(self, req: shard_pb2.ShardCountRequest, timeout: float) -> Any: ...
    async def search(self, req: bytes, timeout: float) -> Any: ...
    async def info(self, timeout: float) -> Any: ...


class RemoteShard:
    """A persistent channel to one replica's gRPC server."""

    def __init__(self, name: str, address: str, token: str) -> None:
        self.name = name
        self.address = address
        self._metadata = ((TOKEN_HEADER, token),)
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
        # Search takes the request already serialized: one batch goes to every shard, and
        # serializing 1.5 MB of queries once instead of S times keeps it off the fan-out.
        self._search = self._channel.unary_unary(
            "/shardvec.v1.Shard/Search",
            request_serializer=None,
            response_deserializer=shard_pb2.ShardSearchResponse.FromString,
        )

    async def _call(self, method: Any, req: Any, timeout: float) -> Any:
        if timeout <= 0:
            raise DeadlineExceeded(f"deadline exceeded before calling {self.name}")
        try:
            return await method(req, timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.aio.AioRpcError) -> ShardvecError:
        code, details = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(f"{self.name} ({self.address}) timed out")
        if code in REPLICA_DOWN:
            return ReplicaDown(f"{self.name} ({self.address}) is down: {details}")
        return error_for_status(code, f"{self.name}: {details}")

    async def upsert(self, req: shard_pb2.ShardUpsertRequest, timeout: float) -> Any:
        return await self._call(self._stub.Upsert, req, timeout)

    async def delete(self, req: shard_pb2.ShardDeleteRequest, timeout: float) -> Any:
        return await self._call(self._stub.Delete, req, timeout)

    async def get(self, req: shard_pb2.ShardGetRequest, timeout: float) -> Any:
        return await self._call(self._stub.Get, req, timeout)

    async def count(self, req: shard_pb2.ShardCountRequest, timeout: float) -> Any:
        return await self._call(self._stub.Count, req, timeout)

    async def search(self, req: bytes, timeout: float) -> Any:
        """A ShardSearchRequest, serialized (`SerializeToString`)."""
        return await self._call(self._search, req, timeout)

    async def info(self, timeout: float) -> Any:
        return await self._call(self._stub.Info, shard_pb2.ShardInfoRequest(), timeout)

    async def changes(self, after_seq: int, limit: int, timeout: float) -> Any:
        req = shard_pb2.ShardChangesRequest(after_seq=after_seq, limit=limit)
        return await self._call(self._stub.Changes, req, timeout)

    async def snapshot(self, timeout: float) -> AsyncIterator[Any]:
        """The replica's snapshot stream: a manifest chunk, then the files' bytes."""
        if timeout <= 0:
            raise DeadlineExceeded(f"deadline exceeded before calling {self.name}")
        call = self._stub.Snapshot(
            shard_pb2.ShardSnapshotRequest(), timeout=timeout, metadata=self._metadata
        )
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()


def is_bad_request(exc: BaseException) -> bool:
    """True for errors caused by the request itself (every replica would say the same)."""
    return isinstance(exc, ShardvecError) and not isinstance(exc, (ReplicaDown, DeadlineExceeded))
