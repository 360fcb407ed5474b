"""The internal gRPC service of one shard replica (`shardvec.v1.Shard`) around a ShardEngine.

A threaded (sync) gRPC server: hnswlib releases the GIL while it searches, so concurrent
batches from the coordinator use the replica's cores. Every call must carry the cluster's
internal token; errors leave as precise status codes through one interceptor.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from shardvec.v1 import shard_pb2, shard_pb2_grpc

from shard.engine import ShardEngine
from shard.errors import ShardvecError, Unauthenticated
from shard.validation import encode_packed, parse_metadata_json
from shard.wire import dumps_json, filter_from_proto, metadata_to_json, vectors_from_proto

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-shardvec-internal"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class _Guard(grpc.ServerInterceptor):  # type: ignore[misc]
    """Checks the internal token and maps ShardvecError to its status code."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        supplied = dict(details.invocation_metadata or ()).get(TOKEN_HEADER, "")
        authorized = hmac.compare_digest(self._token, str(supplied).encode())
        inner = handler.unary_unary

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                if not authorized:
                    raise Unauthenticated("shard service: missing or wrong internal token")
                return inner(request, context)
            except ShardvecError as exc:
                context.abort(exc.code, exc.message)
            except Exception as exc:  # a bug, not bad input: report it, keep serving
                log.exception("shard rpc %s failed", details.method)
                context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class ShardService(shard_pb2_grpc.ShardServicer):  # type: ignore[misc]
    """Translates wire messages to engine calls; holds no state of its own."""

    def __init__(self, engine: ShardEngine, node_id: str = "") -> None:
        self.engine = engine
        self.node_id = node_id

    @property
    def dim(self) -> int:
        return self.engine.settings.dim

    def Upsert(self, request: Any, context: grpc.ServicerContext) -> Any:
        n = len(request.ids)
        vectors = vectors_from_proto(request.vectors, self.dim)
        metadatas = parse_metadata_json(list(request.metadata_json), n)
        applied = self.engine.upsert(request.seq, list(request.ids), vectors, metadatas)
        return shard_pb2.ShardWriteResponse(
            applied=applied, affected=n if applied else 0, applied_seq=self.engine.applied_seq
        )

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        where = filter_from_proto(request.filter) if request.HasField("filter") else None
        ids = list(request.ids) if where is None else None
        before = self.engine.applied_seq
        deleted = self.engine.delete(request.seq, ids=ids, where=where)
        return shard_pb2.ShardWriteResponse(
            applied=request.seq > before, affected=deleted, applied_seq=self.engine.applied_seq
        )

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        inc_meta, inc_vec = request.include.metadata, request.include.vectors
        records = [
            r
            for r in self.engine.get(
                list(request.ids), include_vectors=inc_vec, include_metadata=inc_meta
            )
            if r is not None
        ]
        resp = shard_pb2.ShardGetResponse(ids=[r.id for r in records])
        if inc_meta:
            resp.metadata_json.extend(metadata_to_json([r.metadata for r in records]))
        if inc_vec and records:
            resp.vectors.dim = self.dim
            resp.vectors.packed = encode_packed(np.stack([r.vector for r in records]))
        return resp

    def Count(self, request: Any, context: grpc.ServicerContext) -> Any:
        where = filter_from_proto(request.filter) if request.HasField("filter") else None
        return shard_pb2.ShardCountResponse(count=self.engine.count(where))

    def Search(self, request: Any, context: grpc.ServicerContext) -> Any:
        queries = vectors_from_proto(request.queries, self.dim, field="queries")
        where = filter_from_proto(request.filter) if request.HasField("filter") else None
        result = self.engine.search(
            queries,
            int(request.k),
            where=where,
            ef=int(request.ef) or None,
            exact=request.exact,
            min_score=request.min_score if request.HasField("min_score") else None,
            max_distance=request.max_distance if request.HasField("max_distance") else None,
        )
        resp = shard_pb2.ShardSearchResponse(k=int(result.ids.shape[1]))
        resp.ids.extend(result.ids.ravel().tolist())
        resp.scores = np.ascontiguousarray(result.scores, dtype="<f4").tobytes()
        return resp

    def Info(self, request: Any, context: grpc.ServicerContext) -> Any:
        info = self.engine.info()
        return shard_pb2.ShardInfoResponse(
            count=int(info["count"]),
            applied_seq=int(info["applied_seq"]),
            checkpoint_seq=int(info.get("checkpoint_seq", 0)),
            pid=os.getpid(),
            node_id=self.node_id,
            info_json=dumps_json(info),
        )

    def Changes(self, request: Any, context: grpc.ServicerContext) -> Any:
        changes, applied_seq = self.engine.changes_since(
            int(request.after_seq), int(request.limit) or 10_000
        )
        resp = shard_pb2.ShardChangesResponse(applied_seq=applied_seq)
        live = []
        for c in changes:
            resp.changes.add(
                id=c.id,
                seq=c.seq,
                deleted=c.deleted,
                metadata_json=dumps_json(c.metadata) if c.metadata else "",
            )
            if not c.deleted and c.vector is not None:
                live.append(c.vector)
        if live:
            resp.vectors.dim = self.dim
            resp.vectors.packed = encode_packed(np.stack(live))
        return resp


class ShardServer:
    """A running gRPC server for one engine, bound to `host` on a free port."""

    def __init__(
        self,
        engine: ShardEngine,
        *,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        workers: int = 8,
        node_id: str = "",
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shard-rpc"),
            interceptors=[_Guard(token)],
            options=options,
        )
        shard_pb2_grpc.add_ShardServicer_to_server(ShardService(engine, node_id), self._server)
        bound = self._server.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise OSError(f"shard server could not bind {host}:{port}")
        self.address = f"{host}:{bound}"
        self._server.start()
        log.info("shard server listening on %s", self.address)

    def stop(self, grace: float = 1.0) -> None:
        self._server.stop(grace).wait()
