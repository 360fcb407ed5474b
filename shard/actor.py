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

from shardvec.contract.convert_shard import changes_from_proto
from shardvec.contract.errors import DataLoss, ShardvecError
from shardvec.contract.heap import fix_mmap_threshold
from shardvec.contract.limits import (
    DEFAULT_BUILD_THREADS,
    DEFAULT_CHECKPOINT_ROWS,
    DEFAULT_SCRUB_ROWS_PER_S,
    DEFAULT_SEARCH_THREADS,
    DEFAULT_SWEEP_ROWS_PER_S,
    TOKEN_HEADER,
)
from shardvec.contract.limits import INTERNAL_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from shardvec.contract.private_files import private_dir, restrict_umask
from shardvec.contract.settings import IndexSettings
from shardvec.shard import process_memory
from shardvec.shard.engine import ShardEngine
from shardvec.shard.local import catch_up_step
from shardvec.shard.node_lock import default_lock_path
from shardvec.shard.process_memory import report
from shardvec.shard.scrub import Scrubber
from shardvec.shard.server import ShardServer
from shardvec.shard.sweep import Sweeper
from shardvec.v1 import shard_pb2, shard_pb2_grpc

log = logging.getLogger(__name__)


class ShardReplica:
    """Owns one replica's directory, engine and internal gRPC server.

    A store that fails its checks at open (ShardvecError, DataLoss for damage) does not fail
    the actor: Ray would re-create it from the same directory every few seconds. The actor
    stays up without an engine, `address()` raises that error, and the coordinator decides:
    `repair()` (quarantine the directory, start empty, then catch up from a live peer) when
    a peer holds the rows, or out of service with DATA_LOSS when none does.
    """

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
        scrub_rows_per_s: int = DEFAULT_SCRUB_ROWS_PER_S,
        sweep_rows_per_s: int = DEFAULT_SWEEP_ROWS_PER_S,
    ) -> None:
        restrict_umask()  # everything this replica's process writes is private (0600/0700)
        fix_mmap_threshold()  # a server process: keep its heap small (contract/heap.py)
        self.node_id = _node_id()
        self.token = token
        self.directory = Path(directory)
        self._settings = IndexSettings.from_dict(settings)
        self._host = host or _node_ip()
        self._threads = (search_threads, build_threads, checkpoint_rows)
        self._owner = owner
        self._node_turn_rows = node_turn_rows
        self._scrub_rows_per_s = scrub_rows_per_s
        self._sweep_rows_per_s = sweep_rows_per_s
        self.fault: ShardvecError | None = None  # why it could not open, if it could not
        self._engine: ShardEngine | None = None
        self._server: ShardServer | None = None
        self.scrubber: Scrubber | None = None
        self.sweeper: Sweeper | None = None
        self._open()

    def _open(self) -> None:
        try:
            search, build, ckpt = self._threads
            engine = ShardEngine(
                self.directory,
                self._settings,
                search_threads=search,
                build_threads=build,
                checkpoint_rows=ckpt,
                owner=self._owner,
            )
        except ShardvecError as exc:
            log.error("replica %s cannot open: %s", self.directory, exc.message)
            self.fault = exc
            return
        self.fault = None
        self._engine = engine
        self._server = ShardServer(
            engine,
            token=self.token,
            host=self._host,
            node_id=self.node_id,
            node_turn_rows=self._node_turn_rows,
            search_lock_path=default_lock_path(self.node_id),
        )
        self.scrubber = Scrubber(engine, self._scrub_rows_per_s)
        self.scrubber.start()
        self.sweeper = Sweeper(engine, self._sweep_rows_per_s)
        self.sweeper.start()

    @property
    def engine(self) -> ShardEngine:
        """The open engine; raises why there is none (or why it stopped serving)."""
        if self._engine is None:
            raise self.fault or DataLoss(f"replica {self.directory} has no engine")
        if self._engine.damage is not None:
            raise DataLoss(f"replica {self.directory} is damaged: {self._engine.damage}")
        return self._engine

    @property
    def server(self) -> ShardServer:
        self.engine  # noqa: B018 - raises when the replica is not serving
        assert self._server is not None
        return self._server

    def repair(self, quarantine_to: str) -> str:
        """Move this replica's directory to `quarantine_to` (kept, 0700, for inspection) and
        start afresh with an empty store; returns the new address. The caller then copies
        every row from a live peer (`catch_up`)."""
        self._stop()
        target = Path(quarantine_to)
        private_dir(target.parent)
        if self.directory.exists():
            os.replace(self.directory, target)
            os.chmod(target, 0o700)
        log.warning("replica %s quarantined to %s; starting empty", self.directory, target)
        self._open()
        return self.address()

    def _stop(self) -> None:
        if self.scrubber is not None:
            self.scrubber.stop()
            self.scrubber = None
        if self.sweeper is not None:
            self.sweeper.stop()
            self.sweeper = None
        if self._server is not None:
            self._server.stop(grace=0.5)
            self._server = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None

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

    def memory(self, trim: bool = False) -> dict[str, Any]:
        """This replica process's memory by kind (shard/process_memory.py), with its row
        count; with `trim`, also the same after glibc's malloc_trim(0) (for profiling)."""
        out: dict[str, Any] = {"count": self.engine.info()["count"], "before": report()}
        if trim:
            out["trimmed"] = process_memory.trim()
            out["after_trim"] = report(objects=False)
        return out

    def checkpoint(self) -> None:
        """Write the index checkpoint now (bench/replicas.py times a rejoin after one)."""
        self.engine.checkpoint()

    def catch_up(self, peer_address: str, page: int = 5000, timeout: float = 60.0) -> int:
        """Copy every row and tombstone the peer applied after our seq; returns our new seq.

        Pages end on whole sequence numbers, so a batch is never half-applied; a page may hold
        fewer than `page` rows without being the last (shard/local.py `catch_up_step`).
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
                applied = int(resp.applied_seq)
                upto = catch_up_step(changes, applied)
                if upto > after or changes:
                    self.engine.apply_changes(changes, upto)
                if upto >= applied:
                    return self.engine.applied_seq

    def close(self) -> None:
        """Stop serving and checkpoint; the process may then be killed."""
        self._stop()


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
