"""On a collection with embedding="minilm", every write path leaves each row with the vector of
its own document: the native upsert_documents, the Chroma-shaped add, upsert and update, the
native update, `shardvec import` (with the export's vectors, and without them), and the Ray
Data sink (a `document` column and no vectors, which the sink could not write before). After
each write the stored vector is compared with the document embedded here by the same model.

A vector given by the caller beside its document (the native `upsert(ids, vectors,
documents=)`, Chroma's `embeddings=`) is kept as given, as Chroma keeps it; that path is the
caller's choice and is left out. Skipped when the text extra or the weights are not
installed (`make text`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from shardvec import chroma as chromadb
from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client, Collection
from shardvec.contract.errors import FailedPrecondition
from shardvec.coordinator.embedding import minilm
from tests.ray.test_cli import run_here as run

pytestmark = pytest.mark.ray

TOPICS = ["index funds track the market", "sleep hygiene before bed", "sourdough starter care",
          "compound interest over decades", "river kayaking safety", "garden soil and compost"]


@pytest.fixture(scope="module", autouse=True)
def _model() -> None:
    try:
        minilm.model_dir()
    except FailedPrecondition as exc:
        pytest.skip(f"text support not installed: {exc.message}")


def docs(prefix: str, n: int, shift: int = 0) -> tuple[list[str], list[str]]:
    ids = [f"{prefix}{i:03d}" for i in range(n)]
    texts = [f"{TOPICS[(i + shift) % len(TOPICS)]}: note {i} of {prefix}" for i in range(n)]
    return ids, texts


def assert_vectors_are_their_documents(col: Collection, ids: Sequence[str]) -> None:
    got = col.get(list(ids), include_vectors=True, include_documents=True)
    assert [r.id for r in got] == list(ids)
    texts = [r.document for r in got]
    assert all(texts), "a row lost its document"
    want = minilm.shared_model().embed([str(t) for t in texts])
    vecs = np.stack([np.asarray(r.vector, dtype=np.float32) for r in got])
    np.testing.assert_allclose(vecs, want, atol=1e-4)


def test_every_write_path_keeps_a_rows_vector_its_documents(
    cluster: ShardvecCluster, client: Client, name: str, tmp_path: Path
) -> None:
    col = client.create_collection(name, dim=0, shards=2, embedding="minilm")

    ids, texts = docs("u", 40)  # upsert_documents: the cluster embeds
    col.upsert_documents(ids, texts, [{"i": i} for i in range(40)], batch_size=16)
    assert_vectors_are_their_documents(col, ids)

    ids2, texts2 = docs("u", 20, shift=3)  # update: new documents, embedded again
    col.update(ids2, documents=texts2)
    assert_vectors_are_their_documents(col, ids)

    host, port = cluster.address.rsplit(":", 1)
    ccol = chromadb.HttpClient(host=host, port=int(port), timeout=120).get_collection(name)
    cids, ctexts = docs("c", 12)
    ccol.add(ids=cids, documents=ctexts)  # Chroma's add, upsert (new and stored), update
    ccol.upsert(ids=[*cids[:6], "c100"], documents=[*docs("c", 6, shift=2)[1], "a new one"])
    ccol.update(ids=cids[6:], documents=docs("c", 6, shift=4)[1])
    assert_vectors_are_their_documents(col, [*cids, "c100"])

    out = tmp_path / "text.jsonl"  # export, then import with the vectors and without them
    assert run(cluster, "export", name, "--out", str(out)).returncode == 0
    bare = tmp_path / "bare.jsonl"
    assert run(cluster, "export", name, "--out", str(bare), "--no-vectors").returncode == 0
    assert not bare.with_suffix(".npy").exists()
    for target, path in ((f"{name}-imp", out), (f"{name}-emb", bare)):
        client.create_collection(target, dim=0, shards=3, embedding="minilm")
        r = run(cluster, "import", target, "--in", str(path), "--batch", "32")
        assert r.returncode == 0, r.stderr
        every = [json.loads(x)["id"] for x in path.read_text(encoding="utf-8").splitlines()]
        assert client.get_collection(target).count() == len(every) == col.count()
        assert_vectors_are_their_documents(client.get_collection(target), every)

    ray_data = pytest.importorskip("ray.data", reason="Ray Data needs the data extra")
    from shardvec.cluster.ray_data import write_dataset

    rids, rtexts = docs("r", 30, shift=1)  # Ray Data: documents and no vector column
    ds = ray_data.from_items(
        [{"id": i, "document": t, "metadata_json": json.dumps({"src": "ray"})}
         for i, t in zip(rids, rtexts, strict=True)],
        override_num_blocks=3,
    )
    assert write_dataset(ds, cluster.address, name, concurrency=2, batch_size=8) == 30
    assert_vectors_are_their_documents(col, rids)
    assert {r.metadata["src"] for r in col.get(rids, include_vectors=False)} == {"ray"}
