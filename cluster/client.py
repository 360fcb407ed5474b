"""The Python client: `Client` for collections, `Collection` (cluster/client_collection.py) for
data and search.

Vectors travel packed (float32 bytes); `where` takes Chroma's filter language
(`$eq $ne $gt $gte $lt $lte $in $nin $exists $contains $and $or $not`). Server errors come
back as the same `shardvec.contract.errors` classes the server raised.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc

from shardvec.cluster.client_collection import Collection, EmbeddingFunction
from shardvec.cluster.fronts import RETRYABLE, FrontSelector
from shardvec.cluster.paging import Page
from shardvec.cluster.request_fields import as_matrix, grouped
from shardvec.contract.archive import read_manifest as read_archive_manifest
from shardvec.contract.archive import verify_snapshot
from shardvec.contract.convert import METRIC_TO_PROTO, PROTO_TO_METRIC
from shardvec.contract.convert_public import collection_info_to_dict
from shardvec.contract.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ShardvecError,
    Unavailable,
    error_for_status,
)
from shardvec.contract.limits import API_KEY_HEADER
from shardvec.contract.limits import PUBLIC_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from shardvec.contract.types import Hit, Record
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc

T = TypeVar("T")
DEFAULT_ADDRESS = "127.0.0.1:50051"
SNAPSHOT_TIMEOUT_S = 3600.0
SNAPSHOT_CHUNK_BYTES = 1 << 20

__all__ = [
    "Client",
    "Collection",
    "EmbeddingFunction",
    "Hit",
    "Page",
    "Record",
    "grouped",
    "verify_snapshot",
]


class Client:
    """A connection to a shardvec cluster's public gRPC API.

    Given any one address (the coordinator's or a query front's), it asks for the cluster's
    fronts (ClusterInfo) and spreads its calls over them; a front that fails is passed over,
    and a read (or an Upsert) it failed goes to another front within the call's deadline
    (cluster/fronts.py). `discover=False`: every call to `address` alone."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        tls_ca: bytes | None = None,
        discover: bool = True,
        refresh_s: float = 30.0,
    ) -> None:
        self._options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        self._tls_ca = tls_ca
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self._stubs: dict[str, pb_grpc.VectorSearchStub] = {}
        self._stub = self._stub_for(address)
        self._channel = self._channels[address]
        self._metadata = ((API_KEY_HEADER, api_key),) if api_key else ()
        self.timeout = timeout
        self.address = address
        self.fronts = FrontSelector(address)
        self._discover = discover
        self._refresh_s = refresh_s
        self._discovered = -float("inf")
        self._next_discovery = refresh_s
        self.served_by: dict[str, int] = {}  # calls answered, by address

    def _stub_for(self, address: str) -> pb_grpc.VectorSearchStub:
        stub = self._stubs.get(address)
        if stub is not None:
            return stub
        with self._lock:  # one channel an address, when calls come from several threads
            stub = self._stubs.get(address)
            if stub is not None:
                return stub
            if self._tls_ca is not None:
                creds = grpc.ssl_channel_credentials(root_certificates=self._tls_ca)
                channel = grpc.secure_channel(address, creds, options=self._options)
            else:
                channel = grpc.insecure_channel(address, options=self._options)
            self._channels[address] = channel
            stub = self._stubs[address] = pb_grpc.VectorSearchStub(channel)
        return stub

    def discover(self) -> list[str]:
        """Ask for the cluster's fronts (from any address that answers); returns them."""
        self._discovered = time.monotonic()
        for address in [*self.fronts.healthy(), self.address]:
            try:
                info = self._stub_for(address).ClusterInfo(
                    pb.ClusterInfoRequest(), timeout=min(self.timeout, 5.0),
                    metadata=self._metadata,
                )  # fmt: skip
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # a server without fronts
                    self._discover = False
                    return []
                continue
            fronts = [f.address for f in info.fronts]
            self.fronts.update(fronts)
            return fronts
        return []

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        """Invoke one RPC on the next front; gRPC errors become shardvec errors. A retryable
        call a front fails with UNAVAILABLE goes to the next front while time is left."""
        if self._discover and time.monotonic() - self._discovered > self._next_discovery:
            # none found yet (the fronts are starting): look again soon
            self._next_discovery = self._refresh_s if self.discover() else min(
                self._refresh_s, 2.0
            )
        deadline = time.monotonic() + (timeout or self.timeout)
        tried: set[str] = set()
        while True:
            address = self.fronts.pick(tried)
            if address is None:
                address = self.address
            tried.add(address)
            left = deadline - time.monotonic()
            try:
                resp = getattr(self._stub_for(address), method)(
                    request, timeout=max(left, 0.001), metadata=self._metadata
                )
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNAVAILABLE:
                    self.fronts.failed(address)
                    more = self.fronts.pick(tried) is not None
                    if method in RETRYABLE and more and deadline - time.monotonic() > 0:
                        continue
                raise error_for_status(code, exc.details() or "") from None
            self.fronts.ok(address)
            self.served_by[address] = self.served_by.get(address, 0) + 1
            return resp

    def wait_ready(self, timeout: float = 30.0) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def create_collection(
        self,
        name: str,
        dim: int = 0,
        metric: str = "cosine",
        shards: int = 1,
        replicas: int = 1,
        *,
        m: int = 0,
        ef_construction: int = 0,
        ef: int = 0,
        embedding: str = "",
        embedding_function: EmbeddingFunction | None = None,
        text_tokenizer: str = "",
        target_recall: float = 0.0,
        ttl_seconds: float = 0.0,
        payload_on_disk: bool = False,
    ) -> Collection:
        """Create a collection. `embedding="minilm"` embeds documents and query texts in the
        cluster (dim may then be left out: the model's 384); `embedding_function` embeds them
        here, in the client, before they are sent (dim left out: the length of its vector for
        one probe text). `text_tokenizer` ("unicode61", the default, or "porter") cuts
        documents and keyword queries into terms. `target_recall` (in (0, 1]; 0: the default
        0.95) is the recall@10 the cluster tunes searches without an `ef` to hold.
        `ttl_seconds` (0: never) is how long a row written without an expiry of its own
        lives: an expired row is invisible to every read at once, and swept later.
        `payload_on_disk` keeps the rows' metadata and documents only in each replica's
        store, read from there for the hits that return them and for where_document, instead
        of in memory (set at creation only)."""
        if metric not in METRIC_TO_PROTO:
            raise InvalidArgument(f"metric must be one of cosine, dot, euclidean, got {metric!r}")
        if dim == 0 and embedding_function is not None and not embedding:
            dim = int(as_matrix(embedding_function(["dimension probe"])).shape[1])
        req = pb.CreateCollectionRequest(
            name=name,
            dimension=dim,
            metric=METRIC_TO_PROTO[metric],
            shards=shards,
            replicas=replicas,
            embedding=embedding,
            text_tokenizer=text_tokenizer,
            target_recall=target_recall,
            ttl_seconds=ttl_seconds,
            payload_on_disk=payload_on_disk,
        )
        req.index.m, req.index.ef_construction, req.index.ef = m, ef_construction, ef
        info = self.call("CreateCollection", req)
        return _collection(self, info, embedding_function)

    def get_collection(
        self, name: str, *, embedding_function: EmbeddingFunction | None = None
    ) -> Collection:
        """Collection `name`; an alias stays an alias (its calls follow a switch)."""
        info = self.call("DescribeCollection", pb.DescribeCollectionRequest(name=name))
        return _collection(self, info, embedding_function, name)

    def describe(self, name: str) -> dict[str, Any]:
        info = self.call("DescribeCollection", pb.DescribeCollectionRequest(name=name))
        return collection_info_to_dict(info)

    def set_collection_options(
        self, name: str, *, target_recall: float | None = None, ttl_seconds: float | None = None
    ) -> dict[str, Any]:
        """Change collection `name`'s options that move no data (None: as now); returns its
        description. A new `target_recall` is tuned to within about a minute; a new default
        `ttl_seconds` (0: none) applies to rows written from now on."""
        req = pb.SetCollectionOptionsRequest(name=name)
        if target_recall is not None:
            req.target_recall = target_recall
        if ttl_seconds is not None:
            req.ttl_seconds = ttl_seconds
        return collection_info_to_dict(self.call("SetCollectionOptions", req))

    def rebalance(self, name: str = "", timeout: float | None = 3600.0) -> list[dict[str, Any]]:
        """Move replicas (of `name`, or of every collection) until every node holds about the
        same rows; returns the moves made."""
        resp = self.call("Rebalance", pb.RebalanceRequest(name=name), timeout=timeout)
        return [
            {"collection": m.collection, "shard": m.shard, "replica": m.replica,
             "source": m.source, "target": m.target, "rows": m.rows}
            for m in resp.moves
        ]

    def wait_layout(
        self,
        name: str,
        *,
        timeout: float = 3600.0,
        poll: float = 0.5,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Wait until collection `name` has no layout change in progress and every replica is
        live; returns its description. A change that stopped on an error it keeps retrying is
        reported through `progress`; past `timeout`, DeadlineExceeded. A coordinator going
        away or coming back while waiting (UNAVAILABLE, or a call CANCELLED as its connection
        dropped) is retried until `timeout`."""
        end = time.monotonic() + timeout
        while True:
            try:
                info = self.describe(name)
            except ShardvecError as exc:
                gone = exc.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                if not gone or time.monotonic() > end:
                    raise
                time.sleep(poll)
                continue
            change = info["change"]
            if change is None and all(
                r["state"] == "live" for r in info["replica_states"]
            ):
                return info
            if change is not None and progress is not None:
                progress(change)
            if time.monotonic() > end:
                raise DeadlineExceeded(f"{name}: the layout change did not finish in {timeout} s")
            time.sleep(poll)

    def wait_live(
        self, name: str, timeout: float = 120.0, *, level: bool = False, poll: float = 0.25
    ) -> list[dict[str, Any]]:
        """Wait until every replica of `name` is live; with `level`, also until the replicas
        of each shard hold the same rows and sequence number. Returns the replica states.

        Errors while waiting (a coordinator coming back) are retried until `timeout`.
        """
        deadline = time.monotonic() + timeout
        reps: list[dict[str, Any]] = []
        last_error = ""
        while time.monotonic() < deadline:
            try:
                reps = self.describe(name)["replica_states"]
            except ShardvecError as exc:
                last_error = f"; last error: {exc.code.name}: {exc.message}"
                time.sleep(poll)
                continue
            if all(r["state"] == "live" for r in reps) and (
                not level
                or all(
                    len({(r["count"], r["applied_seq"]) for r in reps if r["shard"] == s}) == 1
                    for s in {r["shard"] for r in reps}
                )
            ):
                return reps
            time.sleep(poll)
        raise Unavailable(
            f"{name}: replicas not all live{' and level' if level else ''}: {reps}{last_error}"
        )

    def list_collections(self) -> list[dict[str, Any]]:
        resp = self.call("ListCollections", pb.ListCollectionsRequest())
        return [collection_info_to_dict(c) for c in resp.collections]

    def drop_collection(self, name: str) -> None:
        self.call("DropCollection", pb.DropCollectionRequest(name=name))

    # Aliases (coordinator/aliases.py): every call that takes a collection name takes an alias.

    def create_alias(self, alias: str, collection: str) -> None:
        """Make `alias` a second name of `collection`."""
        self.call("CreateAlias", pb.CreateAliasRequest(alias=alias, collection=collection))

    def switch_alias(self, alias: str, collection: str, *, embedding_changed: bool = False) -> str:
        """Point `alias` at `collection` (same dimension and metric; with `embedding_changed`
        the dimension may differ) atomically; returns the collection it named before."""
        req = pb.SwitchAliasRequest(
            alias=alias, collection=collection, embedding_changed=embedding_changed
        )
        return str(self.call("SwitchAlias", req).previous)

    def delete_alias(self, alias: str) -> str:
        """Remove `alias` (its collection stays); returns the collection it named."""
        return str(self.call("DeleteAlias", pb.DeleteAliasRequest(alias=alias)).alias.collection)

    def list_aliases(self) -> dict[str, str]:
        """Every alias and the collection it names."""
        resp = self.call("ListCollections", pb.ListCollectionsRequest())
        return {a.name: a.collection for a in resp.aliases}

    def reembed(
        self,
        name: str,
        *,
        into: str,
        embed: EmbeddingFunction | None = None,
        embedding: str = "",
        alias: str = "",
        page_size: int = 256,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Re-embed the documents of the collection behind alias `name` into a new collection
        `into` (by `embed` here, or the cluster's `embedding`), check its count, then switch
        the alias to it (cluster/reembed.py; `name` a collection: `alias` names `into`)."""
        from shardvec.cluster.reembed import reembed

        done = reembed(
            self, name, into=into, embed=embed, embedding=embedding, alias=alias,
            page_size=page_size, progress=progress,
        )  # fmt: skip
        return dataclasses.asdict(done)

    def create_snapshot(
        self, name: str, out_path: str | Path, *, timeout: float = SNAPSHOT_TIMEOUT_S
    ) -> dict[str, Any]:
        """Write a point-in-time snapshot archive of collection `name` to `out_path` (written
        whole, then renamed into place); returns the archive's manifest."""
        out = Path(out_path)
        part = out.with_name(out.name + ".part")
        req = pb.CreateSnapshotRequest(collection=name)
        try:
            with part.open("wb") as f:
                for chunk in self._stub.CreateSnapshot(
                    req, timeout=timeout, metadata=self._metadata
                ):
                    f.write(chunk.data)
            os.replace(part, out)
        except grpc.RpcError as exc:
            part.unlink(missing_ok=True)
            raise error_for_status(exc.code(), exc.details() or "") from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return read_archive_manifest(out)

    def restore_snapshot(
        self,
        path: str | Path,
        as_name: str | None = None,
        *,
        shards: int = 0,
        replicas: int = 0,
        timeout: float = SNAPSHOT_TIMEOUT_S,
    ) -> Collection:
        """Restore a snapshot archive into a new collection (named `as_name`, or the
        snapshot's own name), with `shards` / `replicas` (0: as in the snapshot)."""
        src = Path(path)
        if not src.is_file():
            raise InvalidArgument(f"snapshot {src}: no such file")

        def chunks() -> Iterator[Any]:
            first: Any = pb.SnapshotChunk(
                restore_as=as_name or "", shards=shards, replicas=replicas
            )
            with src.open("rb") as f:
                while data := f.read(SNAPSHOT_CHUNK_BYTES):
                    if first is not None:
                        first.data = data
                        yield first
                        first = None
                    else:
                        yield pb.SnapshotChunk(data=data)
            if first is not None:
                yield first

        try:
            info = self._stub.RestoreSnapshot(chunks(), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_for_status(exc.code(), exc.details() or "") from None
        return Collection(self, info.name, int(info.dimension), PROTO_TO_METRIC[info.metric])

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _collection(
    client: Client, info: Any, fn: EmbeddingFunction | None, name: str = ""
) -> Collection:
    col = Collection(
        client, name or info.name, int(info.dimension), PROTO_TO_METRIC[info.metric]
    )
    col.embedding = info.embedding
    col.embedding_function = fn
    return col
