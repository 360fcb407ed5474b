"""Snapshot streams (security review, "Hardening" 3): CreateSnapshot needs the full key, and
at most max_snapshot_streams snapshot calls run at once; one more is RESOURCE_EXHAUSTED.
The real service and guard on a real grpc.aio server (loopback); only the archive producer
is replaced, by one that holds its stream open until the test lets it go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from shardvec.contract.limits import API_KEY_HEADER
from shardvec.coordinator.api import service as service_mod
from shardvec.coordinator.api.interceptors import GuardInterceptor
from shardvec.coordinator.api.service import WRITE_METHODS, VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["VectorSearch"]
FULL = ((API_KEY_HEADER, "full"),)
RO = ((API_KEY_HEADER, "ro"),)


async def _scenario(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    release = asyncio.Event()
    started: list[str] = []

    async def held_archive(runtime: Any, name: str, deadline: float) -> AsyncIterator[bytes]:
        started.append(name)
        yield b"first"
        await release.wait()
        yield b"last"

    monkeypatch.setattr(service_mod, "create_archive", held_archive)
    settings = CoordinatorSettings(data_dir="/nonexistent", max_snapshot_streams=2)
    svc = VectorSearchService(None, settings, MicroBatcher())  # type: ignore[arg-type]
    guard = GuardInterceptor(
        service_prefix="/shardvec.v1.VectorSearch/",
        write_methods=WRITE_METHODS,
        api_key="full",
        read_only_key="ro",
        request_types={m.name: m.input_type for m in SERVICE.methods},
    )
    server = grpc.aio.server(interceptors=[guard])
    pb_grpc.add_VectorSearchServicer_to_server(svc, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    out: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.VectorSearchStub(channel)

            async def code_of(call: Any) -> str:
                try:
                    chunks = []
                    while (c := await call.read()) is not grpc.aio.EOF:
                        chunks.append(c.data)
                except grpc.aio.AioRpcError as exc:
                    return f"{exc.code().name} {exc.details()}"
                return f"OK {chunks}"

            def snap(name: str, metadata: Any = FULL) -> Any:
                return stub.CreateSnapshot(
                    pb.CreateSnapshotRequest(collection=name), metadata=metadata, timeout=10
                )

            out["ro"] = await code_of(snap("ro", RO))
            held = [snap("a"), snap("b")]
            for call in held:
                assert (await call.read()).data == b"first"  # both streams are running
            out["third"] = await code_of(snap("c"))
            release.set()
            out["held"] = [await code_of(call) for call in held]
            out["after"] = await code_of(snap("d"))
    finally:
        await server.stop(None)
    out["started"] = started
    return out


def test_snapshot_streams_are_limited_and_need_the_full_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = asyncio.run(_scenario(monkeypatch))
    assert out["ro"].startswith("PERMISSION_DENIED")
    assert out["third"].startswith("RESOURCE_EXHAUSTED") and "max_snapshot_streams" in out["third"]
    assert out["held"] == ["OK [b'last']", "OK [b'last']"]  # read() took the first chunk
    assert out["after"] == "OK [b'first', b'last']"  # the slots are given back
    assert out["started"] == ["a", "b", "d"]


def test_max_snapshot_streams_must_be_positive() -> None:
    from shardvec.contract.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="max_snapshot_streams"):
        CoordinatorSettings(data_dir="/d", max_snapshot_streams=0)
