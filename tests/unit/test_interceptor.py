"""The guard interceptor on a real grpc.aio server (loopback), for unary and streaming RPCs:
keys, error mapping, request decoding and the per-RPC observe hook."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from shardvec.contract.errors import NotFound
from shardvec.contract.limits import API_KEY_HEADER
from shardvec.coordinator.api.interceptors import GuardInterceptor
from shardvec.coordinator.api.service import WRITE_METHODS
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["VectorSearch"]


class _Servicer(pb_grpc.VectorSearchServicer):  # type: ignore[misc]
    """Just enough of the service to exercise each handler kind."""

    async def Upsert(self, request: Any, context: Any) -> Any:
        return pb.UpsertResponse(upserted=len(request.ids))

    async def CreateSnapshot(self, request: Any, context: Any) -> AsyncIterator[Any]:
        if request.collection == "missing":
            raise NotFound("collection 'missing' does not exist")
        for i in range(3):
            yield pb.SnapshotChunk(data=bytes([i]) * 10)

    async def RestoreSnapshot(self, request_iterator: Any, context: Any) -> Any:
        first, size = None, 0
        async for chunk in request_iterator:
            first = first or chunk.restore_as
            size += len(chunk.data)
        return pb.CollectionInfo(name=f"{first}-{size}")


async def _scenario() -> tuple[list[tuple[str, str]], dict[str, Any]]:
    seen: list[tuple[str, str]] = []
    guard = GuardInterceptor(
        service_prefix="/shardvec.v1.VectorSearch/",
        write_methods=WRITE_METHODS,
        api_key="full",
        read_only_key="ro",
        observe=lambda method, code, _s: seen.append((method, code)),
        request_types={m.name: m.input_type for m in SERVICE.methods},
    )
    server = grpc.aio.server(interceptors=[guard])
    pb_grpc.add_VectorSearchServicer_to_server(_Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    out: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.VectorSearchStub(channel)
            full = ((API_KEY_HEADER, "full"),)
            ro = ((API_KEY_HEADER, "ro"),)

            async def code_of(coro: Any) -> tuple[str, str]:
                try:
                    await coro
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name, exc.details() or ""
                return "OK", ""

            async def drain(call: Any) -> list[Any]:
                return [c async for c in call]

            def chunks() -> Any:
                async def gen() -> AsyncIterator[Any]:
                    yield pb.SnapshotChunk(restore_as="x", data=b"ab")
                    yield pb.SnapshotChunk(data=b"cde")
                return gen()

            snap = stub.CreateSnapshot(pb.CreateSnapshotRequest(collection="c"), metadata=full)
            out["stream"] = [c.data for c in await drain(snap)]
            out["stream_nokey"] = await code_of(
                drain(stub.CreateSnapshot(pb.CreateSnapshotRequest(collection="c")))
            )
            out["stream_missing"] = await code_of(
                drain(stub.CreateSnapshot(pb.CreateSnapshotRequest(collection="missing"),
                                          metadata=full))
            )
            out["restore"] = (await stub.RestoreSnapshot(chunks(), metadata=full)).name
            out["restore_ro"] = await code_of(stub.RestoreSnapshot(chunks(), metadata=ro))
            raw = channel.unary_unary(
                "/shardvec.v1.VectorSearch/Upsert",
                request_serializer=lambda b: b,
                response_deserializer=pb.UpsertResponse.FromString,
            )
            bad_utf8 = b"\x12\x02\xff\xfe"  # field 2 (ids) holding invalid UTF-8
            out["bad_request"] = await code_of(raw(bad_utf8, metadata=full))
    finally:
        await server.stop(None)
    return seen, out


def test_guard_covers_unary_and_streaming_rpcs() -> None:
    seen, out = asyncio.run(_scenario())
    assert out["stream"] == [b"\x00" * 10, b"\x01" * 10, b"\x02" * 10]
    assert out["stream_nokey"][0] == "UNAUTHENTICATED"
    assert out["stream_missing"] == ("NOT_FOUND", "collection 'missing' does not exist")
    assert out["restore"] == "x-5"
    assert out["restore_ro"][0] == "PERMISSION_DENIED"
    assert out["bad_request"][0] == "INVALID_ARGUMENT" and "ids[0]" in out["bad_request"][1]
    assert seen == [
        ("CreateSnapshot", "OK"),
        ("CreateSnapshot", "UNAUTHENTICATED"),
        ("CreateSnapshot", "NOT_FOUND"),
        ("RestoreSnapshot", "OK"),
        ("RestoreSnapshot", "PERMISSION_DENIED"),
        ("Upsert", "INVALID_ARGUMENT"),
    ]

