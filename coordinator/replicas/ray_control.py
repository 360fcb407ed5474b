"""Replica processes on Ray: creation, placement over nodes, lookup after a restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import ActorUnschedulableError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from shardvec.contract.errors import ShardvecError
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.shard_api import ShardLike
from shardvec.coordinator.config import CoordinatorSettings, blas_threads_env
from shardvec.coordinator.paths import quarantine_dir, replica_dir
from shardvec.coordinator.replicas import events
from shardvec.coordinator.replicas.shard_client import RemoteShard

if TYPE_CHECKING:
    from shardvec.coordinator.replicas.replica_set import ControlFactory

log = logging.getLogger(__name__)

NAMESPACE = "shardvec"
COORDINATOR_NAME = "shardvec-coordinator"  # the coordinator's named actor


def actor_name(collection: str, shard: int, replica: int) -> str:
    return f"shardvec-replica:{collection}:{shard}:{replica}"


def alive_node_cpus() -> dict[str, int]:
    """Every live Ray node's id with the CPU count Ray gives it (at least 1), sorted by id."""
    live = (n for n in ray.nodes() if n.get("Alive"))
    cpus = {n["NodeID"]: max(1, int(n.get("Resources", {}).get("CPU", 1))) for n in live}
    return dict(sorted(cpus.items()))


def alive_nodes() -> list[str]:
    return list(alive_node_cpus())


