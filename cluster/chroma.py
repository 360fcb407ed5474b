"""A Chroma-shaped client over the native one, so code written for chromadb runs on shardvec:

    from shardvec import chroma as chromadb           # was: import chromadb
    client = chromadb.HttpClient(host="127.0.0.1", port=50051)

Every call is made with the native `Client` / `Collection` (cluster/client.py); no wire call is
its own. What differs from Chroma, and why:

- Dimension: shardvec fixes it at creation. With neither `dim` nor `embedding_function`, a
  collection embeds in the cluster with the built-in "minilm" (all-MiniLM-L6-v2, 384-d, the
  model of Chroma's default embedding function); with a function and no `dim`, the length
  of its vector for one probe text.
- Collection metadata: only Chroma's `hnsw:space` (default "l2", as Chroma),
  `hnsw:M`, `hnsw:construction_ef` and `hnsw:search_ef`, kept as the collection's settings;
  other keys, `modify(name=...)` and changed settings are INVALID_ARGUMENT.
- Distances as Chroma's (smaller is closer): l2 squared, cosine and ip 1 - score
  (cluster/chroma_shapes.py).
- `add` skips ids already stored and `update` skips ids not stored, as Chroma; `upsert` and
  `update` merge metadata keys into the stored ones (None removes a key). These read the rows
  first and then write, so a write to the same ids in between can be lost; the native
  `upsert` / `update` are atomic.
- `get` without ids returns rows in shardvec's scroll order, not insertion order.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shardvec.cluster import chroma_shapes as shapes
from shardvec.cluster.client import Client as NativeClient
from shardvec.cluster.client import Collection as NativeCollection
from shardvec.cluster.client import EmbeddingFunction
from shardvec.contract.errors import AlreadyExists, InvalidArgument, NotFound
from shardvec.contract.limits import MAX_SCROLL_ROWS
from shardvec.contract.types import Record

__all__ = ["Client", "Collection", "EmbeddingFunction", "HttpClient"]

WRITE_BATCH = 1000  # rows read and written per round trip by add / update / upsert
Metadata = Mapping[str, Any]


def _many(value: Any) -> list[Any] | None:
    """Chroma's OneOrMany: a single id, document or metadata dict becomes a list of one."""
    if value is None:
        return None
    if isinstance(value, str | Mapping):
        return [value]
    return list(value)


def _vectors(embeddings: Any) -> np.ndarray | None:
    if embeddings is None:
        return None
    arr = np.asarray(embeddings, dtype=np.float32)
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


