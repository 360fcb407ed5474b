"""The read calls of the public `shardvec.v1.VectorSearch` service (List, Describe, Get,
Count, Search, Facet, Scroll, ClusterInfo): checked whole at the edge, then answered from a
`ReadRuntime`. The coordinator's service (coordinator/api/service.py) adds the writes; a query
front serves these alone (coordinator/fronts/service.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from shardvec.contract.convert import (
    filter_from_proto,
    vectors_from_proto,
    where_document_from_proto,
)
from shardvec.contract.convert_public import collection_info, search_response
from shardvec.contract.errors import (
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from shardvec.contract.facets import check_facet_limit, check_field_name, facet_count_to_proto
from shardvec.contract.filters import DocFilter
from shardvec.contract.keyword import (
    Fusion,
    fusion_from_request,
    leg_depth,
    validate_text_queries,
)
from shardvec.contract.limits import API_KEY_HEADER, MAX_QUERY_TEXT_BYTES
from shardvec.contract.texts import (
    require_embedding,
    validate_query_texts,
)
from shardvec.contract.types import Hits, ReplicaStatus
from shardvec.contract.validation import (
    validate_ids,
    validate_vectors,
)
from shardvec.coordinator.api.shaped_search import shaped, shaped_search
from shardvec.coordinator.api.sizing import check_get_response, check_search_response
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.embedding.pool import EmbedderPool, local_pool
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.queries.by_id import exclude_ids, vectors_of_ids
from shardvec.coordinator.queries.facets import facet
from shardvec.coordinator.queries.keyword_search import hybrid_search, keyword_search
from shardvec.coordinator.queries.read_runtime import ReadRuntime
from shardvec.coordinator.queries.reads import CollectionReads, SearchParams, deadline_from
from shardvec.coordinator.queries.scroll import get_matching, page_expiries, scroll_rpc
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class ReadService(pb_grpc.VectorSearchServicer):
    """The read calls of the public API (List, Describe, Get, Count, Search, Scroll,
    ClusterInfo) over a `ReadRuntime`: the coordinator's own runtime, or a query front's
    pushed copy of the layout (coordinator/fronts/). The same code answers on both."""

    def __init__(
        self,
        runtime: ReadRuntime,
        settings: CoordinatorSettings,
        batcher: MicroBatcher,
        *,
        embedders: EmbedderPool | None = None,
        cursor_secret: Callable[[], bytes],
        cluster_info: Callable[[], Awaitable[Any]],
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.batcher = batcher
        self._embedders = embedders  # None: an in-process pool, made at the first text
        # The read-only key's query texts: a bucket refilled at read_only_texts_per_s, holding
        # up to one second's worth (or one request's most, if that is more).
        self._ro_budget = TextBudget(
            float(settings.read_only_texts_per_s),
            float(max(settings.read_only_texts_per_s, settings.read_only_max_texts)),
        )
        self._cursor_secret: bytes | None = None  # read (or made) by the first Scroll
        self._load_cursor_secret = cursor_secret
        self._cluster_info = cluster_info

    def _deadline(self, context: Any) -> float:
        return deadline_from(context.time_remaining(), self.settings.default_deadline_s)

    def _rows_limit(self, n: int, limit: int, what: str) -> None:
        if n > limit:
            raise ResourceExhausted(f"{what}: {n} rows, the limit is {limit}")

    def _bytes_limit(self, size: int, what: str) -> None:
        if size > self.settings.max_message_bytes:
            raise ResourceExhausted(
                f"{what}: the response would hold {size} bytes of vectors, the limit is "
                f"{self.settings.max_message_bytes} (max_message_bytes)"
            )

    async def ListCollections(self, request: Any, context: Any) -> Any:
        """Every served collection (one being restored is left out) as Describe shows it:
        its rows counted (in parallel; unset for one that cannot be counted now) and its
        replicas' states."""
        resp = pb.ListCollectionsResponse()
        cols = [self.runtime.collections[name] for name in self.runtime.served()]
        counts = await asyncio.gather(*(self._count_or_none(col, context) for col in cols))
        for col, count in zip(cols, counts, strict=True):
            resp.collections.append(info_of(col, count))
        for alias, target in sorted(self.runtime.aliases.names.items()):
            resp.aliases.add(name=alias, collection=target)
        return resp

    async def _count_or_none(self, col: CollectionReads, context: Any) -> int | None:
        try:
            return await col.count(None, self._deadline(context))
        except (Unavailable, DataLoss, DeadlineExceeded, FailedPrecondition) as exc:
            log.info("list %s: no count: %s", col.spec.name, exc)
            return None

    async def DescribeCollection(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.name)
        count: int | None = None
        try:
            count = await col.count(None, self._deadline(context))
        except (Unavailable, DataLoss) as exc:
            # A shard with no live replica: still describe it, so `shardvec status` can name
            # the replicas that are down or damaged (count left unset).
            log.info("describe %s: no count: %s", request.name, exc)
        await self._refresh_replicas(col)
        return info_of(col, count)

    async def _refresh_replicas(self, col: CollectionReads) -> None:
        """Refresh the live replicas' pid/node/rows for a Describe (a front's come pushed)."""
        live = [r for rs in col.shard_sets for r in rs.live()]
        # Concurrently and briefly: this is status, not the data path.
        results = await asyncio.gather(
            *(asyncio.wait_for(r.connect(), timeout=5.0) for r in live), return_exceptions=True
        )
        for r, res in zip(live, results, strict=True):
            if isinstance(res, BaseException):
                log.debug("describe: %s: %s", r.name, res)

    async def ClusterInfo(self, request: Any, context: Any) -> Any:
        """The fronts of the cluster and the coordinator (coordinator/fronts/publish.py)."""
        return await self._cluster_info()

    async def Get(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.collection)
        by_filter = request.HasField("filter") or request.HasField("where_document")
        if by_filter or not request.ids:
            return await self._get_matching(col, request, context)
        if request.limit:
            raise InvalidArgument("limit: applies to a Get by filter (no ids); got ids")
        self._rows_limit(len(request.ids), self.settings.max_query_rows, "get")
        ids = validate_ids(list(request.ids))
        if request.include.vectors:
            self._bytes_limit(len(ids) * col.dim * 4, "get")
        inc = request.include
        deadline = self._deadline(context)
        found, metas, vectors, docs, expires = await col.get_documents(
            ids, inc.metadata, inc.vectors, deadline, inc.documents
        )
        # Sized from what it will hold (metadata, documents) before the message is built.
        check_get_response(
            found, metas, col.dim, request.include.vectors, self.settings.max_message_bytes, docs,
            len(expires),
        )
        resp = pb.GetResponse(ids=found, metadata_json=metas, documents=docs, expires_at=expires)
        if request.include.vectors:
            resp.vectors.dim = col.dim
            resp.vectors.packed = vectors.astype("<f4").tobytes()
        return resp

    async def _get_matching(self, col: CollectionReads, request: Any, context: Any) -> Any:
        """Get without ids: the first `limit` rows matching filter / where_document (every
        row with neither), in scroll order (coordinator/queries/scroll.py)."""
        if request.ids:
            raise InvalidArgument(
                "get: give ids, or a filter / where_document with a limit, not both"
            )
        cap = self.settings.max_scroll_rows
        limit = int(request.limit) or cap
        if limit > cap:
            raise InvalidArgument(
                f"limit: {limit} rows is over the cap {cap} (max_scroll_rows); page with Scroll"
            )
        where = filter_from_proto(request.filter) if request.HasField("filter") else None
        inc = request.include
        pages = await get_matching(
            col,
            where,
            _where_document(request),
            limit,
            inc.metadata,
            inc.vectors,
            inc.documents,
            self.settings.max_message_bytes // 2,
            self._deadline(context),
        )
        found = [i for p in pages for i in p.ids]
        metas = [m for p in pages for m in p.metadata_json] if inc.metadata else []
        docs = [d for p in pages for d in (p.documents or [])] if inc.documents else []
        expires = page_expiries(pages)
        check_get_response(
            found, metas, col.dim, inc.vectors, self.settings.max_message_bytes, docs,
            len(expires),
        )
        resp = pb.GetResponse(ids=found, metadata_json=metas, documents=docs, expires_at=expires)
        if inc.vectors:
            resp.vectors.dim = col.dim
            parts = [p.vectors for p in pages if p.vectors is not None and len(p.vectors)]
            if parts:
                resp.vectors.packed = np.concatenate(parts).astype("<f4").tobytes()
        return resp

    async def Count(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.collection)
        where = filter_from_proto(request.filter) if request.HasField("filter") else None
        wd = _where_document(request)
        return pb.CountResponse(count=await col.count(where, self._deadline(context), wd))

    def _search_params(
        self, col: CollectionReads, request: Any, k: int | None = None
    ) -> SearchParams:
        k = int(request.k) if k is None else k
        if not 1 <= k <= self.settings.max_k:
            raise InvalidArgument(f"k must be in [1, {self.settings.max_k}], got {k}")
        ef = int(request.ef)
        if ef and not k <= ef <= self.settings.max_ef:
            raise InvalidArgument(f"ef must be 0 or in [k={k}, {self.settings.max_ef}], got {ef}")
        metric = col.spec.index.metric
        min_score = request.min_score if request.HasField("min_score") else None
        max_distance = request.max_distance if request.HasField("max_distance") else None
        if min_score is not None and (metric == "euclidean" or not math.isfinite(min_score)):
            raise InvalidArgument(
                "min_score: needs a finite value and metric cosine or dot; use max_distance"
                " for euclidean"
            )
        if max_distance is not None and (metric != "euclidean" or not max_distance >= 0):
            raise InvalidArgument(
                "max_distance: needs a value >= 0 and metric euclidean; use min_score"
            )
        where = filter_from_proto(request.filter) if request.HasField("filter") else None
        return SearchParams(
            k=k,
            where=where,
            ef=ef or None,
            exact=request.exact,
            min_score=min_score,
            max_distance=max_distance,
            include_metadata=request.include.metadata,
            include_vectors=request.include.vectors,
            include_documents=request.include.documents,
            where_document=_where_document(request),
        )

    async def Search(self, request: Any, context: Any) -> Any:
        col = self.runtime.get(request.collection)
        if shaped(request):  # group-by or diversity: coordinator/api/shaped_search.py
            return await shaped_search(self, col, request, context)
        if request.text_query:
            return await self._search_keywords(col, request, context)
        fusion_from_request(request, hybrid=False)  # fusion parameters need a text_query
        if request.query_ids:
            return await self._search_by_ids(col, request, context)
        params = self._search_params(col, request)
        text_queries = await self._embed_query_texts(col, request, context)
        if text_queries is not None:
            queries = text_queries
        else:
            queries = vectors_from_proto(request.queries, col.dim, field="queries")
        nq = queries.shape[0]
        self._rows_limit(nq, self.settings.max_query_rows, "search queries")
        if nq * params.k > self.settings.max_search_hits:
            raise ResourceExhausted(
                f"search: {nq} queries x k={params.k} is {nq * params.k} hits, the limit is "
                f"{self.settings.max_search_hits} (max_search_hits)"
            )
        if params.include_vectors:
            self._bytes_limit(nq * params.k * col.dim * 4, "search")
        queries = validate_vectors(queries, col.dim, col.spec.index.metric, field="queries")

        # A call the batcher sends on its own goes to the shards with its query bytes as
        # received (the validated array is a view of them); a merged batch is packed anew.
        received = (request.queries.packed or None) if text_queries is None else None

        async def run(batch: np.ndarray, deadline: float) -> Hits:
            packed = received if batch is queries else None
            return await col.search(batch, params, deadline, packed)

        hits = await self.batcher.submit(
            (col.spec.name, params), queries, self._deadline(context), run, Hits.rows
        )
        # Sized from what it will hold (each hit slot repeats its row's metadata) before the
        # message is built, stopping at the first row past the limit.
        check_search_response(hits, col.dim, self.settings.max_message_bytes)
        return search_response(hits)

    async def Facet(self, request: Any, context: Any) -> Any:
        """The most frequent values of a metadata field (coordinator/queries/facets.py)."""
        col = self.runtime.get(request.collection)
        field = check_field_name(request.field, "field")
        limit = check_facet_limit(int(request.limit))
        where = filter_from_proto(request.filter) if request.HasField("filter") else None
        values = await facet(col, field, where, _where_document(request), limit,
                             self._deadline(context))  # fmt: skip
        return pb.FacetResponse(values=[facet_count_to_proto(v, n) for v, n in values])

    async def _keyword_inputs(
        self, col: CollectionReads, request: Any, context: Any
    ) -> tuple[list[str], np.ndarray | None, Fusion | None]:
        """A keyword or hybrid search's checked texts, its query vectors (given, or embedded
        from query_texts; None: keywords alone) and fusion."""
        texts = validate_text_queries(list(request.text_query))
        self._rows_limit(len(texts), self.settings.max_query_rows, "search text_query")
        vectors = await self._embed_query_texts(col, request, context)
        if vectors is None and (request.queries.packed or len(request.queries.values)):
            vectors = vectors_from_proto(request.queries, col.dim, field="queries")
        fusion = fusion_from_request(request, hybrid=vectors is not None)
        if vectors is not None and len(vectors) != len(texts):
            raise InvalidArgument(
                f"text_query: {len(texts)} texts for {len(vectors)} queries (one per query)"
            )
        return texts, vectors, fusion

    async def _search_keywords(self, col: CollectionReads, request: Any, context: Any) -> Any:
        """Keyword search (text_query alone) or hybrid search (with queries or query_texts):
        coordinator/queries/keyword_search.py."""
        if request.query_ids:
            raise InvalidArgument("text_query: not with query_ids (give queries or query_texts)")
        params = self._search_params(col, request)
        texts, vectors, fusion = await self._keyword_inputs(col, request, context)
        if len(texts) * params.k > self.settings.max_search_hits:
            raise ResourceExhausted(
                f"search: {len(texts)} queries x k={params.k} is {len(texts) * params.k} hits,"
                f" the limit is {self.settings.max_search_hits} (max_search_hits)"
            )
        if params.include_vectors:
            self._bytes_limit(len(texts) * params.k * col.dim * 4, "search")
        deadline = self._deadline(context)
        if vectors is None or fusion is None:
            hits = await keyword_search(col, texts, params, deadline)
        else:
            vectors = validate_vectors(vectors, col.dim, col.spec.index.metric, field="queries")
            depth = leg_depth(params.k, self.settings.max_k)
            hits = await hybrid_search(col, vectors, texts, params, fusion, depth, deadline)
        check_search_response(hits, col.dim, self.settings.max_message_bytes)
        return search_response(hits)

    async def _search_by_ids(self, col: CollectionReads, request: Any, context: Any) -> Any:
        """Search with the stored vectors of request.query_ids (coordinator/queries/by_id.py)."""
        if request.queries.packed or len(request.queries.values) or len(request.query_texts):
            raise InvalidArgument("search: give exactly one of queries, query_texts and query_ids")
        params = self._search_params(col, request)
        self._rows_limit(len(request.query_ids), self.settings.max_query_rows, "search query_ids")
        ids = validate_ids(list(request.query_ids), field="query_ids")
        k_asked = params.k + len(ids)
        if k_asked > self.settings.max_k:
            raise InvalidArgument(
                f"query_ids: k + len(query_ids) = {k_asked} is over max_k {self.settings.max_k}"
                " (every result leaves the asked ids out, so each query asks for that many)"
            )
        if len(ids) * k_asked > self.settings.max_search_hits:
            raise ResourceExhausted(
                f"search: {len(ids)} query_ids x (k + {len(ids)}) is {len(ids) * k_asked} hits,"
                f" the limit is {self.settings.max_search_hits} (max_search_hits)"
            )
        if params.include_vectors:
            self._bytes_limit(len(ids) * params.k * col.dim * 4, "search")
        deadline = self._deadline(context)
        queries = await vectors_of_ids(col, ids, deadline)
        wide = dataclasses.replace(params, k=k_asked)

        async def run(batch: np.ndarray, deadline: float) -> Hits:
            return await col.search(batch, wide, deadline)

        hits = await self.batcher.submit((col.spec.name, wide), queries, deadline, run, Hits.rows)
        hits = exclude_ids(hits, set(ids), params.k)
        check_search_response(hits, col.dim, self.settings.max_message_bytes)
        return search_response(hits)

    @property
    def cursor_secret(self) -> bytes:
        """The key that seals scroll cursors (coordinator/queries/cursor.py): the coordinator's,
        kept in its data directory; a front has it from the coordinator, so a cursor any server
        made is good on every other."""
        if self._cursor_secret is None:
            self._cursor_secret = self._load_cursor_secret()
        return self._cursor_secret

    async def Scroll(self, request: Any, context: Any) -> Any:
        return await scroll_rpc(
            self.runtime, self.settings, self.cursor_secret, request, self._deadline(context)
        )

    # Text in: query texts and documents become vectors through the embedder pool.

    @property
    def embedders(self) -> EmbedderPool:
        if self._embedders is None:
            self._embedders = local_pool()
        return self._embedders

    async def _embed(self, col: CollectionReads, texts: list[str], context: Any) -> np.ndarray:
        vectors = await self.embedders.embed(col.spec.embedding, texts, self._deadline(context))
        return validate_vectors(vectors, col.dim, col.spec.index.metric)

    async def _embed_query_texts(
        self, col: CollectionReads, request: Any, context: Any
    ) -> np.ndarray | None:
        """The vectors of Search.query_texts, or None when the queries are vectors."""
        texts = list(request.query_texts)
        has_vectors = bool(request.queries.packed or len(request.queries.values))
        sources = [has_vectors, bool(texts), bool(len(request.query_ids))]
        if sum(sources) > 1:
            raise InvalidArgument(
                "search: give exactly one of queries, query_texts and query_ids"
            )
        if not texts:
            return None
        require_embedding(col.spec.embedding, col.spec.name, "query_texts")
        self._rows_limit(len(texts), self.settings.max_query_rows, "search query_texts")
        validate_query_texts(texts, MAX_QUERY_TEXT_BYTES)
        if self._read_only(context):
            self._rows_limit(len(texts), self.settings.read_only_max_texts,
                             "search query_texts with the read-only key (read_only_max_texts)")
            self._ro_budget.take(len(texts))
        return await self._embed(col, texts, context)

    def _read_only(self, context: Any) -> bool:
        """Whether the call came with the read-only key (the guard let it in already)."""
        ro = self.settings.read_only_key
        if not ro or ro == self.settings.api_key:
            return False
        for key, value in context.invocation_metadata() or ():
            if key == API_KEY_HEADER:
                return hmac.compare_digest(str(value).encode(), ro.encode())
        return False