class RayReplicaControl:
    """A replica's Ray actor: found by name, or (re)created with node affinity.

    Replicas of one shard are placed on different nodes when the cluster has several
    (replica r of shard s goes to node (s + r) mod N among the nodes that hold no sibling),
    always in different processes, and are detached so they outlive a coordinator restart.
    Ray restarts a replica whose process dies; one whose node is gone is re-created here on
    a live node that holds no other replica of the shard, where there is one.
    """

    def __init__(
        self,
        data_dir: Path,
        spec: CollectionSpec,
        shard: int,
        replica: int,
        settings: CoordinatorSettings,
        siblings: Callable[[], set[str]] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.spec = spec
        self.shard = shard
        self.replica = replica
        self.settings = settings
        self.name = actor_name(spec.name, shard, replica)
        self.handle: Any = None
        self._ensuring: asyncio.Lock | None = None
        self.node_id = ""  # where it last ran
        self._siblings = siblings or set
        self.preferred = ""  # the node a replica change or move placed it on (`prefer`)

    def prefer(self, node: str) -> None:
        """Create the process on `node` while that node is alive (a move's target, kept in
        the registry so a restart re-creates it there); otherwise placed as usual."""
        self.preferred = node

    def _create(self) -> Any:
        cpus = alive_node_cpus()
        nodes = list(cpus)
        taken = self._siblings()
        free = [n for n in nodes if n not in taken] or nodes
        node = free[(self.shard + self.replica) % len(free)]
        if self.preferred in cpus:
            node = self.preferred
        directory = replica_dir(self.data_dir, self.spec.name, self.shard, self.replica)
        # search_threads 0: a batch search may use every CPU of the node; the replicas of a
        # node take turns on large batches (shard/node_lock.py)
        threads = self.settings.search_threads or cpus[node]
        # Imported here, where an actor is made: the coordinator itself never loads the engine.
        from shardvec.shard.actor import replica_actor_class

        cls = replica_actor_class()
        return cls.options(
            name=self.name,
            namespace=NAMESPACE,
            lifetime="detached",
            num_cpus=self.settings.replica_cpus,
            # One BLAS thread: a replica's NumPy work (exact scans, codes) is one caller's, and
            # the node's CPUs are shared by its replicas and hnswlib's own threads.
            runtime_env={"env_vars": blas_threads_env(1)},
            # Hard affinity: a busy node must not push a replica onto its sibling's node. When
            # the node dies the actor dies with it and is re-created on a free live node.
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
        ).remote(
            str(directory),
            self.spec.index.to_dict(),
            token=self.settings.token,
            search_threads=threads,
            build_threads=self.settings.build_threads,
            node_turn_rows=self.settings.node_turn_rows,
            scrub_rows_per_s=self.settings.scrub_rows_per_s,
            sweep_rows_per_s=self.settings.sweep_rows_per_s,
            owner=f"{self.spec.name}/shard-{self.shard}/replica-{self.replica}",
        )

    async def ensure(self) -> None:
        """Attach to the running actor of this name, or create it (lookups in Ray's control
        store, off the event loop that serves every collection)."""
        if self.handle is not None:
            return
        if self._ensuring is None:
            self._ensuring = asyncio.Lock()
        async with self._ensuring:  # one lookup (or creation) at a time
            if self.handle is not None:
                return
            try:
                self.handle = await asyncio.to_thread(
                    ray.get_actor, self.name, namespace=NAMESPACE
                )
            except ValueError:
                self.handle = await asyncio.to_thread(self._create)

    async def _call(self, method: str, *args: Any) -> Any:
        await self.ensure()
        try:
            return await getattr(self.handle, method).remote(*args)
        except RayTaskError as exc:
            raise _cause(exc) from None
        except (RayActorError, ActorUnschedulableError):
            # Restarting: the name still resolves to it and later calls wait for it.
            # Gone for good (node lost, restarts exhausted): the name is free and the next
            # call creates a fresh replica on a live node from the same directory.
            self.handle = None
            raise

    async def address(self) -> str:
        """The replica's gRPC address; waits while Ray restarts it.

        A replica pinned to a node that has died can never restart there: it is killed and
        the next attempt creates it afresh on a live node.
        """
        await self.ensure()
        try:
            fut = asyncio.wrap_future(self.handle.address.remote().future())
            while True:
                try:
                    return str(await asyncio.wait_for(asyncio.shield(fut), timeout=2.0))
                except TimeoutError:
                    await self._replace_if_node_gone()
        except RayTaskError as exc:  # the actor is up but cannot serve (a damaged store)
            raise _cause(exc) from None
        except ActorUnschedulableError:
            # Pinned to a node that no longer exists: it can never start there.
            await self._replace_if_node_gone(force=True)
            raise
        except RayActorError:
            await self._replace_if_node_gone()
            self.handle = None
            raise

    async def _replace_if_node_gone(self, force: bool = False) -> None:
        if not force and (
            not self.node_id or self.node_id in await asyncio.to_thread(alive_nodes)
        ):
            return
        node = self.node_id[:12] or "(unknown)"
        events.replica_event(self.name, f"its node {node} is gone; re-creating it elsewhere")
        try:
            await asyncio.to_thread(ray.kill, self.handle, no_restart=True)
        except Exception as exc:
            log.debug("kill %s: %s", self.name, exc)
        self.handle, self.node_id = None, ""
        raise RayActorError()  # the caller retries; the next attempt creates it afresh

    async def describe(self) -> dict[str, Any]:
        d = dict(await self._call("describe"))
        self.node_id = str(d.get("node_id", ""))
        return d

    def client(self, name: str, address: str) -> RemoteShard:
        stream = self.settings.shard_stream
        return RemoteShard(name, address, self.settings.token, stream=stream)

    async def catch_up(self, peer: ShardLike) -> int:
        """The actor copies from the peer's gRPC address itself (replica to replica)."""
        return int(await self._call("catch_up", peer.address))

    async def repair(self) -> None:
        """Quarantine the replica's directory (moved under data_dir/quarantine) and restart it
        empty, in the same process; the caller then catches it up from a live peer."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{time.time_ns() % 10**9:09d}"
        target = quarantine_dir(self.data_dir, self.spec.name, self.shard, self.replica, stamp)
        await self._call("repair", str(target))

    async def close(self) -> None:
        """Checkpoint and stop the replica, then end its process."""
        if self.handle is None:
            try:  # a lookup in Ray's control store: off the event loop
                self.handle = await asyncio.to_thread(ray.get_actor, self.name,
                                                      namespace=NAMESPACE)  # fmt: skip
            except ValueError:
                return
        try:
            await asyncio.wait_for(self.handle.close.remote(), timeout=60)
        except Exception as exc:
            events.trouble(f"replica {self.name}", f"did not close cleanly, stopped: {exc}")
        await asyncio.to_thread(ray.kill, self.handle, no_restart=True)
        self.handle = None


def _cause(exc: RayTaskError) -> BaseException:
    """The shardvec error an actor method raised, or the Ray error itself."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, ShardvecError) else exc


def ray_controls(data_dir: Path, settings: CoordinatorSettings) -> ControlFactory:
    """The control factory of a coordinator on Ray: one RayReplicaControl per replica."""

    def make(
        spec: CollectionSpec, shard: int, replica: int, siblings: Callable[[], set[str]]
    ) -> RayReplicaControl:
        return RayReplicaControl(data_dir, spec, shard, replica, settings, siblings)

    return make
