"""Replica processes on Ray: creation, placement over nodes, lookup after a restart."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from coordinator.registry import CollectionSpec
from shard.actor import replica_actor_class
from shard.paths import replica_dir

log = logging.getLogger(__name__)

NAMESPACE = "shardvec"


def actor_name(collection: str, shard: int, replica: int) -> str:
    return f"shardvec-replica:{collection}:{shard}:{replica}"


def alive_nodes() -> list[str]:
    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


class RayReplicaControl:
    """A replica's Ray actor: found by name, or (re)created with node affinity.

    Replicas of one shard are placed on different nodes when the cluster has several
    (replica r of shard s goes to node (s + r) mod N), always in different processes, and
    are detached so they outlive a coordinator restart. Ray restarts a replica whose process
    dies; one whose node is gone is re-created here on a live node.
    """

    def __init__(
        self, data_dir: Path, spec: CollectionSpec, shard: int, replica: int, opts: dict[str, Any]
    ) -> None:
        self.data_dir = data_dir
        self.spec = spec
        self.shard = shard
        self.replica = replica
        self.opts = opts
        self.name = actor_name(spec.name, shard, replica)
        self.handle: Any = None

    def _create(self) -> Any:
        nodes = alive_nodes()
        node = nodes[(self.shard + self.replica) % len(nodes)]
        directory = replica_dir(self.data_dir, self.spec.name, self.shard, self.replica)
        cls = replica_actor_class()
        return cls.options(
            name=self.name,
            namespace=NAMESPACE,
            lifetime="detached",
            num_cpus=self.opts.get("replica_cpus", 0),
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=True),
        ).remote(
            str(directory),
            self.spec.index.to_dict(),
            token=self.opts["token"],
            search_threads=self.opts.get("search_threads", 1),
            build_threads=self.opts.get("build_threads", 1),
        )

    def ensure(self) -> None:
        """Attach to the running actor of this name, or create it."""
        if self.handle is not None:
            return
        try:
            self.handle = ray.get_actor(self.name, namespace=NAMESPACE)
        except ValueError:
            self.handle = self._create()

    async def _call(self, method: str, *args: Any) -> Any:
        self.ensure()
        try:
            return await getattr(self.handle, method).remote(*args)
        except RayActorError:
            # Restarting: the name still resolves to it and later calls wait for it.
            # Gone for good (node lost, restarts exhausted): the name is free and the next
            # call creates a fresh replica on a live node from the same directory.
            self.handle = None
            raise

    async def address(self) -> str:
        return str(await self._call("address"))

    async def describe(self) -> dict[str, Any]:
        return dict(await self._call("describe"))

    async def catch_up(self, peer_address: str) -> int:
        return int(await self._call("catch_up", peer_address))

    async def checkpoint(self) -> None:
        await self._call("checkpoint")

    async def close(self) -> None:
        """Checkpoint and stop the replica, then end its process."""
        if self.handle is None:
            try:
                self.handle = ray.get_actor(self.name, namespace=NAMESPACE)
            except ValueError:
                return
        try:
            await asyncio.wait_for(self.handle.close.remote(), timeout=60)
        except Exception as exc:
            log.warning("replica %s did not close cleanly: %s", self.name, exc)
        ray.kill(self.handle, no_restart=True)
        self.handle = None
