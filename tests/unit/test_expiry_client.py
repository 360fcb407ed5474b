"""Expiry through the Python client and the CLI, against the real public service on loopback
gRPC over in-process replicas: the collection default, per-row and per-batch ttl_seconds and
expires_at sliced across the client's request batches, update, set_collection_options, and
`shardvec create --ttl` shown by `shardvec status`."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from click.testing import CliRunner

from shardvec.cluster.cli import cli
from shardvec.cluster.client import Client
from shardvec.contract.errors import InvalidArgument
from shardvec.coordinator.api.interceptors import GuardInterceptor
from shardvec.coordinator.api.service import WRITE_METHODS, VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc
from tests.inproc import LocalControls

DIM = 4


@dataclass
class Served:
    address: str
    controls: LocalControls

    def expiry(self, collection: str, rid: str) -> float:
        """The absolute expiry replica 0 of `rid`'s shard holds (0.0: never)."""
        for (name, _, replica), control in self.controls.controls.items():
            engine = control.engine
            if name != collection or replica or engine is None:
                continue
            slot = engine._slots.id_to_slot.get(rid)
            if slot is not None:
                at = float(engine._slots.expires[slot])
                return at if math.isfinite(at) else 0.0
        raise AssertionError(f"{rid} is not held")


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    box: dict[str, Any] = {}
    ready = threading.Event()
    controls = LocalControls(tmp_path)

    async def start() -> None:
        runtime = CoordinatorRuntime(tmp_path, controls)
        service = VectorSearchService(runtime, CoordinatorSettings(data_dir=str(tmp_path)),
                                      MicroBatcher(window_s=0.0))  # fmt: skip
        guard = GuardInterceptor(
            service_prefix="/shardvec.v1.VectorSearch/", write_methods=WRITE_METHODS,
            api_key="", read_only_key="",
            request_types={m.name: m.input_type
                           for m in pb.DESCRIPTOR.services_by_name["VectorSearch"].methods},
        )  # fmt: skip
        server = grpc.aio.server(interceptors=[guard])
        pb_grpc.add_VectorSearchServicer_to_server(service, server)
        box["port"] = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        box["server"], box["runtime"] = server, runtime
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield Served(f"127.0.0.1:{box['port']}", controls)
    finally:
        async def stop() -> None:
            await box["server"].stop(None)
            await box["runtime"].shutdown()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def test_the_client_sets_expiry_per_row_and_per_collection(served: Served) -> None:
    vecs = np.random.default_rng(3).standard_normal((10, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(10)]
    with Client(served.address, discover=False) as client:
        col = client.create_collection("c", DIM, shards=2, ttl_seconds=600)
        assert client.describe("c")["ttl_seconds"] == 600
        t = time.time()
        col.upsert(ids[:4], vecs[:4])  # the collection default
        col.upsert(ids[4:8], vecs[4:8], ttl_seconds=[10, 20, 0, 40], batch_size=3)  # per row
        at = t + 5000
        col.upsert(ids[8:], vecs[8:], expires_at=at)  # one absolute time for the batch
        after = time.time()
        for rid in ids[:4]:
            assert t + 600 <= served.expiry("c", rid) <= after + 600
        for rid, ttl in zip(ids[4:8], (10, 20, 0, 40), strict=True):
            got = served.expiry("c", rid)
            assert got == 0.0 if not ttl else t + ttl <= got <= after + ttl
        assert [served.expiry("c", r) for r in ids[8:]] == [at, at]
        # update: naming no expiry keeps it, ttl 0 clears it, expires_at sets it
        col.update(["r0"], [{"k": 1}])
        col.update(["r1"], ttl_seconds=0)
        col.update(["r2", "r3"], expires_at=[at, at + 1])
        assert served.expiry("c", "r0") > t
        assert served.expiry("c", "r1") == 0.0
        assert [served.expiry("c", r) for r in ("r2", "r3")] == [at, at + 1]
        info = client.set_collection_options("c", ttl_seconds=0)
        assert info["ttl_seconds"] == 0
        col.upsert(["late"], vecs[:1])
        assert served.expiry("c", "late") == 0.0
        assert col.count() == 11
        with pytest.raises(InvalidArgument, match="ttl_seconds: 2 values for 3 ids"):
            col.upsert(ids[:3], vecs[:3], ttl_seconds=[1, 2])
        with pytest.raises(InvalidArgument, match="not both"):
            col.upsert(ids[:1], vecs[:1], ttl_seconds=1, expires_at=at)
        with pytest.raises(InvalidArgument, match="expires_at"):
            col.update(["r0"], expires_at=t - 100)
        with pytest.raises(InvalidArgument, match="ttl_seconds"):
            client.create_collection("bad", DIM, ttl_seconds=-5)


def test_the_cli_creates_a_collection_with_a_ttl(served: Served) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["--server", served.address, "create", "s", "--dim", "4",
                              "--ttl", "86400"])  # fmt: skip
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["--server", served.address, "status"])
    assert out.exit_code == 0, out.output
    assert "ttl=86400s" in out.output
    out = runner.invoke(cli, ["--server", served.address, "create", "t", "--dim", "4",
                              "--ttl", "-1"])  # fmt: skip
    assert out.exit_code != 0 and "ttl_seconds" in out.output
