"""The real public service and its guard on loopback gRPC over in-process replicas, on an event
loop of its own thread: for tests of the Python client and the CLI without Ray."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from shardvec.coordinator.api.interceptors import GuardInterceptor
from shardvec.coordinator.api.service import WRITE_METHODS, VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc
from tests.inproc import LocalControls


@contextlib.contextmanager
def serve_public(tmp_path: Path) -> Iterator[tuple[str, LocalControls]]:
    """Serve the public API from `tmp_path`; yields its address and the replicas' controls,
    and stops the server and the runtime on the way out."""
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
        yield f"127.0.0.1:{box['port']}", controls
    finally:
        async def stop() -> None:
            await box["server"].stop(None)
            await box["runtime"].shutdown()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