class Collection:
    """A collection with Chroma's methods; `native` is the shardvec Collection underneath."""

    def __init__(self, native: NativeCollection) -> None:
        self.native = native

    def __repr__(self) -> str:
        return f"Collection(name={self.name!r})"

    @property
    def name(self) -> str:
        return self.native.name

    @property
    def metadata(self) -> dict[str, Any]:
        """Chroma's collection metadata: the `hnsw:` settings (one DescribeCollection)."""
        return shapes.metadata_from_info(self.native.client.describe(self.name))

    @property
    def _embeds(self) -> bool:
        return bool(self.native.embedding) or self.native.embedding_function is not None

    def count(self) -> int:
        return self.native.count()

    def modify(self, name: str | None = None, metadata: Metadata | None = None) -> None:
        """Only a no-op is possible: shardvec renames nothing and changes no index setting
        after creation (to rename: create_snapshot, then restore_snapshot with as_name)."""
        if name is not None and name != self.name:
            raise InvalidArgument(
                f"modify: shardvec cannot rename collection {self.name!r}; snapshot it and "
                f"restore the snapshot as {name!r} (Client.create_snapshot / restore_snapshot)"
            )
        if metadata is not None:
            current = self.metadata
            wanted = {**current, **dict(metadata)}
            if wanted != current:
                raise InvalidArgument(
                    f"modify: collection metadata is fixed at creation in shardvec "
                    f"(now {current}, asked {dict(metadata)})"
                )

    # Writes: add, upsert and update share one read-merge-write (see the module docstring).

    def add(
        self,
        ids: str | Sequence[str],
        embeddings: Any = None,
        metadatas: Metadata | Sequence[Metadata | None] | None = None,
        documents: str | Sequence[str] | None = None,
    ) -> None:
        """Insert rows (ids already stored are left as they are, as in Chroma); each needs
        an embedding or a document to embed."""
        self._write("add", ids, embeddings, metadatas, documents)

    def upsert(
        self,
        ids: str | Sequence[str],
        embeddings: Any = None,
        metadatas: Metadata | Sequence[Metadata | None] | None = None,
        documents: str | Sequence[str] | None = None,
    ) -> None:
        """Insert new rows; for stored ones, `update`'s rules."""
        self._write("upsert", ids, embeddings, metadatas, documents)

    def update(
        self,
        ids: str | Sequence[str],
        embeddings: Any = None,
        metadatas: Metadata | Sequence[Metadata | None] | None = None,
        documents: str | Sequence[str] | None = None,
    ) -> None:
        """Change stored rows (ids not stored are skipped): metadata merged key by key,
        document replaced and, when the collection embeds, embedded again."""
        self._write("update", ids, embeddings, metadatas, documents)

    def _write(
        self,
        mode: str,
        ids: str | Sequence[str],
        embeddings: Any,
        metadatas: Metadata | Sequence[Metadata | None] | None,
        documents: str | Sequence[str] | None,
    ) -> None:
        id_list = [str(i) for i in _many(ids) or []]
        vectors = _vectors(embeddings)
        metas = _many(metadatas)
        docs = _many(documents)
        shapes.check_rows(id_list, embeddings=vectors, metadatas=metas, documents=docs)
        if mode == "add" and vectors is None and (docs is None or not self._embeds):
            raise InvalidArgument(
                "add: give embeddings"
                + (" or documents to embed" if self._embeds else f" ({self.name!r} embeds no text)")
            )
        if vectors is None and metas is None and docs is None:
            return
        for start in range(0, len(id_list), WRITE_BATCH):
            part = slice(start, start + WRITE_BATCH)
            self._write_batch(
                mode,
                id_list[part],
                vectors[part] if vectors is not None else None,
                metas[part] if metas is not None else None,
                docs[part] if docs is not None else None,
            )

    def _write_batch(
        self,
        mode: str,
        ids: list[str],
        vectors: np.ndarray | None,
        metas: list[Metadata | None] | None,
        docs: list[str] | None,
    ) -> None:
        reembed = vectors is None and docs is not None and self._embeds
        nulls = metas is not None and any(m and None in m.values() for m in metas)
        if mode == "update" and vectors is None and not reembed and not nulls:
            # Metadata merge (and documents, vectors kept) in one atomic native Update.
            self.native.update(ids, metas, docs)
            return
        keep_vectors = vectors is None and not reembed
        stored = {
            r.id: r
            for r in self.native.get(ids, include_vectors=keep_vectors, include_documents=True)
        }
        rows = [
            i
            for i, id_ in enumerate(ids)
            if (id_ in stored) == (mode == "update") or mode == "upsert"
        ]
        if keep_vectors:
            new = [ids[i] for i in rows if ids[i] not in stored]
            if new:
                raise InvalidArgument(
                    f"{mode}: {new[0]!r} is not stored: give embeddings or documents for it"
                )
        if not rows:
            return
        old: list[Record | None] = [stored.get(ids[i]) for i in rows]
        out_ids = [ids[i] for i in rows]
        out_metas = [
            shapes.merge_metadata(o.metadata if o else None, metas[i] if metas else None)
            for i, o in zip(rows, old, strict=True)
        ]
        if reembed:
            assert docs is not None
            self.native.upsert_documents(
                out_ids, [docs[i] for i in rows], out_metas, batch_size=WRITE_BATCH
            )
            return
        out_docs = [
            docs[i] if docs is not None else (o.document if o else None)
            for i, o in zip(rows, old, strict=True)
        ]
        if vectors is not None:
            out_vectors = vectors[rows]
        else:
            out_vectors = np.stack(
                [o.vector for o in old if o is not None and o.vector is not None]
            )
        self.native.upsert(out_ids, out_vectors, out_metas, documents=out_docs)

    # Reads.

    def query(
        self,
        query_embeddings: Any = None,
        query_texts: str | Sequence[str] | None = None,
        n_results: int = 10,
        where: Metadata | None = None,
        where_document: Metadata | None = None,
        include: Sequence[str] = shapes.QUERY_INCLUDE,
    ) -> dict[str, Any]:
        """The `n_results` nearest rows per query (embeddings, or texts embedded as the
        collection embeds), column-wise as Chroma's QueryResult: one list per query."""
        inc = shapes.check_include(include, query=True)
        if (query_embeddings is None) == (query_texts is None):
            raise InvalidArgument("query: give exactly one of query_embeddings and query_texts")
        options: dict[str, Any] = {
            "where": where or None,
            "where_document": where_document or None,
            "include_metadata": "metadatas" in inc,
            "include_vectors": "embeddings" in inc,
            "include_documents": "documents" in inc,
        }
        if query_texts is not None:
            hits = self.native.search_texts(_many(query_texts) or [], n_results, **options)
        else:
            vectors = _vectors(query_embeddings)
            hits = self.native.search(vectors, n_results, **options)
        return shapes.query_result(hits, self.native.metric, inc)

    def get(
        self,
        ids: str | Sequence[str] | None = None,
        where: Metadata | None = None,
        limit: int | None = None,
        offset: int | None = None,
        where_document: Metadata | None = None,
        include: Sequence[str] = shapes.GET_INCLUDE,
    ) -> dict[str, Any]:
        """Rows by id (in request order, missing ids left out) and/or by filter, column-wise
        as Chroma's GetResult. Ids with a filter are the filtered rows among those ids (a
        scroll over the filter's rows)."""
        inc = shapes.check_include(include, query=False)
        id_list = _many(ids)
        vectors, documents = "embeddings" in inc, "documents" in inc
        start, stop = offset or 0, None if limit is None else (offset or 0) + limit
        if id_list == []:
            return shapes.get_result([], inc)
        if id_list is not None and not where and not where_document:
            got = self.native.get(id_list, include_vectors=vectors, include_documents=documents)
            return shapes.get_result(got[start:stop], inc)
        rows = self.native.scroll(
            where or None,
            where_document=where_document or None,
            page_size=min(stop, MAX_SCROLL_ROWS) if stop else WRITE_BATCH,
            include_metadata="metadatas" in inc,
            include_vectors=vectors,
            include_documents=documents,
        )
        if id_list is not None:
            wanted = set(id_list)
            rows = (r for r in rows if r.id in wanted)
        return shapes.get_result(list(itertools.islice(rows, start, stop)), inc)

    def peek(self, limit: int = 10) -> dict[str, Any]:
        """The first `limit` rows, with their embeddings, documents and metadata."""
        return self.get(limit=limit, include=["embeddings", "documents", "metadatas"])

    def delete(
        self,
        ids: str | Sequence[str] | None = None,
        where: Metadata | None = None,
        where_document: Metadata | None = None,
    ) -> None:
        """Delete the rows of `ids`, or matching `where` (atomic, on the server); with
        `where_document` or ids and a filter together, the matching rows are looked up first,
        then deleted by id."""
        id_list = _many(ids)
        if id_list is None and not where and not where_document:
            raise InvalidArgument("delete: give ids, where or where_document")
        if id_list == []:
            return
        if not where_document and (id_list is None or not where):
            self.native.delete(id_list, where=where or None)
            return
        found = self.get(id_list, where=where, where_document=where_document, include=[])["ids"]
        if found:
            self.native.delete(found)


