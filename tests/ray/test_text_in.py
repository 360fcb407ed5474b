"""Text in end to end: real embedded Ray, embedder actors, shard actors, gRPC on loopback.

A collection created with embedding "minilm" takes documents without vectors and query texts;
the texts are embedded by the pool of embedder actors. Also: the client's own
embedding_function, the CLI's `create --embedding` and `query --text`, and the statuses of
bad input over the wire. Skipped when the text extra or the weights are not installed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from shardvec.contract.errors import FailedPrecondition, InvalidArgument, ShardvecError
from shardvec.coordinator.embedding import minilm
from shardvec.v1 import vector_search_pb2 as pb

pytestmark = pytest.mark.ray
SAMPLE = Path(__file__).resolve().parents[2] / "cluster" / "sample"


@pytest.fixture(scope="module", autouse=True)
def _model() -> None:
    try:
        minilm.model_dir()
    except FailedPrecondition as exc:
        pytest.skip(f"text support not installed: {exc.message}")


def _sample(n: int) -> tuple[list[str], list[dict[str, object]], np.ndarray]:
    with (SAMPLE / "metadata.jsonl").open(encoding="utf-8") as f:
        metas = [json.loads(line) for line in f][:n]
    vectors = np.load(SAMPLE / "vectors.npy")[:n].astype(np.float32)
    return [str(m["id"]) for m in metas], metas, vectors


def test_documents_in_texts_out_through_the_embedder_actors(
    client: Client, name: str, tmp_path: Path
) -> None:
    ids, metas, stored = _sample(200)
    col = client.create_collection(name, dim=0, shards=2, embedding="minilm")
    assert (col.dim, col.embedding) == (384, "minilm")
    assert client.describe(name)["embedding"] == "minilm"
    texts = [str(m["text"]) for m in metas]
    assert col.upsert_documents(ids, texts, metas, batch_size=100) == 200
    assert col.count() == 200
    # What the actors made is what sentence-transformers made for the sample.
    got = col.get(ids[:50])
    vecs = np.stack([r.vector for r in got])
    unit = stored[:50] / np.linalg.norm(stored[:50], axis=1, keepdims=True)
    assert float(np.min((vecs * unit).sum(axis=1))) >= 0.99
    # Each text finds its own row first, through concurrent single-text searches too.
    hits = col.search_texts(texts[:20], k=3)
    assert [h[0].id for h in hits] == ids[:20]
    assert hits[0][0].metadata == {k: v for k, v in metas[0].items()}
    # Text in, text out: hits and rows carry their documents unless told not to.
    assert [h[0].document for h in hits] == texts[:20]
    assert [r.document for r in got[:3]] == texts[:3]
    assert col.search_texts(texts[:1], k=1, include_documents=False)[0][0].document is None
    one = col.search_texts(texts[5], k=1, where={"year": metas[5]["year"]})
    assert one[0][0].id == ids[5]
    # A snapshot keeps the embedding: the restored collection takes texts too.
    client.create_snapshot(name, tmp_path / "s.tar")
    restored = client.restore_snapshot(tmp_path / "s.tar", name + "_r")
    assert client.describe(name + "_r")["embedding"] == "minilm"
    assert client.get_collection(restored.name).search_texts(texts[7], k=1)[0][0].id == ids[7]


def test_a_client_side_embedding_function(client: Client, name: str) -> None:
    model = minilm.shared_model()
    col = client.create_collection(name, dim=384, embedding_function=model.embed)
    assert col.embedding == ""  # the cluster embeds nothing for this one
    docs = ["grow tomatoes on a balcony", "a compiler for a tiny language", "tax forms helper"]
    col.upsert_documents(["a", "b", "c"], docs)
    assert col.search_texts("write a small programming language", k=1)[0][0].id == "b"
    with pytest.raises(FailedPrecondition, match="has no embedding function"):
        client.get_collection(name).search_texts("no function here", k=1)
    wrong = client.get_collection(name, embedding_function=lambda t: [[0.0]] * len(t))
    with pytest.raises(InvalidArgument, match="returned shape"):
        wrong.search_texts("x")


def test_bad_text_input_over_the_wire(client: Client, name: str) -> None:
    plain = client.create_collection(name, dim=384)
    with pytest.raises(FailedPrecondition, match=f"collection '{name}' has no embedding"):
        plain.search_texts("hello", k=1)
    with pytest.raises(FailedPrecondition, match="upsert without vectors"):
        plain.upsert_documents(["a"], ["hello"])
    col = client.create_collection(name + "_t", dim=0, embedding="minilm")
    with pytest.raises(InvalidArgument, match=r"query_texts\[0\]: the text is empty"):
        col.search_texts([""], k=1)
    req = pb.SearchRequest(collection=col.name, k=1, query_texts=["hi"])
    req.queries.dim, req.queries.packed = 384, np.ones(384, "<f4").tobytes()
    with pytest.raises(InvalidArgument, match="give exactly one of queries, query_texts"):
        client.call("Search", req)
    with pytest.raises(ShardvecError, match=r"documents\[1\]: the text is empty"):
        col.upsert_documents(["a", "b"], ["fine", " "])
    assert col.count() == 0 and plain.count() == 0


def test_the_cli_creates_with_an_embedding_and_queries_by_text(
    cluster: ShardvecCluster, client: Client, name: str
) -> None:
    def cli(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "shardvec.cluster", *args],
            env={**os.environ, "SHARDVEC_SERVER": cluster.address},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "created" in cli("create", name, "--embedding", "minilm")
    client.get_collection(name).upsert_documents(
        ["x", "y"], ["solar panel monitoring", "sourdough bread timer"],
        [{"text": "solar panel monitoring"}, {"text": "sourdough bread timer"}],
    )  # fmt: skip
    out = cli("query", name, "--text", "baking bread", "-k", "1")
    assert "'baking bread'" in out and " y " in out and "sourdough" in out
    assert "embedding=minilm" in cli("status")


def test_an_embedder_killed_with_sigkill_is_replaced_and_no_call_fails(
    cluster: ShardvecCluster, client: Client, name: str
) -> None:
    """kill -9 of the embedder actor's process: Ray restarts it (and retries the call cut
    short), so text searches during and after the kill all succeed."""
    import ray

    col = client.create_collection(name, dim=0, embedding="minilm")
    col.upsert_documents(["a", "b"], ["weather forecast api", "chess engine in rust"])
    before = ray.get(cluster.coordinator.embedders.remote())
    assert len(before) == 1 and before[0]["texts"] > 0  # one node: one embedder
    pid = int(before[0]["pid"])
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    for _ in range(5):
        assert col.search_texts("play chess", k=1)[0][0].id == "b"
    after = ray.get(cluster.coordinator.embedders.remote())
    assert len(after) == 1 and int(after[0]["pid"]) != pid
