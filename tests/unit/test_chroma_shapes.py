"""The Chroma-shaped client without a cluster: distances, column-wise results, collection
metadata, and the read-merge-write of add / update / upsert over an in-memory native stand-in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pytest

from shardvec.cluster import chroma
from shardvec.cluster import chroma_shapes as shapes
from shardvec.cluster.client import Collection as NativeCollection
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.types import Hit, Record


@pytest.mark.parametrize(
    ("metric", "score", "expected"),
    [
        ("cosine", 1.0, 0.0),
        ("cosine", 0.25, 0.75),
        ("cosine", -1.0, 2.0),
        ("dot", 3.0, -2.0),
        ("dot", 0.0, 1.0),
        ("euclidean", 2.0, 4.0),  # Chroma's l2 is squared
        ("euclidean", 0.0, 0.0),
    ],
)
def test_distance_per_metric(metric: str, score: float, expected: float) -> None:
    assert shapes.distance(metric, score) == pytest.approx(expected)


def test_distance_is_smaller_for_closer_rows_in_every_metric() -> None:
    # scores best first (as shardvec returns them) become distances in ascending order
    for metric, scores in (("cosine", [0.9, 0.5, -0.2]), ("dot", [5.0, 1.0, -3.0])):
        d = [shapes.distance(metric, s) for s in scores]
        assert d == sorted(d)
    d = [shapes.distance("euclidean", s) for s in [0.1, 0.5, 2.0]]
    assert d == sorted(d)
    with pytest.raises(InvalidArgument, match="unknown metric"):
        shapes.distance("hamming", 1.0)


def test_query_result_is_one_list_per_query_with_left_out_columns_none() -> None:
    v = np.ones(2, np.float32)
    hits = [
        [Hit("a", 0.5, {"k": 1}, v, "doc a"), Hit("b", 0.25, None, v, None)],
        [],
    ]
    out = shapes.query_result(hits, "cosine", {"metadatas", "documents", "distances"})
    assert out["ids"] == [["a", "b"], []]
    assert out["distances"] == [[0.5, 0.75], []]
    assert out["documents"] == [["doc a", None], []]
    assert out["metadatas"] == [[{"k": 1}, None], []]
    assert out["embeddings"] is None and out["uris"] is None and out["data"] is None
    assert out["included"] == ["documents", "metadatas", "distances"]
    only = shapes.query_result(hits, "euclidean", {"embeddings"})
    assert only["distances"] is None and only["metadatas"] is None
    assert only["embeddings"] is not None and only["embeddings"][0][0] is v


def test_get_result_is_column_wise() -> None:
    recs = [Record("x", None, {"a": 1}, "t"), Record("y", None, {}, None)]
    out = shapes.get_result(recs, {"metadatas", "documents"})
    assert out["ids"] == ["x", "y"]
    assert out["metadatas"] == [{"a": 1}, None]  # an empty metadata object reads as none
    assert out["documents"] == ["t", None]
    assert out["embeddings"] is None
    assert out["included"] == ["documents", "metadatas"]


def test_include_values_are_checked() -> None:
    assert shapes.check_include(["distances"], query=True) == {"distances"}
    with pytest.raises(InvalidArgument, match="'distances'"):
        shapes.check_include(["distances"], query=False)  # get has no distances
    with pytest.raises(InvalidArgument, match="'uris'"):
        shapes.check_include(["uris"], query=True)


def test_collection_metadata_to_settings_and_back() -> None:
    assert shapes.settings_from_metadata(None) == {"metric": "euclidean"}  # Chroma's default l2
    got = shapes.settings_from_metadata(
        {"hnsw:space": "ip", "hnsw:M": 32, "hnsw:construction_ef": 200, "hnsw:search_ef": 64}
    )
    assert got == {"metric": "dot", "m": 32, "ef_construction": 200, "ef": 64}
    info = {"metric": "dot", "m": 32, "ef_construction": 200, "ef": 0}
    assert shapes.metadata_from_info(info) == {
        "hnsw:space": "ip",
        "hnsw:M": 32,
        "hnsw:construction_ef": 200,
    }
    with pytest.raises(InvalidArgument, match="'description'"):
        shapes.settings_from_metadata({"description": "mine"})
    with pytest.raises(InvalidArgument, match="hnsw:space"):
        shapes.settings_from_metadata({"hnsw:space": "manhattan"})
    with pytest.raises(InvalidArgument, match="hnsw:M must be a positive integer"):
        shapes.settings_from_metadata({"hnsw:M": True})


def test_merge_metadata_as_chroma_update() -> None:
    assert shapes.merge_metadata({"a": 1, "b": 2}, {"b": 3, "c": 4}) == {"a": 1, "b": 3, "c": 4}
    assert shapes.merge_metadata({"a": 1, "b": 2}, {"a": None}) == {"b": 2}
    assert shapes.merge_metadata({"a": 1}, None) == {"a": 1}
    assert shapes.merge_metadata(None, {"a": None}) is None
    assert shapes.merge_metadata(None, None) is None


def test_check_rows() -> None:
    shapes.check_rows(["a", "b"], documents=["x", "y"], metadatas=None)
    with pytest.raises(InvalidArgument, match="duplicate ids: 'a'"):
        shapes.check_rows(["a", "b", "a"])
    with pytest.raises(InvalidArgument, match="1 documents for 2 ids"):
        shapes.check_rows(["a", "b"], documents=["x"])


class _Native:
    """The calls chroma.Collection makes of a native Collection, over a dict of rows."""

    def __init__(self, embedding: str = "") -> None:
        self.name, self.dim, self.metric = "c", 2, "cosine"
        self.embedding = embedding
        self.embedding_function = None
        self.rows: dict[str, Record] = {}
        self.calls: list[str] = []

    def get(self, ids: Sequence[str], **_: Any) -> list[Record]:
        self.calls.append("get")
        return [self.rows[i] for i in ids if i in self.rows]

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadatas: Sequence[Mapping[str, Any] | None],
        *,
        documents: Sequence[str | None],
    ) -> int:
        self.calls.append("upsert")
        return self._store(ids, vectors, metadatas, documents)

    def _store(self, ids: Sequence[str], vectors: Any, metadatas: Any, documents: Any) -> int:
        for i, v, m, d in zip(ids, np.asarray(vectors), metadatas, documents, strict=True):
            self.rows[i] = Record(i, v, dict(m) if m else None, d)
        return len(ids)

    def upsert_documents(
        self, ids: Sequence[str], documents: Sequence[str], metadatas: Any, **_: Any
    ) -> int:
        self.calls.append("upsert_documents")
        vectors = np.array([[len(d), 1.0] for d in documents], np.float32)  # the "embedding"
        return self._store(ids, vectors, metadatas, documents)

    def update(self, ids: Sequence[str], metadatas: Any, documents: Any) -> dict[str, Any]:
        self.calls.append("update")
        for j, i in enumerate(ids):
            if i in self.rows:
                r = self.rows[i]
                meta = {**(r.metadata or {}), **(metadatas[j] or {})} if metadatas else r.metadata
                doc = documents[j] if documents else r.document
                self.rows[i] = Record(i, r.vector, meta, doc)
        return {}


def _collection(embedding: str = "") -> tuple[chroma.Collection, _Native]:
    native = _Native(embedding)
    return chroma.Collection(cast(NativeCollection, native)), native


def test_add_skips_stored_ids_and_update_skips_missing_ones() -> None:
    col, native = _collection()
    col.add(ids=["a"], embeddings=[[1.0, 0.0]], metadatas=[{"k": 1}], documents=["A"])
    col.add(ids=["a", "b"], embeddings=[[9.0, 9.0], [0.0, 1.0]])
    assert native.rows["a"] == Record("a", native.rows["a"].vector, {"k": 1}, "A")
    assert native.rows["a"].vector.tolist() == [1.0, 0.0]  # type: ignore[union-attr]
    assert native.rows["b"].metadata is None
    col.update(ids=["a", "zz"], metadatas=[{"j": 2}, {"j": 3}])
    assert native.calls[-1] == "update"  # a metadata-only update is one native Update
    assert native.rows["a"].metadata == {"k": 1, "j": 2} and "zz" not in native.rows


def test_update_and_upsert_merge_metadata_and_keep_what_is_not_given() -> None:
    col, native = _collection()
    col.add(ids=["a"], embeddings=[[1.0, 0.0]], metadatas=[{"k": 1, "x": 0}], documents=["A"])
    col.update(ids="a", metadatas={"x": None})  # None removes a key: read, merge, write
    assert native.rows["a"].metadata == {"k": 1} and native.rows["a"].document == "A"
    col.update(ids=["a"], embeddings=[[0.0, 1.0]])  # a new vector keeps metadata and document
    assert native.rows["a"].metadata == {"k": 1} and native.rows["a"].document == "A"
    assert native.rows["a"].vector.tolist() == [0.0, 1.0]  # type: ignore[union-attr]
    col.upsert(ids=["a", "n"], embeddings=[[1, 1], [2, 2]], metadatas=[{"m": 5}, {"m": 6}])
    assert native.rows["a"].metadata == {"k": 1, "m": 5} and native.rows["a"].document == "A"
    assert native.rows["n"].metadata == {"m": 6}
    with pytest.raises(InvalidArgument, match="'q' is not stored"):
        col.upsert(ids=["q"], metadatas=[{"m": 1}])


def test_documents_are_embedded_again_when_the_collection_embeds() -> None:
    col, native = _collection(embedding="minilm")
    col.add(ids=["a"], documents=["four"], metadatas=[{"k": 1}])
    assert native.calls[-1] == "upsert_documents"
    col.update(ids=["a"], documents=["sixsix"])
    assert native.rows["a"].vector.tolist() == [6.0, 1.0]  # type: ignore[union-attr]
    assert native.rows["a"].metadata == {"k": 1}
    plain, _ = _collection()
    with pytest.raises(InvalidArgument, match="embeds no text"):
        plain.add(ids=["a"], documents=["text"])
    with pytest.raises(InvalidArgument, match="duplicate ids"):
        col.add(ids=["a", "a"], documents=["x", "y"])