class Client:
    """Chroma's client methods over a native shardvec Client (`native`)."""

    def __init__(self, native: NativeClient) -> None:
        self.native = native

    def heartbeat(self) -> int:
        """Nanoseconds since the epoch once the server answers (as Chroma's)."""
        self.native.list_collections()
        return time.time_ns()

    def create_collection(
        self,
        name: str,
        metadata: Metadata | None = None,
        embedding_function: EmbeddingFunction | None = None,
        get_or_create: bool = False,
        *,
        dim: int = 0,
        embedding: str | None = None,
        shards: int = 1,
        replicas: int = 1,
    ) -> Collection:
        """Create a collection (see the module docstring for `dim` and `metadata`).
        `embedding`: the cluster's embedding ("minilm"), by default when there is neither
        `dim` nor `embedding_function`; `shards` and `replicas` as in the native client."""
        if get_or_create:
            try:
                return self.get_collection(name, embedding_function)
            except NotFound:
                pass
        settings = shapes.settings_from_metadata(metadata)
        if embedding is None:
            embedding = "minilm" if dim == 0 and embedding_function is None else ""
        try:
            native = self.native.create_collection(
                name,
                dim,
                shards=shards,
                replicas=replicas,
                embedding=embedding,
                embedding_function=embedding_function,
                **settings,
            )
        except AlreadyExists:
            if not get_or_create:
                raise
            return self.get_collection(name, embedding_function)
        return Collection(native)

    def get_or_create_collection(
        self,
        name: str,
        metadata: Metadata | None = None,
        embedding_function: EmbeddingFunction | None = None,
        **options: Any,
    ) -> Collection:
        """The collection `name`, created (as by create_collection) when there is none."""
        return self.create_collection(
            name, metadata, embedding_function, get_or_create=True, **options
        )

    def get_collection(
        self, name: str, embedding_function: EmbeddingFunction | None = None
    ) -> Collection:
        return Collection(self.native.get_collection(name, embedding_function=embedding_function))

    def list_collections(
        self, limit: int | None = None, offset: int | None = None
    ) -> list[Collection]:
        """The collections, by name, as Collection objects (as Chroma 1.x)."""
        infos = sorted(self.native.list_collections(), key=lambda i: str(i["name"]))
        start = offset or 0
        out = []
        for info in infos[start : None if limit is None else start + limit]:
            col = NativeCollection(self.native, info["name"], info["dim"], info["metric"])
            col.embedding = info["embedding"]
            out.append(Collection(col))
        return out

    def count_collections(self) -> int:
        return len(self.native.list_collections())

    def delete_collection(self, name: str) -> None:
        self.native.drop_collection(name)

    def close(self) -> None:
        self.native.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def HttpClient(  # named as chromadb.HttpClient, for the two-line switch
    host: str = "127.0.0.1",
    port: int = 50051,
    *,
    api_key: str | None = None,
    timeout: float = 60.0,
    tls_ca: bytes | None = None,
) -> Client:
    """A Chroma-shaped client of the shardvec cluster at host:port (its gRPC API)."""
    return Client(NativeClient(f"{host}:{port}", api_key=api_key, timeout=timeout, tls_ca=tls_ca))
