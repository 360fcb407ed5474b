"""The coordinator process: a grpc.aio server on its own event loop, and its Ray actor.

`Coordinator` is a plain class: it starts a thread running an asyncio loop that restores the
collections and serves `shardvec.v1.VectorSearch` (plus health and reflection). Ray restarts
the actor by running `__init__` again, which is also the recovery path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from shardvec.contract.private_files import restrict_umask
from shardvec.coordinator.api.server import LoopServer, cluster_info_response, serve_public
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.embedding.pool import ray_pool
from shardvec.coordinator.fronts.pool import FrontPool
from shardvec.coordinator.fronts.publish import FrontState, LayoutPublisher
from shardvec.coordinator.metrics import CoordinatorMetrics
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.queries.recall_tuner import TunerSettings
from shardvec.coordinator.replicas.ray_control import alive_nodes, ray_controls
from shardvec.coordinator.runtime import CoordinatorRuntime

log = logging.getLogger(__name__)

WARM_DEADLINE_S = 300.0  # loading the model on a busy node can take a while
WARM_READY_S = 30.0  # the longest start-up waits for warm embedders before it says ready



class Coordinator(LoopServer):
    """Serves the public API until `shutdown()`."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = CoordinatorSettings.from_dict(settings)
        restrict_umask()  # registry, snapshot work files: private (contract/private_files.py)
        self.address = self._begin("coordinator")

    async def _start(self) -> None:
        s = self.settings
        self.metrics = CoordinatorMetrics()
        self.runtime = CoordinatorRuntime(Path(s.data_dir), ray_controls(Path(s.data_dir), s))
        self.runtime.on_shard_search = self.metrics.observe_shard_search
        self.runtime.replica_changes.node_list = alive_nodes
        await self.runtime.restore()
        self.runtime.start_health_checks()
        if s.recall_tuner:
            self.runtime.start_recall_tuner(TunerSettings(
                interval_s=s.recall_tuner_interval_s, cpu_share=s.recall_tuner_cpu_share
            ))  # fmt: skip
        if s.auto_rebalance:
            self.runtime.start_auto_rebalance(alive_nodes)
        self.batcher = MicroBatcher(
            window_s=s.batch_window_s,
            max_batch=s.batch_max,
            max_in_flight=s.batch_in_flight,
            on_batch=self.metrics.observe_batch,
        )
        self.embedder_pool = ray_pool(s)
        # Reopened collections that embed their texts get warm embedders now, in the
        # background, so the first text query after a restart does not load the model.
        models = {c.spec.embedding for c in self.runtime.collections.values() if c.spec.embedding}
        self._warming = [asyncio.ensure_future(self._warm(m)) for m in sorted(models)]
        self.fronts: FrontPool | None = None
        self.publisher: LayoutPublisher | None = None
        if s.front_port >= 0:
            self.fronts = FrontPool(s, self._front_state)
            self.runtime.publisher = self.publisher = LayoutPublisher(
                lambda: self.runtime.collections,
                lambda n: n in self.runtime.collections and n not in self.runtime.restoring,
                self.runtime.uid,
                self.fronts,
            )
        self.service = VectorSearchService(
            self.runtime,
            s,
            self.batcher,
            embedders=self.embedder_pool,
            cluster_info=self._cluster_info,
        )
        self.server, self.health, port = await serve_public(s, s.port, self.service, self.metrics)
        if s.metrics_port:
            self.metrics.attach(self.runtime, self._loop)
            self.metrics.serve(s.host, s.metrics_port)
        address = f"{s.host}:{port}"
        self.address = address
        if self.runtime.publisher is not None and self.fronts is not None:
            for name in self.runtime.served():  # restored before the fronts existed
                await self.runtime.layout_changed(name)
            self.fronts.start()
        if self._warming:  # ready (and `shardvec up`'s banner) once the embedders are warm,
            # so the first text query after a restart is as fast as the next; a model that
            # does not warm within WARM_READY_S delays nobody longer (a query then retries)
            await asyncio.wait(self._warming, timeout=WARM_READY_S)
        log.info("coordinator serving on %s (pid %d)", address, os.getpid())
        self._ready.set_result(address)

    async def _warm(self, model: str) -> None:
        start = time.monotonic()
        try:
            await self.embedder_pool.embed(model, ["warm up"], start + WARM_DEADLINE_S)
        except Exception as exc:  # a text query will try again, and say why
            log.warning("embedder %s did not warm up: %s", model, exc)
        else:
            log.info("embedder %s warm in %.1f s", model, time.monotonic() - start)

    def _front_state(self) -> FrontState:
        """Everything a front needs (what a front's pull answers)."""
        views = self.publisher.views() if self.publisher is not None else {}
        return FrontState(
            views, self.fronts.listing() if self.fronts is not None else [], self.address,
            self.service.cursor_secret, self.runtime.aliases,
        )

    async def _cluster_info(self) -> Any:
        return cluster_info_response(
            self.fronts.listing() if self.fronts is not None else [], self.address, self.address
        )

    def front_state(self) -> FrontState:
        """A front's pull (coordinator/fronts/actor.py): the state as published now."""
        state: FrontState = self._run(_state_of(self._front_state), timeout=30)
        return state

    def front_addresses(self) -> list[dict[str, str]]:
        """Every live front's address and node id."""
        return self.fronts.listing() if self.fronts is not None else []

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
            if self.fronts is not None:
                await self.fronts.close()
            await self.server.stop(grace=1.0)
            self.embedder_pool.close()
            await self.runtime.shutdown()

        try:
            self.metrics.stop()
            self._run(stop(), timeout=300)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)


async def _state_of(fn: Any) -> Any:
    return fn()


def coordinator_actor_class() -> Any:
    """The coordinator as a Ray actor, restarted by Ray when its process dies."""
    import ray

    return ray.remote(  # type: ignore[call-overload]
        max_restarts=-1, max_task_retries=-1, max_concurrency=8
    )(Coordinator)
