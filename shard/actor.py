"""One shard replica as a Ray actor: a ShardEngine on local disk plus its gRPC server.

`ShardReplica` is a plain class (unit-testable without Ray); `replica_actor_class` makes it
remote in one place. Ray restarts a dead replica with the same arguments, so `__init__` is
also the recovery path: the engine reloads its checkpoint and replays its SQLite rows.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import grpc
from shardvec.contract.convert import changes_from_proto
from shardvec.contract.limits import (
    DEFAULT_BUILD_THREADS,
    DEFAULT_CHECKPOINT_ROWS,
    DEFAULT_SEARCH_THREADS,
    TOKEN_HEADER,
)
from shardvec.contract.limits import INTERNAL_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from shardvec.contract.private_files import restrict_umask
from shardvec.contract.settings import IndexSettings
from shardvec.v1 import shard_pb2, shard_pb2_grpc

from shard.engine import ShardEngine
from shard.node_lock import default_lock_path
from shard.server import ShardServer

log = logging.getLogger(__name__)


class ShardReplica:
    """Owns one replica's directory, engine and internal gRPC server."""

    def __init__(
        self,
        directory: str,
        settings: dict[str, Any],
        *,
        token: str,
        host: str | None = None,
        search_threads: int = DEFAULT_SEARCH_THREADS,
        build_threads: int = DEFAULT_BUILD_THREADS,
        checkpoint_rows: int = DEFAULT_CHECKPOINT_ROWS,
        owner: str = "",
        node_turn_rows: int = 0,
    ) -> None:
        restrict_umask()  # everything this replica's process writes is private (0600/0700)
        self.node_id = _node_id()
        self.token = token
        self.engine = ShardEngine(
            Path(directory),
            IndexSettings.from_dict(settings),
            search_threads=search_threads,
            build_threads=build_threads,
            checkpoint_rows=checkpoint_rows,
            owner=owner,
        )
        self.server = ShardServer(
            self.engine,
            token=token,
            host=host or _node_ip(),
            node_id=self.node_id,
            node_turn_rows=node_turn_rows,
            search_lock_path=default_lock_path(self.node_id),
        )

    def address(self) -> str:
        return self.server.address

    def describe(self) -> dict[str, Any]:
        """Address, process and node of this replica, with its engine's figures."""
        info = self.engine.info()
        return {
            "address": self.server.address,
            "pid": os.getpid(),
            "node_id": self.node_id,
            "count": info["count"],
            "applied_seq": info["applied_seq"],
        }

    def checkpoint(self) -> None:
        """Write the index checkpoint now (bench/bench_replicas.py times a rejoin after one)."""
        self.engine.checkpoint()

    def catch_up(self, peer_address: str, page: int = 5000, timeout: float = 60.0) -> int:
        """Copy every row and tombstone the peer applied after our seq; returns our new seq.

        Pages end on whole sequence numbers, so a batch is never half-applied.
        """
        with grpc.insecure_channel(
            peer_address,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
        ) as channel:
            stub = shard_pb2_grpc.ShardStub(channel)
            meta = ((TOKEN_HEADER, self.token),)
            while True:
                after = self.engine.applied_seq
                req = shard_pb2.ShardChangesRequest(after_seq=after, limit=page)
                resp = stub.Changes(req, timeout=timeout, metadata=meta)
                changes = changes_from_proto(resp, self.engine.settings.dim)
                if len(changes) < page:
                    if resp.applied_seq > after or changes:
                        self.engine.apply_changes(changes, int(resp.applied_seq))
                    return self.engine.applied_seq
                cut = changes[-1].seq
                whole = [c for c in changes if c.seq < cut]
                if not whole:  # one batch larger than a page: ask for more at once
                    page *= 2
                    continue
                self.engine.apply_changes(whole, cut - 1)

    def close(self) -> None:
        """Stop serving and checkpoint; the process may then be killed."""
        self.server.stop(grace=0.5)
        self.engine.close()


def _node_ip() -> str:
    """The address Ray registered for this node (loopback for an embedded cluster)."""
    try:
        import ray

        if ray.is_initialized():
            me = ray.get_runtime_context().get_node_id()
            for node in ray.nodes():
                if node.get("NodeID") == me:
                    return str(node["NodeManagerAddress"])
    except Exception:  # not inside Ray: a plain process on this machine
        pass
    return "127.0.0.1"


def _node_id() -> str:
    try:
        import ray

        if ray.is_initialized():
            return str(ray.get_runtime_context().get_node_id())
    except Exception:
        pass
    return "local"


def replica_actor_class() -> Any:
    """The Ray actor class for a replica; restarted by Ray when its process dies."""
    import ray

    return ray.remote(  # type: ignore[call-overload]
        max_restarts=-1, max_task_retries=0, max_concurrency=4
    )(ShardReplica)
