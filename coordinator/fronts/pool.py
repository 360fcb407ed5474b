"""The coordinator's side of the query fronts: one front actor per live node, started when the
node joins and dropped when it leaves, and the layout pushes sent to them (a FrontSink of
coordinator/fronts/publish.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from shardvec.coordinator.aliases import AliasMap
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.fronts.actor import front_actor_class
from shardvec.coordinator.fronts.publish import CollectionView, FrontState
from shardvec.coordinator.per_node import node_of, sync_per_node

log = logging.getLogger(__name__)

FRONT_PREFIX = "shardvec-front-"  # + node id: the detached actor's name


class _FrontMember:
    def __init__(self, node: str, handle: Any) -> None:
        self.node = node
        self.handle = handle
        self.address = ""
        self.metrics_address = ""
        self.loaded = False


class FrontPool:
    """The coordinator's fronts: one per live node (a FrontSink of
    coordinator/fronts/publish.py)."""

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

    async def push_aliases(self, aliases: AliasMap) -> None:
        members = [m for m in self.members.values() if m.loaded]
        results = await asyncio.gather(
            *(asyncio.wait_for(_ref(m.handle.apply_aliases.remote(aliases)), 5.0)
              for m in members),
            return_exceptions=True,
        )  # fmt: skip
        for m, res in zip(members, results, strict=True):
            if isinstance(res, BaseException) or res is False:
                # No epoch fences an alias: the next refresh reloads the whole state.
                log.info("push of the aliases to the front on %s failed: %s", m.node[:12], res)
                m.loaded = False

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
