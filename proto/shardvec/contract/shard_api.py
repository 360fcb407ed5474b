"""One shard interface for the coordinator, in domain types (after Qdrant's shard_trait.rs).

`ShardLike` is what the coordinator needs from one replica of one shard. The remote handle
(coordinator.shard_client.RemoteShard, over the internal gRPC service) and the in-process
adapter (shard.local.LocalShard, over a ShardEngine) both implement it, so the replica rules,
the group commit and the fan-out run, and are tested, the same over either.

Every call takes a timeout in seconds. Errors are shardvec errors: `ReplicaDown` when the
replica did not answer, `DeadlineExceeded` when the timeout ran out, and otherwise the error
the request itself caused (`is_bad_request`: every replica would say the same).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import numpy as np

from shardvec.contract.facets import FacetCounts
from shardvec.contract.filters import DocFilter, Filter
from shardvec.contract.groups import GroupResult, ShardGroupSearch
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


class ShardLike(Protocol):
    """One replica of one shard; every call takes a timeout (seconds). Writes are atomic
    batches: `stage`, then `resolve`."""

    name: str  # for messages and logs: collection/shard-s/replica-r
    address: str  # where it serves; a peer's address is what a remote replica catches up from

    async def stage(self, seq: int, write: ShardWrite, timeout: float) -> int:
        """Phase one of an atomic write: keep `write` durably as batch `seq`, invisible to
        reads, until `resolve`; returns the bytes staged. A full disk is ResourceExhausted."""
        ...

    async def resolve(
        self, seq: int, commit: bool, timeout: float, owned: np.ndarray | None = None
    ) -> WriteAck:
        """Phase two: apply staged batch `seq` (`commit`) or drop it. Committing a seq already
        applied is acknowledged with applied=False; one neither staged nor applied is
        FailedPrecondition. The ack of a batch with an update lists the ids not held in
        missing_ids and the rows inserted (upsert_missing) in inserted; affected counts
        every row changed, inserted ones included; with `owned` (a bool mask over the routing
        buckets) every count counts only the rows of those buckets."""
        ...

    async def get(
        self,
        ids: Sequence[str],
        include_metadata: bool,
        include_vectors: bool,
        timeout: float,
        include_documents: bool = False,
    ) -> GetResult:
        """The rows of `ids` this shard holds, in request order."""
        ...

    async def count(
        self,
        where: Filter | None,
        timeout: float,
        where_document: DocFilter | None = None,
        buckets: np.ndarray | None = None,
    ) -> int:
        """Live rows, or live rows passing `where` and `where_document`; `buckets` (a bool
        mask over the routing buckets): only the rows of those buckets."""
        ...

    async def search(self, request: ShardSearch, timeout: float) -> SearchResult:
        """Per query the best `request.k` rows: ids ((nq, k) object, "" padding), scores
        ((nq, k) float32, NaN padding) and counts; with `include_metadata` /
        `include_vectors`, each hit's stored metadata text and vector beside it."""
        ...

    async def facet(
        self,
        field: str,
        where: Filter | None,
        timeout: float,
        where_document: DocFilter | None = None,
        buckets: np.ndarray | None = None,
    ) -> FacetCounts:
        """Every value of metadata `field` with the count of live rows passing the filters
        (of `buckets` only, when given) that hold it."""
        ...

    async def group_search(self, request: ShardGroupSearch, timeout: float) -> GroupResult:
        """Per query the best `groups` groups by the request's field, each with its best
        `group_size` hits here, and each hit's group key."""
        ...

    async def keyword_stats(
        self, texts: Sequence[str], timeout: float, buckets: np.ndarray | None = None
    ) -> KeywordStats:
        """Keyword search, phase one: each text's terms (the collection's tokenizer) and their
        document frequencies here, with this replica's document count and token total (of
        the rows of `buckets` only, when given)."""
        ...

    async def keyword_search(self, request: KeywordSearch, timeout: float) -> SearchResult:
        """Phase two: per query the best `request.k` rows by BM25 under the request's global
        statistics (SearchResult as `search` gives it)."""
        ...

    async def scroll(self, request: ShardScroll, timeout: float) -> ScrollPage:
        """The next page of live rows in (bucket, id) order after request's position."""
        ...

    async def info(self, timeout: float) -> ShardInfo:
        ...

    async def changes(
        self, after_seq: int, limit: int, timeout: float
    ) -> tuple[list[Change], int]:
        """Rows and tombstones with seq > after_seq (whole seqs, at most about `limit`), and the
        replica's applied_seq: what a replica that missed writes copies to catch up."""
        ...

    def snapshot(self, timeout: float) -> AsyncIterator[SnapshotChunk]:
        """A point-in-time copy: a chunk with the manifest JSON, then the files' bytes."""
        ...

    async def close(self) -> None:
        ...
