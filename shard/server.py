"""The internal gRPC service of one shard replica (`shardvec.v1.Shard`) around a ShardEngine.

A threaded (sync) gRPC server: hnswlib releases the GIL while it searches, so concurrent
batches from the coordinator use the replica's cores. Every call must carry the cluster's
internal token; errors leave as precise status codes through one interceptor. Work whose
caller has gone (its deadline passed, or it cancelled) is not started, and a large search
stops between chunks of queries once its caller is gone.

Requests are decoded, not validated again: only the coordinator holds the token, and it
validated them at its edge, so filters decode with `trusted=True` and the engine (which checks
nothing) serves them. Writes come only as Stage then Resolve: an atomic batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from shardvec.contract.buckets import decode_buckets
from shardvec.contract.codec import dumps_json, encode_packed, metadata_to_json
from shardvec.contract.convert import filter_from_proto, vectors_from_proto
from shardvec.contract.convert_shard import (
    scroll_page_to_proto,
    search_result_to_proto,
    shard_scroll_from_proto,
    shard_update_from_proto,
)
from shardvec.contract.errors import (
    STALE_LAYOUT,
    DeadlineExceeded,
    ShardvecError,
    StaleLayout,
)
from shardvec.contract.facets import facet_counts_to_proto, facet_request_from_proto
from shardvec.contract.groups import group_result_to_proto, group_search_from_proto
from shardvec.contract.keyword import keyword_search_from_proto, keyword_stats_to_proto
from shardvec.contract.limits import EPOCH_HEADER, INTERNAL_MAX_REQUEST_BYTES
from shardvec.contract.limits import INTERNAL_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from shardvec.contract.shard_requests import RowBatch
from shardvec.contract.types import SearchResult
from shardvec.shard.engine import ShardEngine
from shardvec.shard.node_lock import NodeSearchLock
from shardvec.shard.server_guard import TokenGuard
from shardvec.shard.service_messages import (
    check_response_size,
    concat_results,
    metadata_from_json,
    request_filter,
    request_where_document,
    text_chars,
)
from shardvec.shard.snapshot_copy import take_snapshot
from shardvec.shard.staging import update_plan
from shardvec.v1 import shard_pb2, shard_pb2_grpc

log = logging.getLogger(__name__)

SEARCH_CHUNK_ROWS = 512  # queries searched between checks that the caller still waits


class ShardService(shard_pb2_grpc.ShardServicer):
    """Translates wire messages to engine calls; keeps no rows, only a count of abandoned calls."""

    def __init__(
        self,
        engine: ShardEngine,
        node_id: str = "",
        search_lock: NodeSearchLock | None = None,
        lock_rows: int = 0,
    ) -> None:
        self.engine = engine
        self.node_id = node_id
        self.search_lock = search_lock  # held by searches of >= lock_rows queries
        self.lock_rows = lock_rows
        self.abandoned = 0  # calls stopped because their caller had gone
        self._lock = threading.Lock()
        # Query fronts' fence (SetEpoch): none (0) until the coordinator sets it at LIVE.
        # `_reading[e]`: a front's reads under epoch e in flight; SetEpoch returns once none
        # under another epoch is left, so what the coordinator does after a push (delete the
        # rows a layout change moved away) never runs under a read of the older view.
        self._epoch_changed = threading.Condition(self._lock)
        self._reading: dict[int, int] = {}
        self.epoch = 0
        self.epoch_reads = 0  # reads that carried this replica's epoch (a front's reads)
        self.stale_reads = 0  # reads refused for a stale epoch
        # searches that arrive over streams (SearchStream) run here, beside the unary calls
        self.stream_pool = futures.ThreadPoolExecutor(8, thread_name_prefix="shard-stream")

    def _caller_waits(self, context: grpc.ServicerContext | Callable[[], bool], what: str) -> None:
        """Raise DeadlineExceeded (and count it) when the caller no longer waits for `what`
        (`context`: the call's, or a predicate true while the caller waits)."""
        active = context() if callable(context) else context.is_active()
        if not active:
            with self._lock:
                self.abandoned += 1
            raise DeadlineExceeded(f"shard {what}: the caller's deadline passed or it cancelled")

    @contextlib.contextmanager
    def _fenced(self, context: grpc.ServicerContext | int, what: str) -> Iterator[None]:
        """Run a read, refusing a front's whose layout epoch is not this replica's
        (StaleLayout); a read without one (the coordinator's) is not fenced. `context`: the
        call's (epoch in its metadata), or the epoch a stream message carried."""
        if isinstance(context, int):
            given = context
        else:
            raw = dict(context.invocation_metadata() or ()).get(EPOCH_HEADER, "")
            given = int(raw) if str(raw).isdigit() else 0
        if not given:
            yield
            return
        with self._lock:
            if given != self.epoch:
                self.stale_reads += 1
                mine = self.epoch
                raise StaleLayout(
                    f"{STALE_LAYOUT}: shard {what} under layout epoch {given}, this replica "
                    f"holds {mine or 'none'}; pull the layout again"
                )
            self.epoch_reads += 1
            self._reading[given] = self._reading.get(given, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._reading[given] -= 1
                if not self._reading[given]:
                    del self._reading[given]
                self._epoch_changed.notify_all()

    def SetEpoch(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Take the new epoch (reads under another are refused from now), then wait for the
        reads admitted under another epoch to end, within the call's deadline."""
        remaining = context.time_remaining()
        limit = time.monotonic() + (remaining if remaining is not None else 5.0)
        with self._lock:
            previous, self.epoch = self.epoch, int(request.epoch)
            while any(e != self.epoch for e in self._reading):
                left = limit - time.monotonic()
                if left <= 0:
                    raise DeadlineExceeded(
                        "set epoch: reads under an older layout epoch are still running"
                    )
                self._epoch_changed.wait(left)
        return shard_pb2.EpochSetResponse(previous=previous)

    @property
    def dim(self) -> int:
        return self.engine.settings.dim

    def Stage(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._caller_waits(context, "stage")
        # an update was checked by the coordinator (coordinator/api/update_checks.py)
        if request.HasField("update"):
            plan = update_plan(shard_update_from_proto(request.update, self.dim))
            size = self.engine.stage(request.seq, plan)
            return shard_pb2.ShardStageResponse(staged_bytes=size)
        ids = list(request.ids)
        vectors = (
            vectors_from_proto(request.vectors, self.dim)
            if ids
            else np.empty((0, self.dim), dtype=np.float32)
        )
        where = (
            filter_from_proto(request.delete_filter, trusted=True)
            if request.HasField("delete_filter")
            else None
        )
        rows = RowBatch(
            ids,
            vectors,
            metadata_from_json(request.metadata_json, len(ids)),
            [d or None for d in request.documents] if request.documents else [],
            list(request.delete_ids),
            where,
            list(request.expires_at) if len(request.expires_at) == len(ids) and ids else None,
        )
        return shard_pb2.ShardStageResponse(staged_bytes=self.engine.stage(request.seq, rows))

    def Resolve(self, request: Any, context: grpc.ServicerContext) -> Any:
        # No check that the caller still waits: a decision, once sent, is carried out.
        ack = self.engine.resolve(
            int(request.seq), bool(request.commit), decode_buckets(request.owned, "owned")
        )
        return shard_pb2.ShardWriteResponse(
            applied=ack.applied,
            affected=ack.affected,
            applied_seq=ack.applied_seq,
            missing_ids=ack.missing_ids,
            inserted=ack.inserted,
        )

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._caller_waits(context, "get")
        inc_meta, inc_vec = request.include.metadata, request.include.vectors
        inc_doc = request.include.documents
        with self._fenced(context, "get"):
            got = self.engine.get(
                list(request.ids),
                include_vectors=inc_vec,
                include_metadata=inc_meta,
                include_documents=inc_doc,
            )
        records = [r for r in got if r is not None]
        resp = shard_pb2.ShardGetResponse(ids=[r.id for r in records])
        docs = [r.document or "" for r in records] if inc_doc else []
        texts = metadata_to_json([r.metadata for r in records]) if inc_meta else []
        check_response_size(
            sum(len(r.id) for r in records) + sum(map(len, docs)) + sum(map(len, texts)),
            4 * self.dim * len(records) if inc_vec else 0,
            "get",
        )
        resp.documents.extend(docs)
        resp.metadata_json.extend(texts)
        if any(r.expires_at for r in records):
            resp.expires_at.extend(r.expires_at for r in records)
        if inc_vec and records:
            resp.vectors.dim = self.dim
            vectors = [r.vector for r in records if r.vector is not None]
            resp.vectors.packed = encode_packed(np.stack(vectors))
        return resp

    def Count(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._caller_waits(context, "count")
        with self._fenced(context, "count"):
            count = self.engine.count(
                request_filter(request),
                request_where_document(request),
                decode_buckets(request.buckets),
            )
        return shard_pb2.ShardCountResponse(count=count)

    def Search(self, request: Any, context: grpc.ServicerContext | Callable[[], bool]) -> Any:
        if callable(context):  # a stream's message, fenced by its epoch field
            return self._search(request, context)
        with self._fenced(context, "search"):
            return self._search(request, context)

    def _search(self, request: Any, context: grpc.ServicerContext | Callable[[], bool]) -> Any:
        buckets = decode_buckets(request.buckets)
        queries = vectors_from_proto(request.queries, self.dim, field="queries")
        where = request_filter(request)
        where_document = request_where_document(request)
        parts: list[SearchResult] = []
        lock = self.search_lock if len(queries) >= self.lock_rows else None
        for start in range(0, len(queries), SEARCH_CHUNK_ROWS):
            with lock.hold() if lock is not None else contextlib.nullcontext():
                self._caller_waits(context, f"search (after {start} of {len(queries)} queries)")
                parts.append(
                    self.engine.search(
                        queries[start : start + SEARCH_CHUNK_ROWS],
                        int(request.k),
                        where=where,
                        ef=int(request.ef) or None,
                        exact=request.exact,
                        min_score=request.min_score if request.HasField("min_score") else None,
                        max_distance=(
                            request.max_distance if request.HasField("max_distance") else None
                        ),
                        include_metadata=request.include_metadata,
                        include_vectors=request.include_vectors,
                        include_documents=request.include_documents,
                        where_document=where_document,
                        buckets=buckets,
                    )
                )
        result = parts[0] if len(parts) == 1 else concat_results(parts)
        check_response_size(
            text_chars(result.ids) + text_chars(result.metadata) + text_chars(result.documents),
            int(result.vectors.nbytes) if result.vectors is not None else 0,
            "search",
        )
        return search_result_to_proto(
            result.ids, result.scores, result.metadata, result.vectors, result.documents
        )

    def KeywordStats(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._caller_waits(context, "keyword stats")
        with self._fenced(context, "keyword stats"):
            stats = self.engine.keyword_stats(list(request.texts), decode_buckets(request.buckets))
        return keyword_stats_to_proto(stats)

    def KeywordSearch(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._caller_waits(context, "keyword search")
        with self._fenced(context, "keyword search"):
            result = self.engine.keyword_search(keyword_search_from_proto(request))
        check_response_size(
            text_chars(result.ids) + text_chars(result.metadata) + text_chars(result.documents),
            int(result.vectors.nbytes) if result.vectors is not None else 0,
            "keyword search",
        )
        return search_result_to_proto(
            result.ids, result.scores, result.metadata, result.vectors, result.documents
        )

    def Facet(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._caller_waits(context, "facet")
        field, where, where_document, buckets = facet_request_from_proto(request)
        with self._fenced(context, "facet"):
            counts = self.engine.facet(field, where, where_document, buckets)
        check_response_size(sum(len(str(v)) + 16 for _, v in counts.counts), 0, "facet")
        return facet_counts_to_proto(counts)

    def GroupSearch(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._caller_waits(context, "group search")
        search = group_search_from_proto(request, self.dim)
        with self._fenced(context, "group search"):
            result = self.engine.group_search(search)
        hits = result.hits
        check_response_size(
            text_chars(hits.ids) + text_chars(hits.metadata) + text_chars(hits.documents)
            + text_chars(result.keys),
            int(hits.vectors.nbytes) if hits.vectors is not None else 0,
            "group search",
        )
        return group_result_to_proto(result)

    def SearchStream(
        self, requests: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[shard_pb2.ShardStreamResponse]:
        """Searches over one long-lived stream. A reader hands each request to the stream pool,
        so one stream carries concurrent searches, and each is answered when it finishes,
        with its id; a request whose caller's time ran out before it started is answered
        DEADLINE_EXCEEDED without searching. Ends when the caller stops writing and every
        answer is out."""
        answers: queue.Queue[shard_pb2.ShardStreamResponse | None] = queue.Queue()

        def one(req: Any, deadline: float) -> None:
            def waits() -> bool:
                return time.monotonic() < deadline and context.is_active()

            try:
                with self._fenced(int(req.epoch), "search"):
                    search = shard_pb2.ShardSearchRequest.FromString(req.search)
                    result = self.Search(search, waits)
                answers.put(shard_pb2.ShardStreamResponse(id=req.id, result=result))
            except ShardvecError as exc:
                answers.put(
                    shard_pb2.ShardStreamResponse(
                        id=req.id, code=exc.code.value[0], message=exc.message
                    )
                )
            except Exception as exc:  # a bug, not bad input: report it, keep serving
                log.exception("shard stream search failed")
                answers.put(
                    shard_pb2.ShardStreamResponse(
                        id=req.id,
                        code=grpc.StatusCode.INTERNAL.value[0],
                        message=f"{type(exc).__name__}: {exc}",
                    )
                )

        def read() -> None:
            running: list[futures.Future[None]] = []
            try:
                for req in requests:
                    deadline = time.monotonic() + max(0.0, req.timeout_s)
                    running = [f for f in running if not f.done()]
                    running.append(self.stream_pool.submit(one, req, deadline))
            except Exception as exc:  # the caller went away mid-stream
                log.debug("shard search stream closed: %s", exc)
            finally:
                futures.wait(running)
                answers.put(None)

        threading.Thread(target=read, name="shard-stream-reader", daemon=True).start()
        while (answer := answers.get()) is not None:
            yield answer

    def Info(self, request: Any, context: grpc.ServicerContext) -> Any:
        info = self.engine.info()
        return shard_pb2.ShardInfoResponse(
            count=int(info["count"]),
            applied_seq=int(info["applied_seq"]),
            checkpoint_seq=int(info.get("checkpoint_seq", 0)),
            pid=os.getpid(),
            node_id=self.node_id,
            info_json=dumps_json(
                {
                    **info,
                    "abandoned_calls": self.abandoned,
                    "epoch": self.epoch,
                    "epoch_reads": self.epoch_reads,
                    "stale_reads": self.stale_reads,
                }
            ),
            staged_seqs=self.engine.staged_seqs(),
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
                document=c.document or "",
                expires_at=c.expires_at,
            )
            if not c.deleted and c.vector is not None:
                live.append(c.vector)
        if live:
            resp.vectors.dim = self.dim
            resp.vectors.packed = encode_packed(np.stack(live))
        return resp

    def Scroll(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._caller_waits(context, "scroll")
        with self._fenced(context, "scroll"):
            page = self.engine.scroll(shard_scroll_from_proto(request, trusted=True))
        return scroll_page_to_proto(page, self.dim)

    def Snapshot(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """A point-in-time copy of this replica: the manifest first, then the files' bytes."""
        with tempfile.TemporaryDirectory(prefix="shardvec-snapshot-") as tmp:
            snap = take_snapshot(self.engine.directory, Path(tmp))
            log.info(
                "shard snapshot taken",
                extra={
                    "directory": str(self.engine.directory),
                    "seq": snap.store.seq,
                    "rows": snap.store.rows,
                },
            )
            yield shard_pb2.ShardSnapshotChunk(manifest_json=dumps_json(snap.manifest()))
            for data in snap.chunks():
                yield shard_pb2.ShardSnapshotChunk(data=data)


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
        node_turn_rows: int = 0,
        search_lock_path: Path | None = None,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", INTERNAL_MAX_REQUEST_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shard-rpc"),
            interceptors=[TokenGuard(token)],
            options=options,
        )
        lock = NodeSearchLock(search_lock_path) if node_turn_rows > 0 else None
        service = self._service = ShardService(engine, node_id, lock, node_turn_rows)
        shard_pb2_grpc.add_ShardServicer_to_server(service, self._server)
        bound = self._server.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise OSError(f"shard server could not bind {host}:{port}")
        self.address = f"{host}:{bound}"
        self._server.start()
        log.info("shard server listening on %s", self.address)

    def stop(self, grace: float = 1.0) -> None:
        self._server.stop(grace).wait()
        self._service.stream_pool.shutdown(wait=False, cancel_futures=True)
