"""Query fronts: any node answers the public API, so query throughput grows with the cluster.

A front is a Ray actor pinned to its node (NodeAffinitySchedulingStrategy, soft=False,
detached, in namespace "shardvec"), one per live node: the coordinator's `FrontPool` starts
it when the node joins and drops it when the node leaves (coordinator/per_node.py, the same
pattern as the embedder pool). It serves the whole `shardvec.v1.VectorSearch` service through
coordinator/api/server.py, so auth, TLS, limits, health and reflection are the
coordinator's own.

- Reads (List, Describe, Get, Count, Search, Scroll, query_texts, query_ids, ClusterInfo) are
  answered by the front itself: the read code of coordinator/api/service.py (`ReadService`) runs
  over a `FrontRuntime`, the layout as the coordinator pushed it (coordinator/layout/push.py),
  fanning out to the replicas over gRPC, those on the front's own node first.
- Writes and collection changes (Upsert, Update, Delete, Create/Drop, snapshots) are forwarded
  to the coordinator's public port as they came, with the caller's metadata (API key) and
  what is left of its deadline; the coordinator orders and acknowledges them as it does any
  write, so a front adds no way to lose one.
- Every shard read carries the view's layout epoch. A replica refuses one that is not its own
  ("stale layout"); the front then pulls the published views from the coordinator and runs the
  call again within its deadline. So a front that missed a push never reads a replica that
  left LIVE, one catching up, or shards under an old layout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from shardvec.contract.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    NotFound,
    StaleLayout,
    Unavailable,
    error_for_status,
)
from shardvec.contract.limits import INTERNAL_MAX_MESSAGE_BYTES
from shardvec.contract.validation import validate_collection_name
from shardvec.coordinator.api.server import LoopServer, cluster_info_response, serve_public
from shardvec.coordinator.api.service import WRITE_METHODS, ReadService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.embedding.pool import EmbedderPool, RayEmbedder
from shardvec.coordinator.layout.push import CollectionView, FrontState, PushedReplica
from shardvec.coordinator.metrics import CoordinatorMetrics
from shardvec.coordinator.per_node import node_of, sync_per_node
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.queries.reads import CollectionReads, ShardTimer
from shardvec.coordinator.replicas.replica_set import Replica, ReplicaSet, ReplicaState
from shardvec.coordinator.replicas.shard_client import RemoteShard
from shardvec.coordinator.test_hooks import PushGate
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

FRONT_PREFIX = "shardvec-front-"  # + node id: the detached actor's name
PULL_BACKOFF_S = 0.05  # between a stale read's pull and its retry, doubling
CLIENT_LINGER_S = 30.0  # a replica handle no view uses is closed this long after


class PushedControl:
    """A front replica's control: the coordinator controls replicas, a front only reads; it
    knows what the last view said of the replica."""

    def __init__(self, pushed: PushedReplica, client: RemoteShard | None) -> None:
        self._pushed = pushed
        self._client = client

    async def address(self) -> str:
        if not self._pushed.address:
            raise Unavailable("replica has no address in the pushed layout")
        return self._pushed.address

    def client(self, name: str, address: str) -> Any:
        return self._client

    async def describe(self) -> dict[str, Any]:
        p = self._pushed
        return {"applied_seq": p.applied_seq, "count": p.count, "pid": p.pid,
                "node_id": p.node_id}  # fmt: skip

    async def catch_up(self, peer: Any) -> int:
        raise FailedPrecondition("a query front does not control replicas")

    async def repair(self) -> None:
        raise FailedPrecondition("a query front does not control replicas")

    async def close(self) -> None:
        return None


class FrontReplicaSet(ReplicaSet):
    """A shard's replicas as a front reads them: LIVE ones on the front's node first, then
    the others (each group round-robin); a replica that fails is left out until the next
    view (the coordinator recovers it)."""

    def __init__(self, shard: int, replicas: list[Replica], node_id: str) -> None:
        super().__init__(shard, replicas)  # no sequence numbers: it only reads
        self.node_id = node_id

    def read_order(self, candidates: list[Replica]) -> list[Replica]:
        return prefer_local(candidates, self.node_id, self._next_turn())

    def _next_turn(self) -> int:
        self._rr += 1
        return self._rr - 1

    def mark_dead(self, replica: Replica) -> None:
        replica.set_state(ReplicaState.DEAD)


def prefer_local(candidates: list[Replica], node_id: str, turn: int) -> list[Replica]:
    """`candidates` with those on `node_id` first, each group rotated by `turn`."""
    local = [r for r in candidates if r.node_id == node_id]
    rest = [r for r in candidates if r.node_id != node_id]

    def rotate(group: list[Replica]) -> list[Replica]:
        if not group:
            return group
        i = turn % len(group)
        return group[i:] + group[:i]

    return rotate(local) + rotate(rest)


class FrontRuntime:
    """The collections as the last view of each says (a ReadRuntime,
    coordinator/api/read_runtime.py)."""

    def __init__(
        self, node_id: str, token: str, *, stream: bool = True,
        on_shard_search: ShardTimer | None = None,
    ) -> None:  # fmt: skip
        self.node_id = node_id
        self.token = token
        self.stream = stream
        self.on_shard_search = on_shard_search
        self.collections: dict[str, CollectionReads] = {}
        self.views: dict[str, CollectionView] = {}
        self._clients: dict[str, RemoteShard] = {}
        self._closing: set[asyncio.Future[None]] = set()

    def epoch(self, name: str) -> int:
        view = self.views.get(name)
        return view.epoch if view else 0

    def apply(self, name: str, view: CollectionView | None) -> bool:
        """Take collection `name`'s view (None: dropped); an older one than held is ignored.
        Returns whether it was taken."""
        if view is None:
            self.views.pop(name, None)
            self.collections.pop(name, None)
            self._linger()
            return True
        held = self.views.get(name)
        if held is not None and held.uid == view.uid and held.epoch >= view.epoch:
            return False
        self.collections[name] = self._build(view)
        self.views[name] = view
        self._linger()
        return True

    def replace_all(self, views: dict[str, CollectionView]) -> None:
        """Take a pull's views: every collection as published, the others dropped."""
        for name in [n for n in self.views if n not in views]:
            self.apply(name, None)
        for name, view in views.items():
            self.apply(name, view)

    def _build(self, view: CollectionView) -> CollectionReads:
        spec = view.spec
        sets: list[ReplicaSet] = []
        for shard, reps in enumerate(view.shards):
            replicas = []
            for p in reps:
                client = self._client(f"{spec.name}/shard-{shard}/replica-{p.index}", p.address)
                fenced = client.with_epoch(view.epoch) if client is not None else None
                r = Replica(shard, p.index, PushedControl(p, fenced), spec.name)
                r.client = fenced
                r.node_id, r.pid, r.count, r.applied_seq = p.node_id, p.pid, p.count, p.applied_seq
                r.fault = p.fault
                r.state = p.state if fenced is not None else ReplicaState.DEAD
                replicas.append(r)
            sets.append(FrontReplicaSet(shard, replicas, self.node_id))
        col = CollectionReads(spec, sets, self.on_shard_search, view.layout)
        # The coordinator's read rule (coordinator/queries/read_view.py): shards that may hold
        # rows they do not own answer only for their own buckets.
        col.publish_view(foreign=view.foreign)
        return col

    def _client(self, name: str, address: str) -> RemoteShard | None:
        if not address:
            return None
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = RemoteShard(
                name, address, self.token, stream=self.stream
            )
        return client

    def _linger(self) -> None:
        """Close, after CLIENT_LINGER_S (reads of the older view may still use them), the
        replica handles no view names any more."""
        used = {a for v in self.views.values() for a in v.addresses()}
        for address in [a for a in self._clients if a not in used]:
            client = self._clients.pop(address)

            async def close_later(c: RemoteShard = client) -> None:
                await asyncio.sleep(CLIENT_LINGER_S)
                await c.close()

            task = asyncio.ensure_future(close_later())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def get(self, name: str) -> CollectionReads:
        validate_collection_name(name)
        col = self.collections.get(name)
        if col is None:
            raise NotFound(f"collection {name!r} does not exist")
        return col

    def served(self) -> list[str]:
        return sorted(self.collections)

    def uid(self, name: str) -> bytes:
        return self.views[name].uid

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


