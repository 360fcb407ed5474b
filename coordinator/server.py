"""The coordinator process: a grpc.aio server on its own event loop, and its Ray actor.

`Coordinator` is a plain class: it starts a thread running an asyncio loop that restores the
collections and serves `shardvec.v1.VectorSearch` (plus health and reflection). Ray restarts
the actor by running `__init__` again, which is also the recovery path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from shardvec.contract.private_files import restrict_umask
from shardvec.v1 import vector_search_pb2, vector_search_pb2_grpc

from coordinator.batching import MicroBatcher
from coordinator.config import CoordinatorSettings
from coordinator.embedding import ray_pool
from coordinator.interceptors import GuardInterceptor
from coordinator.metrics import CoordinatorMetrics
from coordinator.ray_control import alive_nodes, ray_controls
from coordinator.runtime import CoordinatorRuntime
from coordinator.service import WRITE_METHODS, VectorSearchService

log = logging.getLogger(__name__)

SERVICE_NAME = "shardvec.v1.VectorSearch"
COORDINATOR_NAME = "shardvec-coordinator"


class Coordinator:
    """Serves the public API until `shutdown()`."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = CoordinatorSettings.from_dict(settings)
        restrict_umask()  # registry, snapshot work files: private (contract/private_files.py)
        self._loop = asyncio.new_event_loop()
        self._ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name="coordinator", daemon=True)
        self._thread.start()
        self.address = self._ready.result()  # re-raises a startup failure

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._loop.run_forever()

    async def _start(self) -> None:
        s = self.settings
        self.metrics = CoordinatorMetrics()
        opts = s.to_dict()
        self.runtime = CoordinatorRuntime(
            Path(s.data_dir), opts, ray_controls(Path(s.data_dir), opts)
        )
        self.runtime.on_shard_search = self.metrics.observe_shard_search
        self.runtime.node_list = alive_nodes
        await self.runtime.restore()
        self.runtime.start_health_checks()
        if s.auto_rebalance:
            self.runtime.start_auto_rebalance(alive_nodes)
        self.batcher = MicroBatcher(
            window_s=s.batch_window_s,
            max_batch=s.batch_max,
            max_in_flight=s.batch_in_flight,
            on_batch=self.metrics.observe_batch,
        )
        self.embedder_pool = ray_pool(s)  # embedder actors start at the first text to embed
        guard = GuardInterceptor(
            service_prefix=f"/{SERVICE_NAME}/",
            write_methods=WRITE_METHODS,
            api_key=s.api_key,
            read_only_key=s.read_only_key,
            observe=self.metrics.observe,
            request_types={
                m.name: m.input_type
                for m in vector_search_pb2.DESCRIPTOR.services_by_name["VectorSearch"].methods
            },
        )
        self.server = grpc.aio.server(
            interceptors=[guard],
            options=[
                ("grpc.max_receive_message_length", s.max_message_bytes),
                ("grpc.max_send_message_length", s.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        vector_search_pb2_grpc.add_VectorSearchServicer_to_server(
            VectorSearchService(self.runtime, s, self.batcher, embedders=self.embedder_pool),
            self.server,
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = (
            vector_search_pb2.DESCRIPTOR.services_by_name["VectorSearch"].full_name,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, self.server)
        target = f"{s.host}:{s.port}"
        if s.tls_cert:
            creds = grpc.ssl_server_credentials(
                [(Path(s.tls_key).read_bytes(), Path(s.tls_cert).read_bytes())]
            )
            port = self.server.add_secure_port(target, creds)
        else:
            port = self.server.add_insecure_port(target)
        await self.server.start()
        if s.metrics_port:
            self.metrics.attach(self.runtime, self._loop)
            self.metrics.serve(s.host, s.metrics_port)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        address = f"{s.host}:{port}"
        log.info("coordinator serving on %s (pid %d)", address, os.getpid())
        self._ready.set_result(address)

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def ping(self) -> str:
        return self.address

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this coordinator runs on (hex)."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def status(self) -> list[dict[str, Any]]:
        """Every collection with its replicas' states, nodes, pids and row counts."""
        return list(self._run(self._status(), timeout=60))

    async def _status(self) -> list[dict[str, Any]]:
        out = []
        for name, col in sorted(self.runtime.collections.items()):
            replicas = []
            for rs in col.shard_sets:
                for r in rs.replicas:
                    if r.state.value == "live":
                        try:
                            await asyncio.wait_for(r.connect(), timeout=5)
                        except Exception as exc:
                            log.debug("status: %s: %s", r.name, exc)
                    replicas.append(r.status().to_dict())
            spec = col.spec
            out.append(
                {
                    "name": name,
                    "dim": spec.index.dim,
                    "metric": spec.index.metric,
                    "shards": spec.shards,
                    "replicas": spec.replicas,
                    "count": sum(
                        max(int(r.count) for r in rs.replicas) for rs in col.shard_sets
                    ),
                    "replica_states": replicas,
                }
            )
        return out

    def scale_replicas(self, name: str, replicas: int) -> None:
        """Change collection `name`'s replica count online (CoordinatorRuntime.scale_replicas)."""
        self._run(self.runtime.scale_replicas(name, replicas))

    def rebalance(self, name: str | None = None) -> list[dict[str, object]]:
        """Level rows over the nodes now (CoordinatorRuntime.rebalance); the moves made."""
        return list(self._run(self.runtime.rebalance(name)))

    def embedders(self) -> list[dict[str, Any]]:
        """The embedder actors of the pool (started at the first text): key, pid, texts."""
        return list(self._run(self.embedder_pool.describe(), timeout=60))

    def shutdown(self) -> None:
        """Stop serving, checkpoint and stop every replica."""

        async def stop() -> None:
            await self.server.stop(grace=1.0)
            self.embedder_pool.close()
            await self.runtime.shutdown()

        try:
            self.metrics.stop()
            self._run(stop(), timeout=300)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)


def coordinator_actor_class() -> Any:
    """The coordinator as a Ray actor, restarted by Ray when its process dies."""
    import ray

    return ray.remote(  # type: ignore[call-overload]
        max_restarts=-1, max_task_retries=-1, max_concurrency=8
    )(Coordinator)
