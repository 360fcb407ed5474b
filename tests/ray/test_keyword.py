"""Keyword and hybrid search through the real cluster (Ray actors, gRPC on loopback): the
Python client, the CLI (`create --text-tokenizer`, `query --keywords`, `--fusion`, `status`)
and bad input over the wire with its status code, the server answering afterwards. The
ranking itself is checked without Ray (tests/unit/test_keyword_global.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from shardvec.contract.errors import InvalidArgument
from tests.ray.test_cli import run_here as run

pytestmark = pytest.mark.ray

WORDS = ["kafka", "postgres", "python", "rust", "json", "http"]


def test_keyword_and_hybrid_over_the_cluster(
    cluster: ShardvecCluster, client: Client, name: str, tmp_path: Path
) -> None:
    r = run(cluster, "create", name, "--dim", "8", "--shards", "2", "--replicas", "2",
            "--text-tokenizer", "porter")  # fmt: skip
    assert r.returncode == 0, r.stderr
    col = client.get_collection(name)
    vectors = np.random.default_rng(18).standard_normal((200, 8)).astype(np.float32)
    docs = [f"row {i} on {WORDS[i % 6]} running" + (" zyzzyva" if i == 17 else "")
            for i in range(200)]  # fmt: skip
    col.upsert([f"r{i}" for i in range(200)], vectors, [{"i": i} for i in range(200)],
               documents=docs)  # fmt: skip
    hits = col.search_keywords(["zyzzyva", "runs kafka"], k=5, include_documents=True)
    assert [h.id for h in hits[0]] == ["r17"] and "zyzzyva" in (hits[0][0].document or "")
    assert len(hits[1]) == 5 and all("kafka" in (h.document or "") for h in hits[1])
    full = col.search_keywords("zyzzyva", k=1, include_vectors=True)[0][0]
    assert full.metadata == {"i": 17} and full.vector is not None
    np.testing.assert_allclose(full.vector, vectors[17])
    fused = col.search_keywords(["zyzzyva"], k=5, queries=vectors[3:4], fusion="weighted",
                                alpha=0.5)  # fmt: skip
    assert {"r3", "r17"} <= {h.id for h in fused[0]}
    assert client.describe(name)["text_tokenizer"] == "porter"
    status = run(cluster, "status")
    assert f"{name}: " in status.stdout and "text_tokenizer=porter" in status.stdout
    out = run(cluster, "query", name, "--keywords", "zyzzyva", "-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0])[0]["id"] == "r17"
    np.save(tmp_path / "q.npy", vectors[3:4])
    out = run(cluster, "query", name, "--vectors", str(tmp_path / "q.npy"), "--keywords",
              "zyzzyva", "--fusion", "rrf", "-k", "4")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert " r3 " in out.stdout and " r17 " in out.stdout
    # Bad input over the wire: the status maps back to InvalidArgument, the server answers on.
    with pytest.raises(InvalidArgument, match=r"text_query\[0\]: empty text query"):
        col.search_keywords([" "])
    with pytest.raises(InvalidArgument, match=r"alpha: must be in \[0, 1\]"):
        col.search_keywords(["x"], queries=vectors[:1], fusion="weighted", alpha=2.0)
    bad = run(cluster, "query", name, "--keywords", "x" * 5000)
    assert bad.returncode != 0 and "5000 bytes" in (bad.stderr + bad.stdout)
    assert [h.id for h in col.search_keywords('"zyzzyva" NEAR(x) OR *')[0]][:1] == ["r17"]