Pull = Callable[[], Awaitable[dict[str, Any]]]


class FrontService(ReadService):
    """The public API on a front: reads over the pushed layout (a stale one pulled again and
    the call retried within its deadline), writes forwarded to the coordinator."""

    def __init__(
        self,
        front: Front,
        runtime: FrontRuntime,
        settings: CoordinatorSettings,
        batcher: MicroBatcher,
        *,
        embedders: EmbedderPool | None = None,
    ) -> None:
        super().__init__(
            runtime,
            settings,
            batcher,
            embedders=embedders,
            cursor_secret=front.cursor_secret,
            cluster_info=front.cluster_info,
        )
        self.front = front
        self.front_runtime = runtime

    async def _refresh_replicas(self, col: CollectionReads) -> None:
        return None  # a front's replica figures are those of the last view

    async def _fenced(self, handler: Callable[..., Awaitable[Any]], request: Any,
                      context: Any) -> Any:  # fmt: skip
        """Run read `handler`; on a stale layout (or no replica left in the view), pull the
        views again and retry, until the call's deadline."""
        deadline = self._deadline(context)
        delay = PULL_BACKOFF_S
        unknown_pulled = False
        while True:
            try:
                return await handler(request, context)
            except NotFound:
                # Created while this front's pushes were lost: a pull tells.
                if unknown_pulled:
                    raise
                unknown_pulled = True
                await self.front.pull()
            except (StaleLayout, Unavailable) as exc:
                if time.monotonic() + delay >= deadline:
                    if isinstance(exc, StaleLayout):
                        raise DeadlineExceeded(
                            f"query front: the layout changed faster than it could follow: {exc}"
                        ) from None
                    raise
                log.info("query front: %s; pulling the layout again", exc)
                await self.front.pull()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def DescribeCollection(self, request: Any, context: Any) -> Any:
        # Status, not the data path: the coordinator's own figures, with the progress of a
        # layout change (coordinator/layout/resharding.py) that pushes do not carry.
        return await self._forward("DescribeCollection", request, context)

    async def Get(self, request: Any, context: Any) -> Any:
        return await self._fenced(super().Get, request, context)

    async def Count(self, request: Any, context: Any) -> Any:
        return await self._fenced(super().Count, request, context)

    async def Search(self, request: Any, context: Any) -> Any:
        return await self._fenced(super().Search, request, context)

    async def Scroll(self, request: Any, context: Any) -> Any:
        return await self._fenced(super().Scroll, request, context)

    # Writes and collection changes: to the coordinator, as they came.

    def _forward_args(self, context: Any) -> dict[str, Any]:
        remaining = context.time_remaining()
        timeout = remaining if remaining is not None else self.settings.default_deadline_s
        metadata = tuple(
            (k, v) for k, v in (context.invocation_metadata() or ())
            if not k.startswith(("grpc-", ":")) and k not in ("user-agent", "content-type")
        )  # fmt: skip
        return {"timeout": timeout, "metadata": metadata}

    async def _forward(self, method: str, request: Any, context: Any) -> Any:
        stub = await self.front.coordinator_stub()
        try:
            return await getattr(stub, method)(request, **self._forward_args(context))
        except grpc.aio.AioRpcError as exc:
            raise error_for_status(exc.code(), exc.details() or "") from None

    async def CreateCollection(self, request: Any, context: Any) -> Any:
        return await self._forward("CreateCollection", request, context)

    async def DropCollection(self, request: Any, context: Any) -> Any:
        return await self._forward("DropCollection", request, context)

    async def Upsert(self, request: Any, context: Any) -> Any:
        return await self._forward("Upsert", request, context)

    async def Update(self, request: Any, context: Any) -> Any:
        return await self._forward("Update", request, context)

    async def Delete(self, request: Any, context: Any) -> Any:
        return await self._forward("Delete", request, context)

    async def ScaleCollection(self, request: Any, context: Any) -> Any:
        return await self._forward("ScaleCollection", request, context)

    async def Rebalance(self, request: Any, context: Any) -> Any:
        return await self._forward("Rebalance", request, context)

    async def CreateSnapshot(self, request: Any, context: Any) -> AsyncIterator[Any]:
        stub = await self.front.coordinator_stub()
        call = stub.CreateSnapshot(request, **self._forward_args(context))
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as exc:
            raise error_for_status(exc.code(), exc.details() or "") from None

    async def RestoreSnapshot(self, request_iterator: Any, context: Any) -> Any:
        stub = await self.front.coordinator_stub()
        try:
            return await stub.RestoreSnapshot(request_iterator, **self._forward_args(context))
        except grpc.aio.AioRpcError as exc:
            raise error_for_status(exc.code(), exc.details() or "") from None


