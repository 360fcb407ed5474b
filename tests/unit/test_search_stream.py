"""Small searches travel over one persistent SearchStream per replica: the same answers as the
unary call, concurrent searches on one stream, errors and time-outs per request, the token
checked, and a replica that goes away fails its pending callers with ReplicaDown (and the
next search opens a new stream). A unary call in flight when the handle is closed fails with
ReplicaDown too, not with the CancelledError grpc.aio raises, which read as the caller's own
cancellation and ended the recall tuner for good; a caller that is cancelled still is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from shardvec.contract.errors import DeadlineExceeded, InvalidArgument, ReplicaDown
from shardvec.contract.filters import Cond
from shardvec.contract.limits import TOKEN_HEADER
from shardvec.contract.settings import IndexSettings
from shardvec.contract.types import ShardSearch
from shardvec.coordinator.replicas.shard_client import RemoteShard
from shardvec.shard.engine import ShardEngine
from shardvec.shard.server import ShardServer
from shardvec.v1 import shard_pb2
from tests import inproc

DIM = 8


def _server(tmp_path: Path) -> tuple[ShardServer, ShardEngine, np.ndarray]:
    engine = ShardEngine(tmp_path / "e", IndexSettings(dim=DIM))
    vecs = np.random.default_rng(1).standard_normal((300, DIM)).astype(np.float32)
    inproc.write(engine, 1, [f"r{i}" for i in range(300)], vecs, [{"i": i} for i in range(300)])
    return ShardServer(engine, token="t"), engine, vecs


def test_stream_answers_equal_unary_ones_also_concurrently(tmp_path: Path) -> None:
    server, engine, vecs = _server(tmp_path)

    async def main() -> None:
        streamed = RemoteShard("s", server.address, "t", stream=True)
        unary = RemoteShard("u", server.address, "t", stream=False)
        requests = [
            ShardSearch(queries=vecs[i : i + 1], k=5, include_metadata=True) for i in range(40)
        ] + [ShardSearch(queries=vecs[:3], k=4, where=Cond("i", "lt", 100), exact=True)]
        got = await asyncio.gather(*(streamed.search(r, 10) for r in requests))
        want = [await unary.search(r, 10) for r in requests]
        for a, b in zip(got, want, strict=True):
            assert (a.ids == b.ids).all()
            np.testing.assert_array_equal(a.scores, b.scores)
            assert (a.metadata is None) == (b.metadata is None)
            if a.metadata is not None and b.metadata is not None:
                assert (a.metadata == b.metadata).all()
        assert got[7].ids[0, 0] == "r7"
        await streamed.close()
        await unary.close()

    try:
        asyncio.run(main())
    finally:
        server.stop(0)
        engine.close()


def test_stream_errors_are_per_request(tmp_path: Path) -> None:
    server, engine, vecs = _server(tmp_path)

    async def main() -> None:
        shard = RemoteShard("s", server.address, "t")
        with pytest.raises(InvalidArgument):  # the engine refuses a wrong dimension
            await shard.search(ShardSearch(queries=np.ones((1, DIM + 1), np.float32), k=3), 10)
        ok = await shard.search(ShardSearch(queries=vecs[:1], k=3), 10)  # same stream goes on
        assert ok.ids[0, 0] == "r0"
        with pytest.raises(DeadlineExceeded):
            await shard.search(ShardSearch(queries=vecs[:1], k=3), 1e-9)
        await shard.close()

    try:
        asyncio.run(main())
    finally:
        server.stop(0)
        engine.close()


def test_stream_needs_the_token(tmp_path: Path) -> None:
    server, engine, vecs = _server(tmp_path)
    try:
        with grpc.insecure_channel(server.address) as channel:
            call = channel.stream_stream(
                "/shardvec.v1.Shard/SearchStream",
                request_serializer=shard_pb2.ShardStreamRequest.SerializeToString,
                response_deserializer=shard_pb2.ShardStreamResponse.FromString,
            )
            req = shard_pb2.ShardSearchRequest(k=1)
            req.queries.dim = DIM
            req.queries.packed = vecs[:1].astype("<f4").tobytes()
            msg = shard_pb2.ShardStreamRequest(id=1, search=req.SerializeToString(), timeout_s=5)
            for metadata in ((), ((TOKEN_HEADER, "wrong"),)):
                with pytest.raises(grpc.RpcError) as err:
                    list(call(iter([msg]), timeout=10, metadata=metadata))
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            answers = list(call(iter([msg]), timeout=10, metadata=((TOKEN_HEADER, "t"),)))
            assert [a.id for a in answers] == [1] and answers[0].result.ids[0] == "r0"
    finally:
        server.stop(0)
        engine.close()


def test_a_replica_that_goes_away_fails_its_callers_and_the_stream_reopens(tmp_path: Path) -> None:
    server, engine, vecs = _server(tmp_path)

    async def main() -> None:
        shard = RemoteShard("s", server.address, "t")
        assert (await shard.search(ShardSearch(queries=vecs[:1], k=3), 10)).ids[0, 0] == "r0"
        server.stop(0)
        with pytest.raises(ReplicaDown):
            await shard.search(ShardSearch(queries=vecs[:1], k=3), 5)
        port = int(server.address.rsplit(":", 1)[1])
        again = ShardServer(engine, token="t", port=port)  # the process is back
        try:
            for _ in range(50):  # the channel reconnects within its backoff (<= 1 s)
                try:
                    res = await shard.search(ShardSearch(queries=vecs[1:2], k=3), 5)
                    break
                except ReplicaDown:
                    await asyncio.sleep(0.1)
            assert res.ids[0, 0] == "r1"
        finally:
            again.stop(0)
        await shard.close()

    try:
        asyncio.run(main())
    finally:
        engine.close()


def test_a_call_in_flight_when_the_handle_closes_is_replica_down_not_a_cancellation() -> None:
    async def main() -> None:
        entered, never = asyncio.Event(), asyncio.Event()

        async def count(request: bytes, context: object) -> bytes:
            entered.set()
            await never.wait()  # a replica busy past the close
            return b""

        server = grpc.aio.server()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "shardvec.v1.Shard", {"Count": grpc.unary_unary_rpc_method_handler(count)}
        )])  # fmt: skip
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            shard = RemoteShard("s", f"127.0.0.1:{port}", "t")
            call = asyncio.create_task(shard.count(None, 30))
            await entered.wait()
            await shard.close()
            with pytest.raises(ReplicaDown, match="connection was closed"):
                await call

            entered.clear()
            shard = RemoteShard("s", f"127.0.0.1:{port}", "t")
            call = asyncio.create_task(shard.count(None, 30))
            await entered.wait()
            call.cancel()  # the caller's own cancellation is still one
            with pytest.raises(asyncio.CancelledError):
                await call
            await shard.close()
        finally:
            await server.stop(0)

    asyncio.run(main())
