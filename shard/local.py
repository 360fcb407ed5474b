"""One shard replica in process: the shard interface (ShardLike) over a ShardEngine.

`LocalShard` gives the coordinator's replica rules, group commit and fan-out a replica that
needs no Ray, no process and no network, so they run and are tested in one process. It does
what the shard's gRPC service (shard/server.py) does with the engine, checking each request as
it builds it (shardvec.contract.shard_requests) where the service decodes one the coordinator
checked, and no more: engine calls run in a worker thread (hnswlib and SQLite release the
GIL), a call past its timeout raises DeadlineExceeded, and a closed LocalShard (a "killed"
replica) raises ReplicaDown, as a remote replica whose process is gone does.

`catch_up` copies what a peer (any ShardLike) applied after an engine's seq, page by page, the
in-process counterpart of ShardReplica.catch_up in shard/actor.py.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from shardvec.contract.codec import dumps_json, metadata_to_json
from shardvec.contract.errors import DeadlineExceeded, ReplicaDown, ShardvecError
from shardvec.contract.facets import FacetCounts
from shardvec.contract.filters import DocFilter, Filter
from shardvec.contract.groups import GroupResult, ShardGroupSearch
from shardvec.contract.shard_api import ShardLike
from shardvec.contract.shard_requests import (
    check_buckets,
    check_filters,
    check_get_ids,
    check_scroll,
    check_search,
    check_seq,
    row_batch,
)
from shardvec.contract.types import (
    Change,
    GetResult,
    KeywordSearch,
    KeywordStats,
    ScrollPage,
    SearchResult,
    ShardInfo,
    ShardScroll,
    ShardSearch,
    ShardWrite,
    SnapshotChunk,
    WriteAck,
)
from shardvec.shard.engine import ShardEngine
from shardvec.shard.snapshot_copy import take_snapshot
from shardvec.shard.staging import update_plan

T = TypeVar("T")


class LocalShard:
    """A ShardLike over an engine in this process; `close()` makes it answer ReplicaDown."""

    def __init__(
        self, name: str, engine: ShardEngine, address: str = "", node_id: str = "local"
    ) -> None:
        self.name = name
        self.engine = engine
        self.address = address or f"local:{engine.directory}"
        self.node_id = node_id
        self.closed = False

    async def _run(self, timeout: float, fn: Callable[[], T]) -> T:
        if self.closed:
            raise ReplicaDown(f"{self.name} ({self.address}) is down: closed")
        if timeout <= 0:
            raise DeadlineExceeded(f"deadline exceeded before calling {self.name}")
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), timeout)
        except TimeoutError:
            raise DeadlineExceeded(f"{self.name} ({self.address}) timed out") from None
        except ShardvecError as exc:
            if self.closed:  # the engine went away under the call: not the request's fault
                raise ReplicaDown(f"{self.name} ({self.address}) is down: {exc}") from None
            raise

    async def stage(self, seq: int, write: ShardWrite, timeout: float) -> int:
        def work() -> int:
            # an update was checked by the coordinator (coordinator/api/update_checks.py)
            if write.update is not None:
                return self.engine.stage(check_seq(seq), update_plan(write.update))
            settings = self.engine.settings
            # size limits are the edge's (it may raise them): checked, not size-limited, here
            rows = row_batch(
                write,
                settings.dim,
                settings.metric,
                max_metadata_bytes=1 << 62,
                max_document_bytes=1 << 62,
            )
            return self.engine.stage(check_seq(seq), rows)

        return await self._run(timeout, work)

    async def resolve(
        self, seq: int, commit: bool, timeout: float, owned: np.ndarray | None = None
    ) -> WriteAck:
        return await self._run(timeout, lambda: self.engine.resolve(seq, commit, owned))

    async def get(
        self,
        ids: Sequence[str],
        include_metadata: bool,
        include_vectors: bool,
        timeout: float,
        include_documents: bool = False,
    ) -> GetResult:
        def work() -> GetResult:
            found = self.engine.get(
                check_get_ids(list(ids)),
                include_vectors=include_vectors,
                include_metadata=include_metadata,
                include_documents=include_documents,
            )
            records = [r for r in found if r is not None]
            metas = metadata_to_json([r.metadata for r in records]) if include_metadata else []
            vectors = None
            if include_vectors and records:
                vectors = np.stack([r.vector for r in records if r.vector is not None])
            docs = [r.document or "" for r in records] if include_documents else []
            expires = [r.expires_at for r in records] if any(r.expires_at for r in records) else []
            return GetResult([r.id for r in records], metas, vectors, docs, expires)

        return await self._run(timeout, work)

    async def count(
        self,
        where: Filter | None,
        timeout: float,
        where_document: DocFilter | None = None,
        buckets: np.ndarray | None = None,
    ) -> int:
        def work() -> int:
            check_filters(where, where_document)
            return self.engine.count(where, where_document, check_buckets(buckets))

        return await self._run(timeout, work)

    async def search(self, req: ShardSearch, timeout: float) -> SearchResult:
        def work() -> SearchResult:
            settings = self.engine.settings
            request = check_search(req, settings.dim, settings.metric)
            return self.engine.search(
                request.queries,
                request.k,
                where=request.where,
                ef=request.ef,
                exact=request.exact,
                min_score=request.min_score,
                max_distance=request.max_distance,
                include_metadata=request.include_metadata,
                include_vectors=request.include_vectors,
                include_documents=request.include_documents,
                where_document=request.where_document,
                buckets=request.buckets,
            )

        return await self._run(timeout, work)

    async def facet(
        self,
        field: str,
        where: Filter | None,
        timeout: float,
        where_document: DocFilter | None = None,
        buckets: np.ndarray | None = None,
    ) -> FacetCounts:
        def work() -> FacetCounts:
            check_filters(where, where_document)
            return self.engine.facet(field, where, where_document, check_buckets(buckets))

        return await self._run(timeout, work)

    async def group_search(self, request: ShardGroupSearch, timeout: float) -> GroupResult:
        def work() -> GroupResult:
            settings = self.engine.settings
            search = check_search(request.search, settings.dim, settings.metric)
            checked = ShardGroupSearch(search, request.group, request.values)
            return self.engine.group_search(checked)

        return await self._run(timeout, work)

    async def keyword_stats(
        self, texts: Sequence[str], timeout: float, buckets: np.ndarray | None = None
    ) -> KeywordStats:
        return await self._run(timeout, lambda: self.engine.keyword_stats(list(texts), buckets))

    async def keyword_search(self, request: KeywordSearch, timeout: float) -> SearchResult:
        return await self._run(timeout, lambda: self.engine.keyword_search(request))

    async def scroll(self, request: ShardScroll, timeout: float) -> ScrollPage:
        return await self._run(timeout, lambda: self.engine.scroll(check_scroll(request)))

    async def info(self, timeout: float) -> ShardInfo:
        def work() -> ShardInfo:
            info = self.engine.info()
            return ShardInfo(
                count=int(info["count"]),
                applied_seq=int(info["applied_seq"]),
                checkpoint_seq=int(info.get("checkpoint_seq", 0)),
                pid=os.getpid(),
                node_id=self.node_id,
                figures=info,
                staged=tuple(self.engine.staged_seqs()),
            )

        return await self._run(timeout, work)

    async def changes(
        self, after_seq: int, limit: int, timeout: float
    ) -> tuple[list[Change], int]:
        return await self._run(timeout, lambda: self.engine.changes_since(after_seq, limit))

    async def snapshot(self, timeout: float) -> AsyncIterator[SnapshotChunk]:
        """A point-in-time copy of the engine's directory: the manifest, then the bytes."""
        with tempfile.TemporaryDirectory(prefix="shardvec-snapshot-") as tmp:
            snap = await self._run(timeout, lambda: take_snapshot(self.engine.directory, Path(tmp)))
            yield SnapshotChunk(manifest_json=dumps_json(snap.manifest()))
            chunks = snap.chunks()
            while (data := await asyncio.to_thread(next, chunks, None)) is not None:
                if self.closed:
                    raise ReplicaDown(f"{self.name} ({self.address}) is down: closed")
                yield SnapshotChunk(data=data)

    async def close(self) -> None:
        """Stop answering (the engine stays open: its owner closes it)."""
        self.closed = True


async def catch_up(
    engine: ShardEngine, peer: ShardLike, page: int = 5000, timeout: float = 60.0
) -> int:
    """Copy every row and tombstone `peer` applied after the engine's seq; returns its new seq.

    The peer's pages end on whole sequence numbers (ShardStore.changes_since), so a batch is
    never half-applied; a page holding every seq up to the peer's applied_seq is the last.
    (A page may hold fewer than `page` rows and not be the last: the peer cuts it at a seq.)
    """
    while True:
        after = engine.applied_seq
        changes, applied_seq = await peer.changes(after, page, timeout)
        upto = catch_up_step(changes, applied_seq)
        if upto > after or changes:
            await asyncio.to_thread(engine.apply_changes, changes, upto)
        if upto >= applied_seq:
            return engine.applied_seq


def catch_up_step(changes: Sequence[Any], applied_seq: int) -> int:
    """The seq a replica holds after applying one page of a peer's changes: the peer's
    applied_seq with the last page (or none), else the page's last, whole, seq."""
    if not changes or changes[-1].seq >= applied_seq:
        return applied_seq
    return int(changes[-1].seq)
