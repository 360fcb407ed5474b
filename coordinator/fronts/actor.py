"""One query front: a Ray actor pinned to its node with its own asyncio loop and public server,
its read state (coordinator/fronts/runtime.py) fed by the coordinator's pushes and pulls."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import grpc

from shardvec.contract.errors import (
    Unavailable,
)
from shardvec.contract.limits import INTERNAL_MAX_MESSAGE_BYTES
from shardvec.coordinator import phases
from shardvec.coordinator.aliases import AliasMap
from shardvec.coordinator.api.server import LoopServer, cluster_info_response, serve_public
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.embedding.pool import EmbedderPool, RayEmbedder
from shardvec.coordinator.fronts.publish import CollectionView, FrontState
from shardvec.coordinator.fronts.runtime import FrontRuntime
from shardvec.coordinator.fronts.service import FrontService
from shardvec.coordinator.metrics import CoordinatorMetrics
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

class Front(LoopServer):
    """One query front: its own asyncio loop and public server (like the coordinator)."""

    def __init__(self, settings: CoordinatorSettings, node_id: str) -> None:
        self.settings = settings
        self.node_id = node_id
        self.pushes = 0  # views taken from pushes
        self.pulls = 0  # pulls after a stale read (or at start)
        self.refused = 0  # pushes a gate refused (coordinator/phases.py): as if lost
        self._fronts: list[dict[str, str]] = []
        self._coordinator = ""
        self._secret: bytes | None = None
        self._stub: Any = None
        self._channel: Any = None
        self._pull_lock: asyncio.Lock | None = None
        self.metrics_address = ""  # host:port of this front's /metrics ("" when off)
        self.address = self._begin("front")

    async def _start(self) -> None:
        s = self.settings
        self._pull_lock = asyncio.Lock()
        self.metrics = CoordinatorMetrics()
        self.runtime = FrontRuntime(
            self.node_id, s.token, stream=s.shard_stream,
            on_shard_search=self.metrics.observe_shard_search,
        )  # fmt: skip
        self.batcher = MicroBatcher(
            window_s=s.batch_window_s,
            max_batch=s.batch_max,
            max_in_flight=s.batch_in_flight,
            on_batch=self.metrics.observe_batch,
        )
        node = self.node_id

        def spawn(n: str) -> RayEmbedder:
            return RayEmbedder(n, cpus=s.embedder_cpus, threads=s.embedder_threads)

        # Query texts are embedded on this front's node (an embedder started at the first).
        self.embedders = EmbedderPool(
            spawn, lambda: [node], max_embedders=1, window_s=s.batch_window_s
        )
        self.service = FrontService(self, self.runtime, s, self.batcher, embedders=self.embedders)
        port = s.front_port if s.front_port > 0 else 0
        self.server, self.health, bound = await serve_public(s, port, self.service, self.metrics)
        host = _advertised_host(s.host)
        if s.front_metrics_port >= 0:
            self.metrics_address = f"{host}:{self.metrics.serve(s.host, s.front_metrics_port)}"
        address = f"{host}:{bound}"
        self.address = address
        log.info("query front serving on %s (node %s, pid %d)", address, node[:12], os.getpid())
        self._ready.set_result(address)

    # Called by the coordinator's FrontPool (Ray actor methods).

    def ping(self) -> str:
        return self.address

    def metrics_at(self) -> str:
        return self.metrics_address

    def pid(self) -> int:
        return os.getpid()

    def load(self, state: FrontState) -> None:
        """Take the whole published state (a new front, or the coordinator restarted)."""
        self._run(self._take_state(state))

    def apply(self, name: str, view: CollectionView | None, fronts: list[dict[str, str]]) -> bool:
        """A push: collection `name`'s new view (None: dropped) and the fronts' listing."""
        if not phases.admits("front-push"):
            self.refused += 1
            return False
        self._fronts = fronts

        async def take() -> bool:
            return self.runtime.apply(name, view)

        taken = bool(self._run(take()))
        self.pushes += int(taken)
        return taken

    def apply_aliases(self, aliases: AliasMap) -> bool:
        """A push: the coordinator's alias map (coordinator/aliases.py)."""
        if not phases.admits("front-push"):
            self.refused += 1
            return False

        async def take() -> bool:
            return self.runtime.set_aliases(aliases)

        return bool(self._run(take()))

    def stats(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "node_id": self.node_id,
            "pid": os.getpid(),
            "pushes": self.pushes,
            "pulls": self.pulls,
            "refused": self.refused,
            "epochs": {n: self.runtime.epoch(n) for n in list(self.runtime.views)},
            "aliases": dict(self.runtime.aliases.names),
            "layouts": {
                n: {"version": c.layout.version, "shards": len(c.shard_sets),
                    "foreign": sorted(c.foreign)}
                for n, c in list(self.runtime.collections.items())
            },
        }

    def shutdown(self) -> None:
        async def stop() -> None:
            await self.server.stop(grace=1.0)
            self.embedders.close()
            await self.runtime.close()
            if self._channel is not None:
                await self._channel.close()

        try:
            self.metrics.stop()
            self._run(stop(), timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # On the front's loop.

    async def _take_state(self, state: FrontState) -> None:
        self._fronts = list(state.fronts)
        self._secret = state.cursor_secret
        if state.coordinator != self._coordinator:
            self._coordinator = state.coordinator
            if self._channel is not None:
                await self._channel.close()
            self._channel = self._stub = None
        self.runtime.replace_all(dict(state.views))
        self.runtime.set_aliases(state.aliases)

    async def pull(self) -> None:
        """Ask the coordinator for every published view (after a stale read)."""
        assert self._pull_lock is not None
        async with self._pull_lock:
            import ray

            from shardvec.coordinator.replicas.ray_control import COORDINATOR_NAME, NAMESPACE

            handle = ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
            state = await handle.front_state.remote()
            self.pulls += 1
            await self._take_state(state)

    async def coordinator_stub(self) -> Any:
        if not self._coordinator:
            await self.pull()
        if self._stub is None:
            opts = [
                ("grpc.max_receive_message_length", INTERNAL_MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", INTERNAL_MAX_MESSAGE_BYTES),
            ]
            s = self.settings
            if s.tls_cert:
                from pathlib import Path

                creds = grpc.ssl_channel_credentials(
                    root_certificates=Path(s.tls_cert).read_bytes()
                )
                self._channel = grpc.aio.secure_channel(self._coordinator, creds, options=opts)
            else:
                self._channel = grpc.aio.insecure_channel(self._coordinator, options=opts)
            self._stub = pb_grpc.VectorSearchStub(self._channel)
        return self._stub

    def cursor_secret(self) -> bytes:
        if self._secret is None:
            raise Unavailable("query front: no state from the coordinator yet")
        return self._secret

    async def cluster_info(self) -> Any:
        return cluster_info_response(self._fronts, self._coordinator, self.address)


def _advertised_host(host: str) -> str:
    """The host clients reach this front at: the node's IP when it binds every interface."""
    if host in ("0.0.0.0", "::", ""):
        import ray

        return str(ray.util.get_node_ip_address())
    return host


def front_actor_class() -> Any:
    """The front as a Ray actor: restarted when its process dies (it then pulls the views)."""
    import ray

    return ray.remote(  # type: ignore[call-overload]
        max_restarts=-1, max_task_retries=2, max_concurrency=8
    )(Front)
