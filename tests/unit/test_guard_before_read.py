"""The key is checked on the call's metadata before its message is read (security review,
"Hardening" 1b): a caller without the right key cannot make the server receive, buffer or
decode a request. Real grpc.aio server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from shardvec.contract.limits import API_KEY_HEADER
from shardvec.coordinator.api.interceptors import GuardInterceptor
from shardvec.coordinator.api.service import WRITE_METHODS
from shardvec.v1 import vector_search_pb2 as pb

UPSERT = "/shardvec.v1.VectorSearch/Upsert"
SNAPSHOT = "/shardvec.v1.VectorSearch/CreateSnapshot"


async def _scenario() -> dict[str, Any]:
    decoded: list[int] = []
    served: list[str] = []
    seen: list[tuple[str, str]] = []

    def counting(raw: bytes) -> Any:
        decoded.append(len(raw))
        return pb.UpsertRequest.FromString(raw)

    async def upsert(request: Any, context: Any) -> Any:
        served.append("Upsert")
        return pb.UpsertResponse(upserted=len(request.ids))

    async def snapshot(request: Any, context: Any) -> AsyncIterator[Any]:
        served.append("CreateSnapshot")
        yield pb.SnapshotChunk(data=b"x")

    handlers = {
        "Upsert": grpc.unary_unary_rpc_method_handler(
            upsert,
            request_deserializer=counting,
            response_serializer=pb.UpsertResponse.SerializeToString,
        ),
        "CreateSnapshot": grpc.unary_stream_rpc_method_handler(
            snapshot,
            request_deserializer=pb.CreateSnapshotRequest.FromString,
            response_serializer=pb.SnapshotChunk.SerializeToString,
        ),
    }
    guard = GuardInterceptor(
        service_prefix="/shardvec.v1.VectorSearch/",
        write_methods=WRITE_METHODS,
        api_key="full",
        read_only_key="ro",
        observe=lambda method, code, _s: seen.append((method, code)),
    )
    server = grpc.aio.server(interceptors=[guard])
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("shardvec.v1.VectorSearch", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    out: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            # The client opens the call (metadata sent) but never sends the message: only a
            # server that decides on the metadata alone can answer before the deadline.
            never = channel.stream_unary(
                UPSERT,
                request_serializer=lambda b: b,
                response_deserializer=pb.UpsertResponse.FromString,
            )
            never_stream = channel.stream_stream(
                SNAPSHOT, request_serializer=lambda b: b, response_deserializer=lambda b: b
            )

            async def silent() -> AsyncIterator[bytes]:
                await asyncio.Event().wait()
                yield b""

            async def code_of(call: Any) -> str:
                try:
                    result = await call if not hasattr(call, "__aiter__") else [
                        c async for c in call
                    ]
                except grpc.aio.AioRpcError as exc:
                    return str(exc.code().name)
                return f"OK {result!r}"

            out["nokey"] = await code_of(never(silent(), timeout=5))
            out["wrongkey"] = await code_of(
                never(silent(), timeout=5, metadata=((API_KEY_HEADER, "nope"),))
            )
            out["ro_write"] = await code_of(
                never(silent(), timeout=5, metadata=((API_KEY_HEADER, "ro"),))
            )
            out["stream_nokey"] = await code_of(never_stream(silent(), timeout=5))
            big = pb.UpsertRequest(collection="c", ids=["a"] * 1000).SerializeToString()
            plain = channel.unary_unary(
                UPSERT,
                request_serializer=lambda b: b,
                response_deserializer=pb.UpsertResponse.FromString,
            )
            out["big_nokey"] = await code_of(plain(big, timeout=5))
            out["decoded_without_key"] = list(decoded)
            out["full"] = await code_of(
                plain(big, timeout=5, metadata=((API_KEY_HEADER, "full"),))
            )
    finally:
        await server.stop(None)
    out["decoded"] = decoded
    out["served"] = served
    out["seen"] = seen
    return out


def test_calls_without_the_key_are_refused_before_the_message_is_read() -> None:
    out = asyncio.run(_scenario())
    assert out["nokey"] == "UNAUTHENTICATED"
    assert out["wrongkey"] == "UNAUTHENTICATED"
    assert out["ro_write"] == "PERMISSION_DENIED"
    assert out["stream_nokey"] == "UNAUTHENTICATED"
    assert out["big_nokey"] == "UNAUTHENTICATED"
    assert out["decoded_without_key"] == []  # the deserializer never ran for a refused call
    assert out["full"] == "OK upserted: 1000\n"
    assert len(out["decoded"]) == 1 and out["served"] == ["Upsert"]
    assert out["seen"] == [
        ("Upsert", "UNAUTHENTICATED"),
        ("Upsert", "UNAUTHENTICATED"),
        ("Upsert", "PERMISSION_DENIED"),
        ("CreateSnapshot", "UNAUTHENTICATED"),
        ("Upsert", "UNAUTHENTICATED"),
        ("Upsert", "OK"),
    ]