class TextBudget:
    """A token bucket of texts: `rate` per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self, n: int) -> None:
        """Spend `n` texts, or RESOURCE_EXHAUSTED (nothing spent) when they are not there."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if n > self._tokens:
            raise ResourceExhausted(
                f"search query_texts: the read-only key may embed {self.rate:g} texts per second "
                f"(read_only_texts_per_s); {n} asked, {int(self._tokens)} left now: retry later"
            )
        self._tokens -= n




def info_of(col: CollectionReads, count: int | None) -> pb.CollectionInfo:
    """DescribeCollection's answer: spec, replicas, count, layout version, change running."""
    change = None
    if col.change is not None:
        c = col.change
        change = {
            "kind": c.kind, "phase": c.phase, "target_shards": c.target_shards,
            "target_replicas": c.target_replicas, "rows_copied": c.rows_copied,
            "rows_total": c.rows_total, "started_unix": c.started, "error": c.error,
        }
    return collection_info(
        col.spec, _states(col), count, col.layout.version, change, col.tuned
    )


def _where_document(request: Any) -> DocFilter | None:
    """The request's where_document, validated; None when unset."""
    if not request.HasField("where_document"):
        return None
    f = where_document_from_proto(request.where_document)
    if f is None:
        raise InvalidArgument("where_document: empty filter (leave it unset for none)")
    return f


def _states(col: CollectionReads) -> list[ReplicaStatus]:
    return [r.status() for rs in col.shard_sets for r in rs.replicas]
