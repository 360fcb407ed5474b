"""Coordinator settings: one frozen dataclass, validated once, unknown keys rejected."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.limits import (
    DEFAULT_BUILD_THREADS,
    DEFAULT_SCRUB_ROWS_PER_S,
    DEFAULT_SWEEP_ROWS_PER_S,
    MAX_DOCUMENT_BYTES,
    MAX_EF,
    MAX_K,
    MAX_METADATA_BYTES,
    MAX_SCROLL_ROWS,
    PUBLIC_MAX_MESSAGE_BYTES,
)


@dataclasses.dataclass(frozen=True)
class CoordinatorSettings:
    """How the coordinator serves: address, data, security, limits and shard resources."""

    data_dir: str
    host: str = "127.0.0.1"
    port: int = 50051
    token: str = ""  # internal token for the shard service
    api_key: str = ""  # full access; empty: no authentication
    read_only_key: str = ""  # may search, get and count, not write
    read_only_max_texts: int = 256  # query texts one Search of the read-only key may embed
    read_only_texts_per_s: int = 200  # query texts the read-only key may embed per second
    tls_cert: str = ""  # PEM paths; both set: TLS on the public port
    tls_key: str = ""
    max_message_bytes: int = PUBLIC_MAX_MESSAGE_BYTES
    max_metadata_bytes: int = MAX_METADATA_BYTES  # one row's metadata as compact JSON
    max_document_bytes: int = MAX_DOCUMENT_BYTES  # one row's document, UTF-8
    max_upsert_rows: int = 10_000
    max_query_rows: int = 10_000
    max_k: int = MAX_K  # may be lowered, not raised
    max_search_hits: int = 1_000_000  # queries x k of one Search
    max_ef: int = MAX_EF  # likewise
    max_scroll_rows: int = MAX_SCROLL_ROWS  # rows of one Scroll page; may be lowered
    default_deadline_s: float = 30.0
    search_threads: int = 0  # hnswlib threads of a replica's batch search; 0: its node's CPUs
    build_threads: int = DEFAULT_BUILD_THREADS
    replica_cpus: float = 0.0
    batch_window_s: float = 0.1  # longest wait behind running batches (see batching.py)
    batch_max: int = 256
    batch_in_flight: int = 1  # micro-batches per search kind running before calls wait
    node_turn_rows: int = 256  # replicas of a node search this many queries in turn; 0: never
    shard_stream: bool = True  # small searches over one persistent stream per replica
    metrics_port: int = 0  # 0: no metrics endpoint
    max_snapshot_streams: int = 2  # CreateSnapshot and RestoreSnapshot calls running at once
    scrub_rows_per_s: int = DEFAULT_SCRUB_ROWS_PER_S  # each replica's row-checksum scrub; 0: off
    sweep_rows_per_s: int = DEFAULT_SWEEP_ROWS_PER_S  # expired rows each replica removes a second
    max_embedders: int = 8  # embedder actors: one per live node, at most this many
    embedders_per_node: int = 1
    embedder_cpus: float = 0.0  # CPUs Ray reserves for each embedder actor
    embedder_threads: int = 1  # BLAS threads of each embedder
    embedder_refresh_s: float = 10.0  # how often the embedder pool re-reads the live nodes
    # Query fronts (coordinator/fronts/): -1: none; 0: one per node on a free port
    # (simulated nodes on one machine); > 0: one per node on this port (a real cluster).
    front_port: int = -1
    # Each front's Prometheus /metrics: -1: none; 0: a free port each; > 0: this port.
    front_metrics_port: int = -1
    front_refresh_s: float = 3.0  # how often the coordinator looks for joined and left nodes
    auto_rebalance: bool = True  # move replicas when a node joins or leaves (replica_changes)
    # The recall tuner (coordinator/queries/recall_tuner.py): on/off, how often it checks each
    # collection, and the most of the wall time its measuring searches may take (25 %: at 10 %
    # a tune at 1M rows came 114 s after the load, the exact pass's pause most of it).
    recall_tuner: bool = True
    recall_tuner_interval_s: float = 2.0
    recall_tuner_cpu_share: float = 0.25

    def __post_init__(self) -> None:
        if not self.data_dir:
            raise InvalidArgument("data_dir must be set")
        if not 0 <= self.port <= 65535:
            raise InvalidArgument(f"port must be in [0, 65535], got {self.port}")
        if not -1 <= self.front_port <= 65535:
            raise InvalidArgument(f"front_port must be -1 or in [0, 65535], got {self.front_port}")
        if not -1 <= self.front_metrics_port <= 65535:
            raise InvalidArgument(
                f"front_metrics_port must be -1 or in [0, 65535], got {self.front_metrics_port}"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidArgument("tls_cert and tls_key must be given together")
        for name in (
            "max_upsert_rows",
            "max_query_rows",
            "max_k",
            "max_search_hits",
            "max_ef",
            "build_threads",
            "batch_max",
            "batch_in_flight",
            "max_message_bytes",
            "max_metadata_bytes",
            "max_document_bytes",
            "max_snapshot_streams",
            "max_scroll_rows",
            "max_embedders",
            "embedders_per_node",
            "embedder_threads",
        ):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be >= 1")
        for name, cap in (
            ("max_message_bytes", PUBLIC_MAX_MESSAGE_BYTES),  # replicas' requests are sized to it
            ("max_k", MAX_K),
            ("max_ef", MAX_EF),
            ("max_scroll_rows", MAX_SCROLL_ROWS),
        ):
            if getattr(self, name) > cap:
                raise InvalidArgument(f"{name} must be <= {cap}")
        if self.read_only_max_texts < 1 or self.read_only_texts_per_s <= 0:
            raise InvalidArgument("read_only_max_texts and read_only_texts_per_s must be > 0")
        for name in ("search_threads", "node_turn_rows", "scrub_rows_per_s", "sweep_rows_per_s"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"{name} must be >= 0")
        if not 0 < self.recall_tuner_cpu_share <= 1:
            raise InvalidArgument("recall_tuner_cpu_share must be in (0, 1]")
        if not self.recall_tuner_interval_s > 0:
            raise InvalidArgument("recall_tuner_interval_s must be > 0")
        if not self.embedder_refresh_s > 0:
            raise InvalidArgument("embedder_refresh_s must be > 0")
        if self.read_only_key and not self.api_key:
            raise InvalidArgument("read_only_key needs api_key as well")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CoordinatorSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidArgument(f"unknown coordinator setting(s): {', '.join(unknown)}")
        return cls(**dict(raw))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def blas_threads_env(threads: int) -> dict[str, str]:
    """A Ray actor's `runtime_env` env_vars that fix its BLAS (and Rayon) thread count. They
    must be set when its process starts: a worker Ray started beforehand has loaded OpenBLAS
    with a thread per CPU, whose idle threads spin beside every other process on the node (on
    the 2-core box a replica's exact scan took 2 to 3 times its own CPU that way)."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "RAYON_NUM_THREADS": n}  # fmt: skip
