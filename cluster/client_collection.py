"""`Collection`: one collection's data and search calls, made through its `Client`
(cluster/client.py), which creates it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from shardvec.cluster import paging
from shardvec.cluster.batches import Batch, send_batches
from shardvec.cluster.paging import Page
from shardvec.cluster.request_fields import (
    as_matrix,
    facet_value,
    set_document_options,
    set_expiry,
    set_shape_options,
    with_groups,
)
from shardvec.contract.codec import dumps_json
from shardvec.contract.convert import filter_to_proto, pack_vectors, where_document_to_proto
from shardvec.contract.convert_public import (
    collection_info_to_dict,
    hits_from_response,
    records_from_response,
)
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.filters import parse_where, parse_where_document
from shardvec.contract.types import Hit, Record
from shardvec.v1 import vector_search_pb2 as pb

# A custom embedding function, as in Chroma: texts -> one vector per text.
EmbeddingFunction = Callable[[list[str]], Any]


class CollectionClient(Protocol):
    """What a Collection needs of shardvec.cluster.client.Client (no import of it: no cycle)."""

    address: str

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any: ...

    def describe(self, name: str) -> dict[str, Any]: ...

    def wait_layout(
        self,
        name: str,
        *,
        timeout: float = 3600.0,
        poll: float = 0.5,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Collection:
    """One collection: upsert, get, delete, count and search."""

    def __init__(self, client: CollectionClient, name: str, dim: int, metric: str) -> None:
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
        concurrency: int = 1,
    ) -> int:
        """Insert or replace rows, `batch_size` per request; returns the number upserted.
        `documents`: one text per row (None: none), stored beside its vector and metadata.
        Expiry, at most one of: `ttl_seconds` (seconds from now, one for all rows or one per
        row; 0: never) or `expires_at` (unix seconds, likewise; 0: never); neither: the
        collection's default. An upsert replaces a row, expiry included.

        `concurrency`: requests in flight at once. 2 keeps the cluster busy while the client
        waits for one answer and packs the next batch (a large load's rows/s rise; see
        BENCHMARKS.md). A row of an id repeated in the call still lands after the earlier
        one. On an error every batch before the failed one is written, as with one in
        flight; a batch sent after it may be written too, and the error's note says so
        (cluster/batches.py)."""
        arr = as_matrix(vectors)
        if len(ids) != arr.shape[0]:
            raise InvalidArgument(f"{len(ids)} ids for {arr.shape[0]} vectors")
        if metadatas is not None and len(metadatas) != len(ids):
            raise InvalidArgument(f"{len(metadatas)} metadatas for {len(ids)} ids")
        if documents is not None and len(documents) != len(ids):
            raise InvalidArgument(f"{len(documents)} documents for {len(ids)} ids")
        names = [str(i) for i in ids]

        def request(start: int, stop: int) -> Any:
            req = pb.UpsertRequest(collection=self.name, ids=names[start:stop])
            pack_vectors(req.vectors, arr[start:stop])
            if metadatas is not None:
                req.metadata_json.extend(
                    dumps_json(dict(m)) if m else "" for m in metadatas[start:stop]
                )
            if documents is not None:
                req.documents.extend(d or "" for d in documents[start:stop])
            set_expiry(req, ttl_seconds, expires_at, len(ids), start, stop)
            return req

        batches = (
            Batch(start, stop, names[start:stop], functools.partial(request, start, stop))
            for start, stop in ((s, min(s + batch_size, len(ids)))
                                for s in range(0, len(ids), batch_size))
        )  # fmt: skip
        return send_batches(
            batches, lambda req: int(self.client.call("Upsert", req).upserted), concurrency,
            progress,
        )  # fmt: skip

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
        set_document_options(req, include_documents, where_document)
        set_shape_options(req, group_by, groups, group_size, diversity, candidates)
        resp = self.client.call("Search", req, timeout)
        return with_groups(resp, hits_from_response(resp, self.dim))

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
        arr = as_matrix(queries)
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
        arr = as_matrix(self.embedding_function(list(texts)))
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
        expires_at: float | Sequence[float] | None = None,
    ) -> int:
        """Insert or replace rows from their texts (Chroma's `add(ids, documents=...)`): the
        embedding_function embeds them here, or the cluster does with the collection's
        embedding. Returns the number upserted. `ttl_seconds` and `expires_at` as in
        `upsert`."""
        if len(documents) != len(ids):
            raise InvalidArgument(f"{len(documents)} documents for {len(ids)} ids")
        if metadatas is not None and len(metadatas) != len(ids):
            raise InvalidArgument(f"{len(metadatas)} metadatas for {len(ids)} ids")
        done = 0
        for start in range(0, len(ids), batch_size):
            stop = min(start + batch_size, len(ids))
            req = pb.UpsertRequest(collection=self.name, ids=[str(i) for i in ids[start:stop]])
            req.documents.extend(documents[start:stop])
            set_expiry(req, ttl_seconds, expires_at, len(ids), start, stop)
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
            pack_vectors(req.queries, as_matrix(queries))
        if fusion:
            req.fusion = fusion
        if alpha is not None:
            req.alpha = alpha
        req.rrf_k = rrf_k
        if where:
            req.filter.CopyFrom(filter_to_proto(parse_where(where)))
        req.include.metadata = include_metadata
        req.include.vectors = include_vectors
        set_document_options(req, include_documents, where_document)
        set_shape_options(req, group_by, groups, group_size, None, None)
        resp = self.client.call("Search", req, timeout)
        return with_groups(resp, hits_from_response(resp, self.dim))

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
        set_document_options(req, include_documents, where_document)
        set_shape_options(req, group_by, groups, group_size, diversity, candidates)
        if self.embedding_function is None:
            req.ClearField("queries")
            req.query_texts.extend(texts)
        resp = self.client.call("Search", req, timeout)
        return with_groups(resp, hits_from_response(resp, self.dim))

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
        set_document_options(req, False, where_document)
        resp = self.client.call("Facet", req, timeout)
        return [facet_value(v) for v in resp.values]

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
        (every row with neither), in the scroll order. To walk more rows, use `scroll`. Each
        Record's `expires_at` is its absolute expiry in unix seconds (0.0: never)."""
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
        set_document_options(req, False, where_document)
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
        may or may not come; rows alive throughout all come, once. Each Record carries its
        `expires_at` (0.0: never), as `get`'s."""
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
            pack_vectors(req.vectors, as_matrix(vectors))
        set_expiry(req, ttl_seconds, expires_at, len(ids), 0, len(ids))
        resp = self.client.call("Update", req)
        return {
            "updated": int(resp.updated),
            "missing_ids": list(resp.missing_ids),
            "inserted": int(resp.inserted),
        }
