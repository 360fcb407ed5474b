"""The Python client: `Client` for collections, `Collection` for data and search.

Vectors travel packed (float32 bytes); `where` takes Chroma's filter language
(`$eq $ne $gt $gte $lt $lte $in $nin $exists $contains $and $or $not`). Server errors come
back as the same `shardvec.contract.errors` classes the server raised.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np

from shardvec.cluster import paging
from shardvec.cluster.fronts import RETRYABLE, FrontSelector
from shardvec.cluster.paging import Page
from shardvec.contract.archive import read_manifest as read_archive_manifest
from shardvec.contract.archive import verify_snapshot
from shardvec.contract.codec import dumps_json
from shardvec.contract.convert import (
    METRIC_TO_PROTO,
    PROTO_TO_METRIC,
    collection_info_to_dict,
    filter_to_proto,
    hits_from_response,
    pack_vectors,
    records_from_response,
    where_document_to_proto,
)
from shardvec.contract.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ShardvecError,
    Unavailable,
    error_for_status,
)
from shardvec.contract.facets import facet_count_from_proto
from shardvec.contract.filters import parse_where, parse_where_document
from shardvec.contract.limits import API_KEY_HEADER
from shardvec.contract.limits import PUBLIC_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from shardvec.contract.types import Hit, Record
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc

T = TypeVar("T")
# A custom embedding function, as in Chroma: texts -> one vector per text.
EmbeddingFunction = Callable[[list[str]], Any]
DEFAULT_ADDRESS = "127.0.0.1:50051"
SNAPSHOT_TIMEOUT_S = 3600.0
SNAPSHOT_CHUNK_BYTES = 1 << 20

__all__ = ["Client", "Collection", "Hit", "Page", "Record", "verify_snapshot"]


def _as_matrix(vectors: Any) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


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
        if stub is None:
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
    ) -> Collection:
        """Create a collection. `embedding="minilm"` embeds documents and query texts in the
        cluster (dim may then be left out: the model's 384); `embedding_function` embeds them
        here, in the client, before they are sent (dim left out: the length of its vector for
        one probe text). `text_tokenizer` ("unicode61", the default, or "porter") cuts
        documents and keyword queries into terms. `target_recall` (in (0, 1]; 0: the default
        0.95) is the recall@10 the cluster tunes searches without an `ef` to hold.
        `ttl_seconds` (0: never) is how long a row written without an expiry of its own
        lives: an expired row is invisible to every read at once, and swept later."""
        if metric not in METRIC_TO_PROTO:
            raise InvalidArgument(f"metric must be one of cosine, dot, euclidean, got {metric!r}")
        if dim == 0 and embedding_function is not None and not embedding:
            dim = int(_as_matrix(embedding_function(["dimension probe"])).shape[1])
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


class Collection:
    """One collection: upsert, get, delete, count and search."""

    def __init__(self, client: Client, name: str, dim: int, metric: str) -> None:
        self.client = client
        self.name = name
        self.dim = dim
        self.metric = metric
        self.embedding = ""  # the collection's embedding function in the cluster, or ""
        self.embedding_function: EmbeddingFunction | None = None  # client side, see below

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, dim={self.dim}, metric={self.metric!r})"

    def scale(
        self,
        shards: int | None = None,
        replicas: int | None = None,
        wait: bool = True,
        *,
        timeout: float = 3600.0,
        poll: float = 0.5,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Change the shard and/or replica count online. With `wait`, return once the new
        layout serves (`progress` gets each DescribeCollection change record while waiting);
        returns the collection's description."""
        req = pb.ScaleCollectionRequest(name=self.name, shards=shards or 0,
                                        replicas=replicas or 0)
        info = collection_info_to_dict(self.client.call("ScaleCollection", req))
        if not wait:
            return info
        return self.client.wait_layout(self.name, timeout=timeout, poll=poll, progress=progress)

    def abort_scale(self) -> dict[str, Any]:
        """Roll back the layout change in progress (FAILED_PRECONDITION once it switched)."""
        req = pb.ScaleCollectionRequest(name=self.name, abort=True)
        return collection_info_to_dict(self.client.call("ScaleCollection", req))

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        documents: Sequence[str | None] | None = None,
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
        ttl_seconds: float | Sequence[float] | None = None,
        expires_at: float | Sequence[float] | None = None,
    ) -> int:
        """Insert or replace rows, `batch_size` per request; returns the number upserted.
        `documents`: one text per row (None: none), stored beside its vector and metadata.
        Expiry, at most one of: `ttl_seconds` (seconds from now, one for all rows or one per
        row; 0: never) or `expires_at` (unix seconds, likewise; 0: never); neither: the
        collection's default. An upsert replaces a row, expiry included."""
        arr = _as_matrix(vectors)
        if len(ids) != arr.shape[0]:
            raise InvalidArgument(f"{len(ids)} ids for {arr.shape[0]} vectors")
        if metadatas is not None and len(metadatas) != len(ids):
            raise InvalidArgument(f"{len(metadatas)} metadatas for {len(ids)} ids")
        if documents is not None and len(documents) != len(ids):
            raise InvalidArgument(f"{len(documents)} documents for {len(ids)} ids")
        done = 0
        for start in range(0, len(ids), batch_size):
            stop = min(start + batch_size, len(ids))
            req = pb.UpsertRequest(collection=self.name, ids=[str(i) for i in ids[start:stop]])
            pack_vectors(req.vectors, arr[start:stop])
            if metadatas is not None:
                req.metadata_json.extend(
                    dumps_json(dict(m)) if m else "" for m in metadatas[start:stop]
                )
            if documents is not None:
                req.documents.extend(d or "" for d in documents[start:stop])
            _expiry(req, ttl_seconds, expires_at, len(ids), start, stop)
            done += int(self.client.call("Upsert", req).upserted)
            if progress is not None:
                progress(stop - start)
        return done

    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        ef: int | None = None,
        exact: bool = False,
        min_score: float | None = None,
        max_distance: float | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        include_documents: bool = False,
        where_document: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        group_by: str | None = None,
        groups: int | None = None,
        group_size: int | None = None,
        diversity: float | None = None,
        candidates: int | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits per query row, best first (cosine/dot: highest; euclidean: nearest).
        `where_document`: Chroma's form, e.g. {"$contains": "kafka"}.

        `group_by`: the best `groups` (10) values of that metadata field, each with its best
        `group_size` (3) hits, listed group by group with each hit's `group` set (k is then
        groups * group_size; `grouped` splits a row by group). `diversity` (lambda in [0, 1]):
        k hits picked by maximal marginal relevance out of the best `candidates` (4 k);
        1 is plain relevance order, lower trades relevance for variety."""
        req = self._search_request(
            queries,
            k,
            where,
            ef,
            exact,
            min_score,
            max_distance,
            include_metadata,
            include_vectors,
        )
        _document_options(req, include_documents, where_document)
        _shape_options(req, group_by, groups, group_size, diversity, candidates)
        resp = self.client.call("Search", req, timeout)
        return _with_groups(resp, hits_from_response(resp, self.dim))

    def search_ids(
        self, queries: Any, k: int = 10, **kwargs: Any
    ) -> tuple[list[list[str]], list[np.ndarray]]:
        """The fast path: ids and score arrays per query, no metadata."""
        kwargs.setdefault("include_metadata", False)
        timeout = kwargs.pop("timeout", None)
        req = self._search_request(
            queries,
            k,
            kwargs.pop("where", None),
            kwargs.pop("ef", None),
            kwargs.pop("exact", False),
            kwargs.pop("min_score", None),
            kwargs.pop("max_distance", None),
            kwargs.pop("include_metadata"),
            False,
        )
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
        resp = self.client.call("Search", req, timeout)
        results = resp.results
        ids: list[list[str]] = [r.ids[:] for r in results]
        rows = [r.scores[:] for r in results]
        if rows and all(len(r) == len(rows[0]) for r in rows):
            # One conversion for the whole batch; the rows are views of it.
            return ids, list(np.array(rows, dtype=np.float32).reshape(len(rows), -1))
        return ids, [np.array(r, dtype=np.float32) for r in rows]

    def _search_request(
        self,
        queries: Any,
        k: int,
        where: Mapping[str, Any] | None,
        ef: int | None,
        exact: bool,
        min_score: float | None,
        max_distance: float | None,
        include_metadata: bool,
        include_vectors: bool,
    ) -> Any:
        arr = _as_matrix(queries)
        req = pb.SearchRequest(collection=self.name, k=k, ef=ef or 0, exact=exact)
        pack_vectors(req.queries, arr)
        if where:
            req.filter.CopyFrom(filter_to_proto(parse_where(where)))
        if min_score is not None:
            req.min_score = min_score
        if max_distance is not None:
            req.max_distance = max_distance
        req.include.metadata = include_metadata
        req.include.vectors = include_vectors
        return req

    # Text in: documents and query texts, embedded by the client's embedding_function when it
    # has one, else in the cluster by the collection's embedding (coordinator/embedding/pool.py).

    def _embed_here(self, texts: Sequence[str]) -> np.ndarray:
        assert self.embedding_function is not None
        arr = _as_matrix(self.embedding_function(list(texts)))
        if arr.shape != (len(texts), self.dim):
            raise InvalidArgument(
                f"embedding_function: returned shape {arr.shape} for {len(texts)} texts; "
                f"expected ({len(texts)}, {self.dim})"
            )
        return arr

    def upsert_documents(
        self,
        ids: Sequence[str],
        documents: Sequence[str],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        batch_size: int = 256,
        progress: Callable[[int], None] | None = None,
        ttl_seconds: float | Sequence[float] | None = None,
    ) -> int:
        """Insert or replace rows from their texts (Chroma's `add(ids, documents=...)`): the
        embedding_function embeds them here, or the cluster does with the collection's
        embedding. Returns the number upserted. `ttl_seconds` as in `upsert`."""
        if len(documents) != len(ids):
            raise InvalidArgument(f"{len(documents)} documents for {len(ids)} ids")
        if metadatas is not None and len(metadatas) != len(ids):
            raise InvalidArgument(f"{len(metadatas)} metadatas for {len(ids)} ids")
        done = 0
        for start in range(0, len(ids), batch_size):
            stop = min(start + batch_size, len(ids))
            req = pb.UpsertRequest(collection=self.name, ids=[str(i) for i in ids[start:stop]])
            req.documents.extend(documents[start:stop])
            _expiry(req, ttl_seconds, None, len(ids), start, stop)
            if self.embedding_function is not None:
                pack_vectors(req.vectors, self._embed_here(documents[start:stop]))
            if metadatas is not None:
                req.metadata_json.extend(
                    dumps_json(dict(m)) if m else "" for m in metadatas[start:stop]
                )
            done += int(self.client.call("Upsert", req).upserted)
            if progress is not None:
                progress(stop - start)
        return done

    def search_keywords(
        self,
        keywords: Sequence[str] | str,
        k: int = 10,
        *,
        queries: Any = None,
        texts: Sequence[str] | str | None = None,
        fusion: str = "",
        alpha: float | None = None,
        rrf_k: int = 0,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        include_documents: bool = False,
        timeout: float | None = None,
        group_by: str | None = None,
        groups: int | None = None,
        group_size: int | None = None,
    ) -> list[list[Hit]]:
        """Keyword search: the BM25 top-k of each keyword text over the documents (scored
        with the whole collection's statistics; the text is words, never query syntax).
        With `queries` (vectors) or `texts` (query texts, embedded), one per keyword text:
        hybrid search, the two rankings fused by `fusion` "rrf" (default; `rrf_k`, 60) or
        "weighted" (`alpha`: the vector side's weight, 0.5). `group_by` as in `search`."""
        keywords = [keywords] if isinstance(keywords, str) else list(keywords)
        req = pb.SearchRequest(collection=self.name, k=k)
        req.text_query.extend(keywords)
        if texts is not None:
            texts = [texts] if isinstance(texts, str) else list(texts)
            if self.embedding_function is not None:
                pack_vectors(req.queries, self._embed_here(texts))
            else:
                req.query_texts.extend(texts)
        elif queries is not None:
            pack_vectors(req.queries, _as_matrix(queries))
        if fusion:
            req.fusion = fusion
        if alpha is not None:
            req.alpha = alpha
        req.rrf_k = rrf_k
        if where:
            req.filter.CopyFrom(filter_to_proto(parse_where(where)))
        req.include.metadata = include_metadata
        req.include.vectors = include_vectors
        _document_options(req, include_documents, where_document)
        _shape_options(req, group_by, groups, group_size, None, None)
        resp = self.client.call("Search", req, timeout)
        return _with_groups(resp, hits_from_response(resp, self.dim))

    def search_texts(
        self,
        texts: Sequence[str] | str,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        ef: int | None = None,
        exact: bool = False,
        min_score: float | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        include_documents: bool = True,
        where_document: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        group_by: str | None = None,
        groups: int | None = None,
        group_size: int | None = None,
        diversity: float | None = None,
        candidates: int | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits per query text, best first (Chroma's `query(query_texts=...)`);
        group_by and diversity as in `search`. Hits carry their documents unless
        include_documents=False."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if self.embedding_function is not None:
            queries = self._embed_here(texts)
        else:
            queries = np.empty((0, self.dim), np.float32)
        req = self._search_request(
            queries, k, where, ef, exact, min_score, None, include_metadata, include_vectors
        )
        _document_options(req, include_documents, where_document)
        _shape_options(req, group_by, groups, group_size, diversity, candidates)
        if self.embedding_function is None:
            req.ClearField("queries")
            req.query_texts.extend(texts)
        resp = self.client.call("Search", req, timeout)
        return _with_groups(resp, hits_from_response(resp, self.dim))

    def facet(
        self,
        field: str,
        *,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        limit: int = 10,
        timeout: float | None = None,
    ) -> list[tuple[Any, int]]:
        """The `limit` (at most 1000) most frequent values of metadata `field` among the rows
        matching `where` / `where_document`, with their exact counts, most first: strings,
        numbers (whole ones as int), booleans, and each element of a list."""
        req = pb.FacetRequest(collection=self.name, field=field, limit=limit)
        if where:
            req.filter.CopyFrom(filter_to_proto(parse_where(where)))
        _document_options(req, False, where_document)
        resp = self.client.call("Facet", req, timeout)
        return [_facet_value(v) for v in resp.values]

    def get(
        self,
        ids: Sequence[str] | None = None,
        *,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        limit: int = 0,
        include_vectors: bool = True,
        include_documents: bool = True,
    ) -> list[Record]:
        """The rows of `ids` found, in request order (missing ids are left out); or, with no
        ids, the first `limit` rows (0: the server's cap) matching `where` / `where_document`
        (every row with neither), in the scroll order. To walk more rows, use `scroll`."""
        req = pb.GetRequest(collection=self.name, ids=list(ids or []), limit=limit)
        if where:
            req.filter.CopyFrom(filter_to_proto(parse_where(where)))
        if where_document is not None:
            req.where_document.CopyFrom(
                where_document_to_proto(parse_where_document(where_document))
            )
        req.include.metadata = True
        req.include.vectors = include_vectors
        req.include.documents = include_documents
        return records_from_response(self.client.call("Get", req), self.dim)

    def delete(
        self, ids: Sequence[str] | None = None, *, where: Mapping[str, Any] | None = None
    ) -> int:
        """Delete by ids or by filter (exactly one); returns the number of rows deleted."""
        if (ids is None) == (where is None):
            raise InvalidArgument("delete: give exactly one of ids and where")
        req = pb.DeleteRequest(collection=self.name)
        if where is not None:
            req.filter.CopyFrom(filter_to_proto(parse_where(where)))
        else:
            req.ids.extend(ids or [])
        return int(self.client.call("Delete", req).deleted)

    def count(
        self,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> int:
        req = pb.CountRequest(collection=self.name)
        if where:
            req.filter.CopyFrom(filter_to_proto(parse_where(where)))
        _document_options(req, False, where_document)
        return int(self.client.call("Count", req).count)

    # Paging and search by id (cluster/paging.py).

    def scroll(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        page_size: int = 0,
        include_metadata: bool = True,
        include_vectors: bool = False,
        include_documents: bool = False,
        where_document: Mapping[str, Any] | None = None,
        cursor: bytes = b"",
        part: tuple[int, int] | None = None,
        timeout: float | None = None,
    ) -> Iterator[Record]:
        """Every row (or every row matching `where`) exactly once, in a stable order, fetched
        `page_size` rows at a time (0: the server's default, 256). Rows written while it runs
        may or may not come; rows alive throughout all come, once."""
        return paging.scroll(
            self,
            where,
            page_size=page_size,
            include_metadata=include_metadata,
            include_vectors=include_vectors,
            include_documents=include_documents,
            where_document=where_document,
            cursor=cursor,
            part=part,
            timeout=timeout,
        )

    def scroll_pages(self, where: Mapping[str, Any] | None = None, **kwargs: Any) -> Iterator[Page]:
        """`scroll` page by page, each with the cursor that resumes after it."""
        return paging.scroll_pages(self, where, **kwargs)

    def search_by_ids(self, ids: Sequence[str], k: int = 10, **kwargs: Any) -> list[list[Hit]]:
        """"More like these": per id, the hits nearest its stored vector, leaving out every
        id asked for; `where`, `ef`, `exact`, thresholds and includes as in `search`."""
        return paging.search_by_ids(self, ids, k, **kwargs)
    def update(
        self,
        ids: Sequence[str],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        documents: Sequence[str | None] | None = None,
        *,
        replace_metadata: bool = False,
        upsert_missing: bool = False,
        vectors: Any = None,
        ttl_seconds: float | Sequence[float] | None = None,
        expires_at: float | Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """Change the metadata (merged into the stored object, or replaced), documents and/or
        expiry of existing rows without sending their vectors; a None entry leaves that row's
        part unchanged. Returns {"updated", "missing_ids", "inserted"}: ids not in the
        collection (or expired) are reported missing, or inserted with upsert_missing (then
        `vectors` holds one row per id). Expiry as in `upsert`; neither given: each row keeps
        its own."""
        req = pb.UpdateRequest(
            collection=self.name,
            ids=[str(i) for i in ids],
            replace_metadata=replace_metadata,
            upsert_missing=upsert_missing,
        )
        for what, given in (("metadatas", metadatas), ("documents", documents)):
            if given is not None and len(given) != len(ids):
                raise InvalidArgument(f"{len(given)} {what} for {len(ids)} ids")
        if metadatas is not None:
            req.metadata_json.extend(
                dumps_json(dict(m)) if m is not None else "" for m in metadatas
            )
        if documents is not None:
            req.documents.extend(d or "" for d in documents)
        if vectors is not None:
            pack_vectors(req.vectors, _as_matrix(vectors))
        _expiry(req, ttl_seconds, expires_at, len(ids), 0, len(ids))
        resp = self.client.call("Update", req)
        return {
            "updated": int(resp.updated),
            "missing_ids": list(resp.missing_ids),
            "inserted": int(resp.inserted),
        }


def _expiry(
    req: Any,
    ttl_seconds: float | Sequence[float] | None,
    expires_at: float | Sequence[float] | None,
    n: int,
    start: int,
    stop: int,
) -> None:
    """Set an Upsert/Update request's ttl_seconds or expires_at for rows [start, stop) of
    `n`: a number for every row, or a sequence of one per row (sliced)."""
    for field, given in (("ttl_seconds", ttl_seconds), ("expires_at", expires_at)):
        if given is None:
            continue
        if isinstance(given, (int, float)):
            getattr(req, field).append(float(given))
            continue
        values = list(given)
        if len(values) != n:
            raise InvalidArgument(f"{field}: {len(values)} values for {n} ids")
        getattr(req, field).extend(float(v) for v in values[start:stop])


def _document_options(
    req: Any, include_documents: bool, where_document: Mapping[str, Any] | None
) -> None:
    """Set a Search/Count/Get request's include.documents and where_document (Chroma form)."""
    if include_documents:
        req.include.documents = True
    if where_document is not None:
        req.where_document.CopyFrom(where_document_to_proto(parse_where_document(where_document)))


def _shape_options(
    req: Any, group_by: str | None, groups: int | None, group_size: int | None,
    diversity: float | None, candidates: int | None,
) -> None:  # fmt: skip
    """Set a SearchRequest's group-by and diversity fields (the server checks them)."""
    if group_by is not None:
        req.group_by = group_by
        req.k = 0  # a grouped search returns groups x group_size hits
    if groups is not None:
        req.groups = groups
    if group_size is not None:
        req.group_size = group_size
    if diversity is not None:
        req.diversity = diversity
    if candidates is not None:
        req.candidates = candidates


def _with_groups(resp: Any, hits: list[list[Hit]]) -> list[list[Hit]]:
    """`hits` with each hit's group value set, when the response is a grouped search's."""
    if not any(len(r.group_values) for r in resp.results):
        return hits
    return [
        [dataclasses.replace(h, group=json.loads(g)) for h, g in zip(row, r.group_values,
                                                                     strict=True)]
        for row, r in zip(hits, resp.results, strict=True)
    ]  # fmt: skip


def grouped(hits: Sequence[Hit]) -> list[tuple[Any, list[Hit]]]:
    """One query's hits of a grouped search as (group value, its hits), best group first."""
    out: list[tuple[Any, list[Hit]]] = []
    for h in hits:
        if not out or out[-1][0] != h.group or type(out[-1][0]) is not type(h.group):
            out.append((h.group, []))
        out[-1][1].append(h)
    return out


def _facet_value(msg: Any) -> tuple[Any, int]:
    """A FacetCount as (value, count), a whole number as int."""
    value, count = facet_count_from_proto(msg)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value), count
    return value, count
