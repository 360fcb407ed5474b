"""A collection's reads: Get, Count and search fanned out over one read view and merged.

`CollectionReads` is everything a read needs of a collection, and all a query front holds of
one (coordinator/fronts/): the spec, the shards' replica sets and the read views
(coordinator/queries/read_view.py). The coordinator's `CollectionRuntime`
(coordinator/collection.py) adds the write path on top.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from shardvec.contract.errors import Unavailable
from shardvec.contract.filters import DocFilter, Filter
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.shard_api import ShardLike
from shardvec.contract.types import GetResult, Hits, SearchResult, ShardSearch, TunedBreadth
from shardvec.coordinator.layout import ChangeProgress, Layout
from shardvec.coordinator.queries.merge import merge_with_payloads
from shardvec.coordinator.queries.read_view import ReadView, ReadViews
from shardvec.coordinator.queries.recent import RecentQueries
from shardvec.coordinator.replicas.replica_set import ReplicaSet

ShardTimer = Callable[[str, int, float], None]


@dataclass(frozen=True)
class SearchParams:
    """Everything about a search except the query vectors; equal params can share a batch."""

    k: int
    where: Filter | None = None
    ef: int | None = None
    exact: bool = False
    min_score: float | None = None
    max_distance: float | None = None
    include_metadata: bool = False
    include_vectors: bool = False
    include_documents: bool = False
    where_document: DocFilter | None = None


def per_shard_k(k: int, shards: int, exact: bool, filtered: bool = False) -> int:
    """Candidates to ask of each shard so the merged top-k is complete with high probability.

    With ids hashed uniformly, the number of a query's global top-k that land on one shard is
    Binomial(k, 1/S). Asking each shard for its mean plus 3.5 standard deviations misses a
    true top-k hit with probability < 1e-3 per query (Vespa: dispatch/top-k-probability);
    k=10 over 4 shards asks each for 9. Exact and filtered searches ask for k, so they return
    exactly what one index over all the data would (a filter may leave few rows in a shard).
    """
    if exact or filtered or shards == 1:
        return k
    p = 1.0 / shards
    estimate = k * p + 3.5 * math.sqrt(k * p * (1 - p)) + 1
    return max(1, min(k, math.ceil(estimate)))


def per_shard_ef(
    ef: int | None,
    default_ef: int,
    k_shard: int,
    shards: int,
    exact: bool,
    filtered: bool,
    tuned: TunedBreadth | None = None,
) -> int:
    """The HNSW breadth each shard searches with (0: the shard's own default).

    A request's explicit `ef` passes through unchanged as every shard's ef. Filtered and exact
    searches keep the collection's ef (the filter plan's recall depends on the mask). Any
    other search uses the breadth the recall tuner measured to hold the collection's target
    recall (coordinator/queries/recall_tuner.py), at least k_shard, when it was tuned for
    this shard count. Before the first tune, or after a reshard until the next, a search over
    S > 1 shards uses the static rule ceil(default_ef / sqrt(S)), at least k_shard: each shard
    holds 1/S of the rows and owns about k/S of a query's top k. That rule was fitted once on
    the shared 100k x 384 set (M=16, ef_construction=200, k=10; 4 shards at ef 32: recall@10
    0.957) and does not follow a shard's size: at 1M rows over 4 shards it gives 0.9145,
    which is why the tuner measures instead.
    """
    if ef is not None:
        return ef
    if exact or filtered:
        return 0
    if tuned is not None and tuned.shards == shards:
        return max(k_shard, tuned.ef)
    if shards == 1:
        return 0
    return max(k_shard, math.ceil(default_ef / math.sqrt(shards)))


class CollectionReads:
    """One collection's shards and read views, and the reads over them."""

    def __init__(
        self,
        spec: CollectionSpec,
        shard_sets: list[ReplicaSet],
        on_shard_search: ShardTimer | None = None,
        layout: Layout | None = None,
    ) -> None:
        self.spec = spec
        self.shard_sets = shard_sets
        # Every read goes through a view (coordinator/queries/read_view.py): the layout (which
        # shard owns each routing bucket, coordinator/layout.py; every route reads it
        # too), its shards, and those that may hold rows they do not own (shard_sets may also
        # hold the new shards a growth is filling, which no view reads).
        layout = layout or Layout.initial(len(shard_sets))
        self.views = ReadViews(ReadView(layout, tuple(shard_sets[: layout.shards])))
        self.higher_is_better = spec.index.metric != "euclidean"
        self.on_shard_search = on_shard_search  # (collection, shard, seconds) per shard search
        # A layout or replica change's progress, as Describe shows it (coordinator/changes/).
        self.change: ChangeProgress | None = None
        # The breadth searches without an `ef` use, set by the recall tuner (None: the static
        # rule, see per_shard_ef), and recent such queries, which it samples.
        self.tuned: TunedBreadth | None = None
        self.recent = RecentQueries()

    @property
    def dim(self) -> int:
        return self.spec.index.dim

    @property
    def layout(self) -> Layout:
        """The current view's layout (writes are routed by it too)."""
        return self.views.current.layout

    @property
    def foreign(self) -> frozenset[int]:
        """Shards of the current view that may hold rows they do not own."""
        return self.views.current.foreign

    def publish_view(self, layout: Layout | None = None, foreign: frozenset[int] = frozenset()
                     ) -> ReadView:  # fmt: skip
        """Make `layout` (None: the current one) and `foreign` the view reads take from now."""
        layout = layout or self.layout
        view = ReadView(layout, tuple(self.shard_sets[: layout.shards]), frozenset(foreign))
        self.views.publish(view)
        return view

    async def get(
        self, ids: Sequence[str], include_metadata: bool, include_vectors: bool, deadline: float
    ) -> tuple[list[str], list[str], np.ndarray]:
        """Found ids in request order, their metadata JSON and vectors."""
        found, metas, vectors, _, _ = await self.get_documents(
            ids, include_metadata, include_vectors, deadline, False
        )
        return found, metas, vectors

    async def get_documents(
        self,
        ids: Sequence[str],
        include_metadata: bool,
        include_vectors: bool,
        deadline: float,
        include_documents: bool,
    ) -> tuple[list[str], list[str], np.ndarray, list[str], list[float]]:
        """Found ids in request order, their metadata JSON, vectors, documents and absolute
        expiries (one per found id, 0.0: never; empty when none of them expires)."""
        id_list = list(ids)

        async def one(shard: int, rows: np.ndarray) -> GetResult:
            shard_ids = [id_list[i] for i in rows.tolist()]

            async def call(shard_: ShardLike, timeout: float) -> GetResult:
                return await shard_.get(
                    shard_ids, include_metadata, include_vectors, timeout, include_documents
                )

            return await view.sets[shard].read(call, deadline)

        async with self.views.read() as view:  # each id read from its owner alone
            results = await asyncio.gather(*(one(s, rows) for s, rows in view.owner_parts(id_list)))
        found_meta: dict[str, str] = {}
        found_vec: dict[str, np.ndarray] = {}
        found_doc: dict[str, str] = {}
        found_exp: dict[str, float] = {}
        found: set[str] = set()
        for res in results:
            vecs = res.vectors if include_vectors else None
            for j, id_ in enumerate(res.ids):
                found.add(id_)
                if include_metadata:
                    found_meta[id_] = res.metadata_json[j]
                if vecs is not None:
                    found_vec[id_] = vecs[j]
                if include_documents and res.documents:
                    found_doc[id_] = res.documents[j]
                if res.expires_at:
                    found_exp[id_] = res.expires_at[j]
        order = [i for i in id_list if i in found]
        metas = [found_meta.get(i, "") for i in order] if include_metadata else []
        vectors = (
            np.stack([found_vec[i] for i in order]).astype(np.float32)
            if include_vectors and order
            else np.empty((0, self.dim), dtype=np.float32)
        )
        docs = [found_doc.get(i, "") for i in order] if include_documents else []
        expires = [found_exp.get(i, 0.0) for i in order] if found_exp else []
        return order, metas, vectors, docs, expires

    async def count(
        self, where: Filter | None, deadline: float, where_document: DocFilter | None = None
    ) -> int:
        async def call(shard_: ShardLike, timeout: float, buckets: np.ndarray | None) -> int:
            return await shard_.count(where, timeout, where_document, buckets)

        async with self.views.read() as view:
            return sum(await view.fan_out(call, deadline))

    async def search(
        self,
        queries: np.ndarray,
        params: SearchParams,
        deadline: float,
        packed: bytes | None = None,
    ) -> Hits:
        """Search every shard in parallel with one RPC each and merge. Each shard returns its
        candidates' stored metadata and vectors when they are asked for, so the merged hits
        carry theirs without a second fan-out. `packed`: the queries' bytes as received,
        forwarded unchanged."""
        async with self.views.read() as view:
            return await self.search_in(view, queries, params, deadline, packed)

    async def search_in(
        self,
        view: ReadView,
        queries: np.ndarray,
        params: SearchParams,
        deadline: float,
        packed: bytes | None = None,
    ) -> Hits:
        """`search` under a view the caller holds (a hybrid search's two legs share one)."""
        shards = view.shards
        filtered = params.where is not None or params.where_document is not None
        k_shard = per_shard_k(params.k, shards, params.exact, filtered)
        ef = per_shard_ef(
            params.ef, self.spec.index.ef, k_shard, shards, params.exact, filtered, self.tuned
        )
        if params.ef is None and not params.exact and not filtered:
            self.recent.record(queries)
        # One request object for every shard: a remote shard serializes it once for all.
        request = ShardSearch(
            queries=queries,
            k=k_shard,
            exact=params.exact,
            ef=ef or None,
            where=params.where,
            min_score=params.min_score,
            max_distance=params.max_distance,
            include_metadata=params.include_metadata,
            include_vectors=params.include_vectors,
            include_documents=params.include_documents,
            where_document=params.where_document,
            packed=packed,
        )

        async def call(
            shard_: ShardLike, timeout: float, buckets: np.ndarray | None
        ) -> SearchResult:
            mine = request if buckets is None else dataclasses.replace(request, buckets=buckets)
            return await shard_.search(mine, timeout)

        def timer(shard: int, seconds: float) -> None:
            if self.on_shard_search is not None:
                self.on_shard_search(self.spec.name, shard, seconds)

        parts = await view.fan_out(call, deadline, timer)
        payloads: list[list[np.ndarray]] = []
        if params.include_metadata:
            payloads.append([payload_of(p.metadata, "metadata") for p in parts])
        if params.include_vectors:
            payloads.append([payload_of(p.vectors, "vectors") for p in parts])
        if params.include_documents:
            payloads.append([payload_of(p.documents, "documents") for p in parts])
        hit_ids, hit_scores = [p.ids for p in parts], [p.scores for p in parts]
        ids, scores, counts, merged = merge_with_payloads(
            hit_ids,
            hit_scores,
            params.k,
            higher_is_better=self.higher_is_better,
            payloads=payloads,
        )
        metadata = merged.pop(0) if params.include_metadata else None
        vectors = merged.pop(0) if params.include_vectors else None
        documents = merged.pop(0) if params.include_documents else None
        return Hits(ids, scores, counts, metadata, vectors, documents)


def payload_of(value: np.ndarray | None, what: str) -> np.ndarray:
    if value is None:
        raise Unavailable(f"a shard answered a search without the {what} it was asked for")
    return value


def deadline_from(time_remaining: float | None, default: float = 30.0) -> float:
    """An absolute monotonic deadline from gRPC's time_remaining()."""
    return time.monotonic() + (time_remaining if time_remaining is not None else default)
