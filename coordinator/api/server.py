"""The public gRPC server, as the coordinator and every query front serve it.

`serve_public` puts a servicer of shardvec.v1.VectorSearch behind the guard (API keys, the
read-only key, request decoding and limits, per-method metrics: coordinator/api/interceptors.py),
with health, reflection and TLS, so a front answers exactly as the coordinator does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shardvec.contract.heap import fix_mmap_threshold
from shardvec.coordinator.api.interceptors import GuardInterceptor
from shardvec.coordinator.api.service import WRITE_METHODS
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.metrics import CoordinatorMetrics
from shardvec.v1 import vector_search_pb2, vector_search_pb2_grpc

SERVICE_NAME = "shardvec.v1.VectorSearch"


class LoopServer:
    """A server on its own thread running an asyncio loop (the coordinator, each front):
    `_begin` runs the subclass's `_start()` there and returns the address it serves on (or
    re-raises its failure); `_run` runs a coroutine there from a Ray actor method's thread.

    The process is then a server's: `_begin` fixes glibc's mmap threshold
    (proto/shardvec/contract/heap.py), as a replica does, so the batches it decodes leave no
    free heap behind (loading 200k rows x 384 through a coordinator: +77 MB of PSS on glibc's
    dynamic rule, +5 MB fixed)."""

    _loop: asyncio.AbstractEventLoop

    async def _start(self) -> None:
        raise NotImplementedError

    def _begin(self, name: str) -> str:
        fix_mmap_threshold()
        self._loop = asyncio.new_event_loop()
        self._ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        return self._ready.result()  # re-raises a startup failure

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._loop.run_forever()

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)


def cluster_info_response(
    fronts: list[dict[str, str]], coordinator: str, served_by: str
) -> vector_search_pb2.ClusterInfoResponse:
    resp = vector_search_pb2.ClusterInfoResponse(coordinator=coordinator, served_by=served_by)
    for f in sorted(fronts, key=lambda f: f["address"]):
        resp.fronts.add(
            address=f["address"], node_id=f["node_id"], metrics_address=f.get("metrics_address", "")
        )
    return resp


async def serve_public(
    s: CoordinatorSettings, port: int, servicer: Any, metrics: CoordinatorMetrics
) -> tuple[grpc.aio.Server, Any, int]:
    """Serve `servicer` as shardvec.v1.VectorSearch on s.host:port with the guard (auth,
    limits, per-method metrics), health, reflection and TLS as `s` says; the coordinator and
    every query front serve through this. Returns the server, its health servicer and the
    port bound."""
    guard = GuardInterceptor(
        service_prefix=f"/{SERVICE_NAME}/",
        write_methods=WRITE_METHODS,
        api_key=s.api_key,
        read_only_key=s.read_only_key,
        observe=metrics.observe,
        request_types={
            m.name: m.input_type
            for m in vector_search_pb2.DESCRIPTOR.services_by_name["VectorSearch"].methods
        },
    )
    server = grpc.aio.server(
        interceptors=[guard],
        options=[
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    vector_search_pb2_grpc.add_VectorSearchServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        vector_search_pb2.DESCRIPTOR.services_by_name["VectorSearch"].full_name,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    target = f"{s.host}:{port}"
    if s.tls_cert:
        creds = grpc.ssl_server_credentials(
            [(Path(s.tls_key).read_bytes(), Path(s.tls_cert).read_bytes())]
        )
        bound = server.add_secure_port(target, creds)
    else:
        bound = server.add_insecure_port(target)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, bound
