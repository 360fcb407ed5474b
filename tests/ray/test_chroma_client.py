"""The Chroma-shaped client and AsyncClient against a real cluster (the tier's embedded Ray).

First the example of the vector-database chapter this project started from, unchanged but for
the import and the address (texts embedded by the built-in "minilm"); then Chroma's documented
calls on a small 3-d collection. Skipped when the text extra or the weights are missing."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from shardvec import AsyncClient
from shardvec import chroma as chromadb
from shardvec.cluster.bringup import ShardvecCluster
from shardvec.contract.errors import FailedPrecondition, InvalidArgument, NotFound
from shardvec.coordinator.embedding import minilm

pytestmark = pytest.mark.ray


@pytest.fixture()
def chroma_client(cluster: ShardvecCluster) -> chromadb.Client:
    host, port = cluster.address.rsplit(":", 1)
    return chromadb.HttpClient(host=host, port=int(port), timeout=120)


def test_the_chapter_example(chroma_client: chromadb.Client, name: str) -> None:
    try:
        minilm.model_dir()
    except FailedPrecondition as exc:
        pytest.skip(f"text support not installed: {exc.message}")
    col = chroma_client.get_or_create_collection(name)
    col.add(
        ids=["d1", "d2", "d3"],
        documents=["dogs are loyal pets", "tax forms are due in april", "kafka consumer lag"],
        metadatas=[{"src": "pets.md"}, {"src": "tax.md"}, {"src": "ops.md"}],
    )
    res = col.query(query_texts=["faithful companion animals"], n_results=2)
    assert res["ids"][0][0] == "d1"
    assert res["documents"][0][0] == "dogs are loyal pets"
    assert res["metadatas"][0][0] == {"src": "pets.md"}
    d = res["distances"][0]
    assert len(d) == 2 and 0.0 <= d[0] <= d[1] <= 4.0  # squared l2 of unit vectors
    assert res["embeddings"] is None
    assert chroma_client.get_or_create_collection(name).count() == 3  # the same collection
    assert col.metadata["hnsw:space"] == "l2"  # Chroma's default space
    # an update of a document embeds it again
    col.update(ids=["d2"], documents=["cats purr on the sofa"])
    again = col.query(query_texts=["pet animals at home"], n_results=2, include=["documents"])
    assert set(again["ids"][0]) == {"d1", "d2"} and again["distances"] is None
    # the native client needs no dim with an embedding either
    assert chroma_client.native.create_collection(name + "_n", embedding="minilm").dim == 384


def test_a_client_side_embedding_function_gives_the_dimension(
    chroma_client: chromadb.Client, name: str
) -> None:
    def embed(texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), 1.0, 0.0, 0.0] for t in texts]

    col = chroma_client.create_collection(
        name, metadata={"hnsw:space": "ip"}, embedding_function=embed
    )
    assert (col.native.dim, col.native.embedding) == (4, "")
    col.add(ids=["s", "l"], documents=["ab", "abcdef"])
    res = col.query(query_texts=["x"], n_results=2, include=["distances"])
    assert res["ids"] == [["l", "s"]] and res["distances"] == [[-6.0, -2.0]]  # 1 - dot


def test_chromas_documented_calls(chroma_client: chromadb.Client, name: str) -> None:
    col = chroma_client.create_collection(name, metadata={"hnsw:space": "cosine"}, dim=3)
    assert col.metadata["hnsw:space"] == "cosine"
    col.add(
        ids=["a", "b", "c", "d"],
        embeddings=[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]],
        metadatas=[{"g": "x", "n": 1}, {"g": "y", "n": 2}, {"g": "x", "n": 3}, {"g": "y", "n": 4}],
        documents=["apple pie", "banana split", "cherry tart", "apple crumble"],
    )
    assert col.count() == 4
    got = col.get(ids=["c", "a"], include=["metadatas", "documents", "embeddings"])
    assert got["ids"] == ["c", "a"] and got["documents"] == ["cherry tart", "apple pie"]
    assert np.allclose(got["embeddings"][1], [1, 0, 0])
    assert set(col.get(where={"n": {"$gte": 3}})["ids"]) == {"c", "d"}
    assert col.get(ids=["a", "b"], where={"g": "y"})["ids"] == ["b"]
    assert len(col.get(limit=2, offset=1)["ids"]) == 2
    peek = col.peek(limit=2)
    assert len(peek["ids"]) == 2 and peek["embeddings"] is not None

    res = col.query(query_embeddings=[[1, 0, 0], [0, 1, 0]], n_results=2)
    assert [r[0] for r in res["ids"]] == ["a", "b"]
    assert res["distances"][0][0] == pytest.approx(0.0, abs=1e-5)  # 1 - cosine
    assert res["distances"][0][1] == pytest.approx(1 - 1 / np.sqrt(2), abs=1e-4)
    res = col.query(query_embeddings=[1, 0, 0], n_results=3, where={"g": "y"})
    assert res["ids"] == [["d", "b"]]
    res = col.query(
        query_embeddings=[[1, 0, 0]], n_results=3, where_document={"$contains": "apple"}
    )
    assert res["ids"] == [["a", "d"]]

    col.update(ids=["a", "zz"], metadatas=[{"n": 10}, {"n": 11}])  # zz: skipped, as Chroma
    col.upsert(ids=["b", "e"], embeddings=[[0, 1, 1], [0, 0.5, 0.5]], metadatas=[{"g": "z"}, {}])
    got = col.get(ids=["a", "b", "e", "zz"])
    assert got["ids"] == ["a", "b", "e"]
    assert got["metadatas"] == [{"g": "x", "n": 10}, {"g": "z", "n": 2}, None]
    assert got["documents"] == ["apple pie", "banana split", None]
    col.add(ids=["a"], embeddings=[[0, 0, 1]], documents=["not written"])  # a is stored
    assert col.get(ids=["a"])["documents"] == ["apple pie"]

    col.delete(where={"g": "x"})
    assert sorted(col.get()["ids"]) == ["b", "d", "e"]
    col.delete(where_document={"$contains": "crumble"})
    col.delete(ids=["e"])
    assert col.get()["ids"] == ["b"]

    with pytest.raises(InvalidArgument, match="cannot rename"):
        col.modify(name=name + "_new")
    with pytest.raises(InvalidArgument, match="fixed at creation"):
        col.modify(metadata={"hnsw:space": "l2"})
    col.modify(metadata={"hnsw:space": "cosine"})  # unchanged: fine
    assert name in [c.name for c in chroma_client.list_collections()]
    chroma_client.delete_collection(name)
    with pytest.raises(NotFound):
        chroma_client.get_collection(name)


def test_async_client(cluster: ShardvecCluster, name: str) -> None:
    async def run() -> None:
        async with AsyncClient(cluster.address, timeout=120) as client:
            col = await client.create_collection(name, 2, metric="euclidean")
            assert await col.upsert(["p", "q"], [[0, 0], [3, 4]], [{"k": 1}, {"k": 2}]) == 2
            counts = await asyncio.gather(col.count(), col.count(where={"k": 2}))
            assert list(counts) == [2, 1]
            hits = await col.search([[3, 4]], k=2)
            assert [h.id for h in hits[0]] == ["q", "p"]
            assert hits[0][1].score == pytest.approx(5.0)
            assert (await client.describe(name))["dim"] == 2
            await client.drop_collection(name)
            assert name not in [c["name"] for c in await client.list_collections()]

    asyncio.run(run())
