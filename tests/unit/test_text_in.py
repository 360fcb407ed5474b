"""Text in at the public service's edge, without Ray: collections with an embedding function,
Upsert of documents without vectors and Search by query texts, over a CoordinatorRuntime of
in-process replicas (tests/inproc.py) and an in-process embedder pool (the same model code
the Ray actors run); bad input gets a precise status and changes nothing.

Skipped when the text extra or the weights are not installed (`make text`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.errors import FailedPrecondition, InvalidArgument
from shardvec.contract.limits import MAX_QUERY_TEXT_BYTES
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.coordinator.embedding import minilm
from shardvec.coordinator.embedding.pool import EmbedderPool, LocalEmbedder
from shardvec.coordinator.registry import Registry
from shardvec.v1 import vector_search_pb2 as pb
from tests.text_service import DOCS, Service, text_search


@pytest.fixture(scope="module", autouse=True)
def _model() -> None:
    try:
        minilm.shared_model()
    except FailedPrecondition as exc:
        pytest.skip(f"text support not installed: {exc.message}")


@pytest.fixture()
def svc(tmp_path: Path) -> Iterator[Service]:
    s = Service(tmp_path)
    s.call("CreateCollection", pb.CreateCollectionRequest(name="text", embedding="minilm"))
    s.call("CreateCollection", pb.CreateCollectionRequest(name="plain", dimension=384))
    req = pb.UpsertRequest(collection="text", ids=[f"d{i}" for i in range(len(DOCS))])
    req.documents.extend(DOCS)
    assert s.call("Upsert", req).upserted == len(DOCS)
    yield s
    s.close()


def test_documents_without_vectors_are_embedded_and_found_by_text(svc: Service) -> None:
    info = svc.call("DescribeCollection", pb.DescribeCollectionRequest(name="text"))
    assert (info.embedding, info.dimension, info.count) == ("minilm", 384, len(DOCS))
    resp = svc.call("Search", text_search("text", "parse json quickly", "bike ride gps log"))
    assert [r.ids[0] for r in resp.results] == ["d0", "d1"]
    # A document's own text finds it first, with a cosine of 1 (its vector is its embedding).
    resp = svc.call("Search", text_search("text", DOCS[2], k=1))
    assert resp.results[0].ids[0] == "d2" and resp.results[0].scores[0] == pytest.approx(1, 1e-5)
    # The stored vector is exactly what the model makes of the document.
    get = pb.GetRequest(collection="text", ids=["d3"])
    get.include.vectors = True
    stored = np.frombuffer(svc.call("Get", get).vectors.packed, "<f4")
    np.testing.assert_allclose(stored, minilm.shared_model().embed([DOCS[3]])[0], atol=1e-6)


def test_the_embedding_is_persisted_with_the_spec(tmp_path: Path) -> None:
    first = Service(tmp_path)
    first.call("CreateCollection", pb.CreateCollectionRequest(name="text", embedding="minilm"))
    first.call("CreateCollection", pb.CreateCollectionRequest(name="plain", dimension=384))
    req = pb.UpsertRequest(collection="text", ids=["d0", "d2"], documents=[DOCS[0], DOCS[2]])
    first.call("Upsert", req)
    first.close()
    reg = Registry(tmp_path)
    specs = {s.name: s for s in reg.all()}
    reg.close()
    assert specs["text"].embedding == "minilm" and specs["plain"].embedding == ""
    again = Service(tmp_path)
    try:
        assert again.runtime.get("text").spec.embedding == "minilm"
        resp = again.call("Search", text_search("text", "photo file names by date", k=1))
        assert resp.results[0].ids[0] == "d2"
    finally:
        again.close()


def test_spec_round_trip_and_old_registry_rows() -> None:
    spec = CollectionSpec("c", IndexSettings(384), embedding="minilm")
    assert CollectionSpec.from_json("c", spec.to_json()) == spec
    old = '{"index": {"dim": 8, "metric": "cosine", "m": 16, "ef_construction": 200, "ef": 64},'
    assert CollectionSpec.from_json("c", old + ' "shards": 1, "replicas": 1}').embedding == ""
    with pytest.raises(InvalidArgument, match="unknown embedding function 'bert'"):
        CollectionSpec("c", IndexSettings(384), embedding="bert")
    with pytest.raises(InvalidArgument, match="makes 384-d vectors, got dimension 8"):
        CollectionSpec("c", IndexSettings(8), embedding="minilm")


def test_bad_input(svc: Service) -> None:
    count = pb.CountRequest(collection="text")
    svc.reject("CreateCollection", pb.CreateCollectionRequest(name="x", embedding="bert"),
               InvalidArgument, "embedding: unknown embedding function 'bert'")  # fmt: skip
    svc.reject("CreateCollection",
               pb.CreateCollectionRequest(name="x", embedding="minilm", dimension=128),
               InvalidArgument, "makes 384-d vectors, got dimension 128")  # fmt: skip
    svc.reject("Search", text_search("plain", "hello"), FailedPrecondition,
               "query_texts: collection 'plain' has no embedding function")  # fmt: skip
    svc.reject("Search", text_search("text", "ok", "  "), InvalidArgument,
               "query_texts[1]: the text is empty")  # fmt: skip
    huge = "a" * (MAX_QUERY_TEXT_BYTES + 1)
    too_big = f"query_texts[0]: the text is {MAX_QUERY_TEXT_BYTES + 1} bytes, the limit is"
    svc.reject("Search", text_search("text", huge), InvalidArgument, too_big)
    both = text_search("text", "hello")
    both.queries.dim = 384
    both.queries.packed = np.ones(384, "<f4").tobytes()
    svc.reject("Search", both, InvalidArgument,
               "give exactly one of queries, query_texts and query_ids")  # fmt: skip
    plain = pb.UpsertRequest(collection="plain", ids=["a"], documents=["some text"])
    svc.reject("Upsert", plain, FailedPrecondition,
               "upsert without vectors: collection 'plain' has no embedding function")  # fmt: skip
    short = pb.UpsertRequest(collection="text", ids=["a", "b"], documents=["one"])
    svc.reject("Upsert", short, InvalidArgument, "documents: 1 documents for 2 ids")
    blank = pb.UpsertRequest(collection="text", ids=["a", "b"], documents=["one", ""])
    svc.reject("Upsert", blank, InvalidArgument,
               "documents[1]: the text is empty and no vector to stand in for it")  # fmt: skip
    assert svc.call("Count", count).count == len(DOCS)  # nothing of a rejected batch landed
    assert svc.call("Count", pb.CountRequest(collection="plain")).count == 0
    # A text far past 256 word pieces is cut, not refused.
    resp = svc.call("Search", text_search("text", "json parser " * 2000, k=1))
    assert resp.results[0].ids[0] == "d0"


def test_the_pool_merges_concurrent_texts_and_follows_the_nodes() -> None:
    nodes = ["n1"]
    made: list[LocalEmbedder] = []

    def spawn(node: str) -> LocalEmbedder:
        made.append(LocalEmbedder(node))
        return made[-1]

    async def scenario() -> None:
        pool = EmbedderPool(spawn, lambda: list(nodes), max_embedders=3, refresh_s=0.0)
        texts = [f"query number {i} about vector search" for i in range(24)]
        out = await asyncio.gather(*(pool.embed("minilm", [t], 1e12) for t in texts))
        calls = sum(e._embedder.calls for e in made)
        assert len(made) == 1 and calls < len(texts)  # merged into fewer model calls
        np.testing.assert_allclose(
            np.concatenate(out), minilm.shared_model().embed(texts), atol=1e-5
        )
        nodes.extend(["n2", "n3", "n4"])
        await pool.embed("minilm", texts * 4, 1e12)  # 96 texts: two chunks in parallel
        assert sorted(pool.members) == ["n1", "n2", "n3"]  # one per node, max_embedders 3
        assert sum(e._embedder.texts > 0 for e in made) >= 2
        nodes.remove("n2")
        await pool.refresh()
        assert sorted(pool.members) == ["n1", "n3", "n4"]

    asyncio.run(scenario())
