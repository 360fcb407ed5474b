"""`shardvec export` then `shardvec import` into a new name keeps every field of every row:
id, vector (exactly: float32 written and read back), metadata (typed, lists, unicode, none) and
document (unicode, absent); `query --keywords` finds the imported documents.

The issue that asked for it: an export once wrote only {"id", "metadata"}, and after an
import a keyword query found nothing, silently. The export now writes the vectors by default
(F.jsonl beside F.npy) and the import finds them there (cluster/data_commands.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from tests.ray.test_cli import run_here as run

pytestmark = pytest.mark.ray

DIM = 12
ROWS = 700  # more than one export page and one import batch (given as 256 below)
WORDS = ["sleep", "coffee", "fund", "index", "interest", "garden", "river", "ledger"]


def rows(rng: np.random.Generator) -> tuple[list[str], np.ndarray, list, list]:
    ids = [f"doc-{i:04d}" for i in range(ROWS)]
    vecs = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    metas: list[dict | None] = []
    docs: list[str | None] = []
    for i in range(ROWS):
        metas.append(None if i % 7 == 0 else {
            "i": i, "score": i / 3, "ok": i % 2 == 0, "tag": WORDS[i % len(WORDS)],
            "tags": [WORDS[i % 3], "été"],
        })
        docs.append(None if i % 5 == 0 else
                    f"row {i}: {WORDS[i % len(WORDS)]} and {WORDS[(i * 3) % len(WORDS)]}, "
                    f"ünïcode ✓ {i * 7}")
    return ids, vecs, metas, docs


def test_export_import_round_trip_keeps_every_field(
    cluster: ShardvecCluster, client: Client, name: str, tmp_path: Path
) -> None:
    ids, vecs, metas, docs = rows(np.random.default_rng(27))
    src = client.create_collection(name, DIM, "euclidean", shards=2)
    src.upsert(ids, vecs, metas, documents=docs, batch_size=300)
    out = tmp_path / "export.jsonl"

    r = run(cluster, "export", name, "--out", str(out), "--page-size", "200")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "export.npy").is_file()  # the vectors by default, beside the rows
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == ROWS
    assert sum("document" in x for x in lines) == sum(d is not None for d in docs)

    copy = f"{name}-copy"
    r = run(cluster, "create", copy, "--dim", str(DIM), "--metric", "euclidean",
            "--shards", "3")
    assert r.returncode == 0, r.stderr
    r = run(cluster, "import", copy, "--in", str(out), "--batch", "256")
    assert r.returncode == 0, r.stderr
    assert f"imported {ROWS} rows into {copy}" in r.stdout

    dst = client.get_collection(copy)
    assert dst.count() == src.count() == ROWS
    before = src.get(ids, include_vectors=True, include_documents=True)
    after = dst.get(ids, include_vectors=True, include_documents=True)
    assert [x.id for x in after] == [x.id for x in before] == ids
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        assert b.metadata == a.metadata, ids[i]
        assert (b.metadata or None) == metas[i], ids[i]  # as first written
        assert b.document == a.document == docs[i], ids[i]
        assert b.vector is not None and a.vector is not None
        np.testing.assert_array_equal(b.vector, a.vector)  # float32 bit for bit
        np.testing.assert_array_equal(b.vector, vecs[i])

    r = run(cluster, "query", copy, "--keywords", "sleep", "-k", "5", "--json")
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout.splitlines()[0])
    assert len(hits) == 5
    assert all("sleep" in h["document"] for h in hits)