assert {
    "CreateCollection", "DropCollection", "Upsert", "Update", "Delete",
    "CreateSnapshot", "RestoreSnapshot", "ScaleCollection", "Rebalance",
} == WRITE_METHODS  # fmt: skip  # every write is forwarded (FrontService above)


class Front(LoopServer):
    """One query front: its own asyncio loop and public server (like the coordinator)."""

    def __init__(self, settings: CoordinatorSettings, node_id: str) -> None:
        self.settings = settings
        self.node_id = node_id
        self.pushes = 0  # views taken from pushes
        self.pulls = 0  # pulls after a stale read (or at start)
        self.gate = PushGate()  # a test hook: pushes dropped while held (coordinator/test_hooks.py)
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
        if not self.gate.admits():
            return False
        self._fronts = fronts

        async def take() -> bool:
            return self.runtime.apply(name, view)

        taken = bool(self._run(take()))
        self.pushes += int(taken)
        return taken

    def hold_pushes(self, held: bool) -> None:
        """A test hook (coordinator/test_hooks.py): drop every push while `held`."""
        self.gate.held = held

    def stats(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "node_id": self.node_id,
            "pid": os.getpid(),
            "pushes": self.pushes,
            "pulls": self.pulls,
            "dropped": self.gate.dropped,
            "epochs": {n: self.runtime.epoch(n) for n in list(self.runtime.views)},
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


class _FrontMember:
    def __init__(self, node: str, handle: Any) -> None:
        self.node = node
        self.handle = handle
        self.address = ""
        self.metrics_address = ""
        self.loaded = False


class FrontPool:
    """The coordinator's fronts: one per live node (a FrontSink for coordinator/layout_push)."""

    def __init__(
        self, settings: CoordinatorSettings, state: Callable[[], FrontState]
    ) -> None:
        self.settings = settings
        self.state = state
        self.refresh_s = settings.front_refresh_s
        self.members: dict[str, _FrontMember] = {}
        self._watch: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._watch = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("query fronts: refresh failed")
            await asyncio.sleep(self.refresh_s)

    def _spawn(self, node: str) -> _FrontMember:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from shardvec.coordinator.replicas.ray_control import NAMESPACE

        name = FRONT_PREFIX + node
        try:
            handle = ray.get_actor(name, namespace=NAMESPACE)  # outlived a coordinator restart
        except ValueError:
            handle = front_actor_class().options(
                name=name,
                namespace=NAMESPACE,
                lifetime="detached",
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
            ).remote(self.settings, node)
        return _FrontMember(node, handle)

    @staticmethod
    def _close(member: _FrontMember) -> None:
        import ray

        try:
            ray.kill(member.handle, no_restart=True)
        except Exception as exc:
            log.info("kill front on %s: %s", member.node[:12], exc)

    async def refresh(self) -> None:
        """A front on every live node, each loaded with the published state; the fronts of
        nodes that left dropped."""
        from shardvec.coordinator.replicas.ray_control import alive_nodes

        async with self._lock:
            live = await asyncio.to_thread(alive_nodes)
            sync_per_node(self.members, live, self._spawn, self._close, what="query front")
            for key, m in list(self.members.items()):
                try:
                    address = str(
                        await asyncio.wait_for(_ref(m.handle.ping.remote()), timeout=5.0)
                    )
                    if address != m.address:  # new, or restarted (port 0: a new port)
                        m.metrics_address = str(
                            await asyncio.wait_for(_ref(m.handle.metrics_at.remote()), 5.0)
                        )
                        m.address, m.loaded = address, False
                        log.info("query front on %s at %s", node_of(key)[:12], address)
                    if not m.loaded:
                        await asyncio.wait_for(_ref(m.handle.load.remote(self.state())), 30.0)
                        m.loaded = True
                except Exception as exc:
                    log.info("query front on %s not ready: %s", key[:12], exc)
                    m.address, m.loaded = "", False

    def listing(self) -> list[dict[str, str]]:
        """The fronts that answer, by address."""
        return sorted(
            ({"address": m.address, "node_id": m.node, "metrics_address": m.metrics_address}
             for m in self.members.values() if m.address and m.loaded),
            key=lambda f: f["address"],
        )  # fmt: skip

    async def push(self, name: str, view: CollectionView | None) -> None:
        fronts = self.listing()
        members = [m for m in self.members.values() if m.loaded]
        results = await asyncio.gather(
            *(
                asyncio.wait_for(_ref(m.handle.apply.remote(name, view, fronts)), 5.0)
                for m in members
            ),
            return_exceptions=True,
        )
        for m, res in zip(members, results, strict=True):
            if isinstance(res, BaseException):
                # It pulls when a replica refuses its epoch; a restarted one is reloaded.
                log.info("push of %s to the front on %s failed: %s", name, m.node[:12], res)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for m in list(self.members.values()):
            try:
                await asyncio.wait_for(_ref(m.handle.shutdown.remote()), 10.0)
            except Exception as exc:
                log.info("front on %s shutdown: %s", m.node[:12], exc)
            self._close(m)
        self.members.clear()


async def _ref(ref: Any) -> Any:
    return await ref

