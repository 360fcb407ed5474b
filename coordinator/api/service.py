"""The public `shardvec.v1.VectorSearch` service: validation at the edge, then the runtime.

A request is checked whole before any shard sees it, so a bad row rejects the batch and
changes nothing. A write that has started fanning out to the shards is finished even when
its caller's deadline runs out (the caller then sees DEADLINE_EXCEEDED), so a short client
deadline never leaves a batch applied on some shards and not on others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from shardvec.contract.convert import filter_from_proto, vectors_from_proto
from shardvec.contract.convert_public import collection_info, spec_from_request
from shardvec.contract.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
)
from shardvec.contract.settings import check_target_recall
from shardvec.contract.texts import (
    require_embedding,
    validate_documents_to_embed,
)
from shardvec.contract.validation import (
    check_ttl,
    parse_metadata_json,
    row_expiries,
    validate_documents,
    validate_ids,
    validate_vectors,
)
from shardvec.coordinator.api.read_service import ReadService, info_of
from shardvec.coordinator.api.update_checks import check_update
from shardvec.coordinator.collection import CollectionRuntime, UpdateOutcome
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.embedding.pool import EmbedderPool
from shardvec.coordinator.paths import cursor_secret_path
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.queries.cursor import load_or_create_secret
from shardvec.coordinator.queries.reads import deadline_from
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.coordinator.snapshots import (
    RESTORE_BATCH_ROWS,
    SNAPSHOT_DEADLINE_S,
    create_archive,
    restore_archive,
)
from shardvec.v1 import vector_search_pb2 as pb

log = logging.getLogger(__name__)


WRITE_METHODS = frozenset(
    {
        "CreateCollection",
        "DropCollection",
        "Upsert",
        "Update",
        "Delete",
        "CreateSnapshot",
        "RestoreSnapshot",
        "ScaleCollection",
        "Rebalance",
        "SetCollectionOptions",
        "CreateAlias",
        "SwitchAlias",
        "DeleteAlias",
    }
)  # CreateSnapshot too: it copies every row out, and holds disk and a stream slot
WRITE_GRACE_S = 10.0  # the least time shards get to finish a write that has started
T = TypeVar("T")


class VectorSearchService(ReadService):
    """The whole public API on the coordinator: the reads, and the writes and collection
    changes, which only the coordinator runs (a front forwards them here)."""

    def __init__(
        self,
        runtime: CoordinatorRuntime,
        settings: CoordinatorSettings,
        batcher: MicroBatcher,
        *,
        embedders: EmbedderPool | None = None,
        cluster_info: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        super().__init__(
            runtime,
            settings,
            batcher,
            embedders=embedders,
            cursor_secret=lambda: load_or_create_secret(cursor_secret_path(runtime.data_dir)),
            cluster_info=cluster_info or _no_fronts,
        )
        self.runtime: CoordinatorRuntime = runtime
        self._writes: set[asyncio.Future[Any]] = set()
        self._snapshot_streams = 0

    @contextlib.contextmanager
    def _snapshot_stream(self, what: str) -> Iterator[None]:
        """Hold one of max_snapshot_streams slots; none free is RESOURCE_EXHAUSTED."""
        limit = self.settings.max_snapshot_streams
        if self._snapshot_streams >= limit:
            raise ResourceExhausted(
                f"{what}: {self._snapshot_streams} snapshot streams are running, the limit is "
                f"{limit} (max_snapshot_streams); retry when one has finished"
            )
        self._snapshot_streams += 1
        try:
            yield
        finally:
            self._snapshot_streams -= 1

    async def _write(self, context: Any, what: str, start: Any) -> T:
        """Run the write `start(deadline, decide_by)` to the end, shielded from the caller
        going away.

        Nothing is sent when the caller's deadline has already passed; once sent, every shard
        gets at least WRITE_GRACE_S, so the batch lands whole or fails whole. `decide_by` is
        the caller's own deadline: a batch not decided by then is aborted
        (coordinator/writes/atomic.py),
        so a DEADLINE_EXCEEDED the caller sees before the decision means the batch is absent.
        """
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded(f"{what}: the deadline passed before any shard was written")
        decide_by = self._deadline(context)
        deadline = max(decide_by, time.monotonic() + WRITE_GRACE_S)
        task: asyncio.Future[T] = asyncio.ensure_future(start(deadline, decide_by))
        self._writes.add(task)
        task.add_done_callback(_finished_write)
        task.add_done_callback(self._writes.discard)
        result = await asyncio.shield(task)
        # A replica this write left behind (marked DEAD) is fenced off the query fronts
        # before the write is acknowledged, so no front can read the row's absence there.
        await self.runtime.layouts_settled()
        return result

    async def CreateCollection(self, request: Any, context: Any) -> Any:
        spec = spec_from_request(request)
        await self.runtime.create(spec)
        return collection_info(spec, count=0)  # new: no rows yet

    async def SetCollectionOptions(self, request: Any, context: Any) -> Any:
        target = request.target_recall if request.HasField("target_recall") else None
        if target is not None:
            check_target_recall(target)
        ttl = check_ttl(request.ttl_seconds) if request.HasField("ttl_seconds") else None
        col = await self.runtime.set_options(request.name, target, ttl)
        return info_of(col, None)

    async def ScaleCollection(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.name)
        if request.abort:
            if request.shards or request.replicas:
                raise InvalidArgument("abort: give no shards or replicas with it")
            await self.runtime.abort_change(col.spec.name)
        else:
            if not request.shards and not request.replicas:
                raise InvalidArgument("ScaleCollection: give shards, replicas or abort")
            await self.runtime.scale(
                col.spec.name, int(request.shards) or None, int(request.replicas) or None
            )
        return info_of(col, None)

    async def Rebalance(self, request: Any, context: Any) -> Any:
        name = self.runtime.get(request.name).spec.name if request.name else None
        moves = await self.runtime.rebalance(name)
        resp = pb.RebalanceResponse()
        for m in moves:
            resp.moves.add(
                collection=str(m["collection"]), shard=int(str(m["shard"])),
                replica=int(str(m["replica"])), source=str(m["source"]),
                target=str(m["target"]), rows=int(str(m["rows"])),
            )
        return resp

    async def DropCollection(self, request: Any, context: Any) -> Any:
        await self.runtime.drop(request.name)
        return pb.DropCollectionResponse(dropped=True)

    async def CreateAlias(self, request: Any, context: Any) -> Any:
        await self.runtime.create_alias(request.alias, request.collection)
        return pb.AliasResponse(alias=pb.Alias(name=request.alias, collection=request.collection))

    async def SwitchAlias(self, request: Any, context: Any) -> Any:
        previous = await self.runtime.switch_alias(
            request.alias, request.collection, request.embedding_changed
        )
        return pb.AliasResponse(
            alias=pb.Alias(name=request.alias, collection=request.collection), previous=previous
        )

    async def DeleteAlias(self, request: Any, context: Any) -> Any:
        was = await self.runtime.delete_alias(request.alias)
        return pb.AliasResponse(alias=pb.Alias(name=request.alias, collection=was))

    async def Upsert(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.collection)
        n = len(request.ids)
        self._rows_limit(n, self.settings.max_upsert_rows, "upsert")
        ids = validate_ids(list(request.ids))
        metas = list(request.metadata_json)
        if metas:  # reject the whole batch before any shard sees it
            parse_metadata_json(metas, n, max_bytes=self.settings.max_metadata_bytes)
        if request.documents and not (request.vectors.packed or len(request.vectors.values)):
            # Documents that stand in for the vectors: counted and sized before any embedding.
            validate_documents_to_embed(
                list(request.documents), n, self.settings.max_document_bytes
            )
        docs = self._documents(request.documents, n)  # sizes checked before any embedding
        # Absolute expiries, computed once now: every replica and copy keeps the same times.
        expires = row_expiries(
            list(request.ttl_seconds), list(request.expires_at), n, time.time(),
            col.spec.ttl_seconds,
        )  # fmt: skip
        vectors = await self._upsert_vectors(col, request, context)
        if vectors.shape[0] != n:
            raise InvalidArgument(f"vectors: {vectors.shape[0]} rows for {n} ids")
        await self._write(
            context,
            "upsert",
            lambda deadline, decide_by: col.upsert(
                ids, vectors, metas, deadline, docs, decide_by, expires or ()
            ),
        )
        return pb.UpsertResponse(upserted=n)

    def _documents(self, documents: Any, n: int) -> list[str]:
        """The request's documents checked against max_document_bytes ([] when none)."""
        docs = list(documents)
        if docs:
            validate_documents(docs, n, max_bytes=self.settings.max_document_bytes)
            if not any(docs):
                docs = []
        return docs

    async def Update(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.collection)
        self._rows_limit(len(request.ids), self.settings.max_upsert_rows, "update")
        embed = None
        if col.spec.embedding and any(request.documents):

            async def embed(texts: list[str]) -> np.ndarray:
                validate_documents_to_embed(texts, len(texts), self.settings.max_message_bytes)
                return await self._embed(col, texts, context)

        plan = await check_update(request, col, self.settings, self._deadline(context), embed)
        got: UpdateOutcome = await self._write(
            context,
            "update",
            lambda deadline, decide_by: col.update(plan, deadline, decide_by),
        )
        return pb.UpdateResponse(
            updated=got.updated, missing_ids=got.missing_ids, inserted=got.inserted
        )

    async def Delete(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.collection)
        has_filter = request.HasField("filter")
        if has_filter == bool(request.ids):
            raise InvalidArgument("delete: give exactly one of ids and filter")
        where = filter_from_proto(request.filter) if has_filter else None
        if where is None and has_filter:
            raise InvalidArgument("filter: empty filter")
        ids = None if has_filter else validate_ids(list(request.ids))
        if ids is not None:
            self._rows_limit(len(ids), self.settings.max_upsert_rows, "delete")
        deleted: int = await self._write(
            context,
            "delete",
            lambda deadline, decide_by: col.delete(ids, where, deadline, decide_by),
        )
        return pb.DeleteResponse(deleted=deleted)

    async def _upsert_vectors(
        self, col: CollectionRuntime, request: Any, context: Any
    ) -> np.ndarray:
        """The rows' vectors: as sent, or, when none are sent, the embeddings of the
        documents (the collection needs an embedding function)."""
        has_vectors = bool(request.vectors.packed or len(request.vectors.values))
        documents = list(request.documents)
        if has_vectors or not documents:
            return validate_vectors(
                vectors_from_proto(request.vectors, col.dim), col.dim, col.spec.index.metric
            )
        require_embedding(col.spec.embedding, col.spec.name, "upsert without vectors")
        # The documents' own size limit is checked with the documents; this bounds only
        # what the tokenizer is asked to read (the model uses the first 256 word pieces).
        validate_documents_to_embed(documents, len(request.ids), self.settings.max_message_bytes)
        return await self._embed(col, documents, context)

    async def CreateSnapshot(self, request: Any, context: Any) -> AsyncIterator[Any]:
        deadline = deadline_from(context.time_remaining(), SNAPSHOT_DEADLINE_S)
        with self._snapshot_stream("create snapshot"):
            async for data in create_archive(self.runtime, request.collection, deadline):
                yield pb.SnapshotChunk(data=data)

    async def RestoreSnapshot(self, request_iterator: Any, context: Any) -> Any:
        deadline = deadline_from(context.time_remaining(), SNAPSHOT_DEADLINE_S)
        batch = min(self.settings.max_upsert_rows, RESTORE_BATCH_ROWS)
        with self._snapshot_stream("restore snapshot"):
            col = await restore_archive(self.runtime, request_iterator, deadline, batch)
        return info_of(col, await col.count(None, deadline))


async def _no_fronts() -> Any:
    return pb.ClusterInfoResponse()


def _finished_write(task: asyncio.Future[Any]) -> None:
    """Retrieve a shielded write's outcome, so a write its caller left is still logged."""
    if not task.cancelled() and task.exception() is not None:
        log.info("write finished with an error: %s", task.exception())
