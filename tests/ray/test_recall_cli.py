"""`shardvec recall` against a live collection: passes when healthy, fails when ef is too low."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from tests.ray.test_cli import run_here as run

pytestmark = pytest.mark.ray


def test_recall_passes_when_healthy_and_fails_with_a_tiny_ef(
    cluster: ShardvecCluster, client: Client, name: str, tmp_path: Path
) -> None:
    # 3000 x 32 random vectors in one shard: hnswlib at ef = k = 10 recalls about 0.75 of the
    # exact top-10, at the default ef (64) about 0.99.
    rng = np.random.default_rng(21)
    base = rng.standard_normal((3000, 32)).astype(np.float32)
    queries = rng.standard_normal((100, 32)).astype(np.float32)
    col = client.create_collection(name, 32, "euclidean", shards=1)
    col.upsert([str(i) for i in range(3000)], base, [{"even": i % 2 == 0} for i in range(3000)],
               batch_size=1000)
    np.save(tmp_path / "q.npy", queries)

    r = run(cluster, "recall", name, "--queries", str(tmp_path / "q.npy"), "-k", "10",
            "--min", "0.95")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("recall@10: ")
    assert "over 100 queries (against exact search)" in lines[0]
    assert float(lines[0].split()[1]) >= 0.95
    assert lines[1] == "worst 5 queries:" and all(x.startswith("  query ") for x in lines[2:7])
    assert lines[7].startswith("latency ms (approximate, one query per request): p50 ")

    r = run(cluster, "recall", name, "--queries", str(tmp_path / "q.npy"), "--ef", "1",
            "--min", "0.99", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["recall"] < 0.9 and report["ef"] == 10  # ef below k searches at k
    assert len(report["worst"]) == 5 and report["worst"][0]["recall"] <= report["recall"]
    assert set(report["latency_ms"]) == {"p50", "p95", "p99", "mean"}
    assert "is below --min 0.99" in r.stderr

    # labelled answers (brute force top-10 with a filter) instead of exact search
    even = np.arange(0, 3000, 2)
    dist = ((queries[:, None, :] - base[None, even, :]) ** 2).sum(axis=2)
    top = even[np.argsort(dist, axis=1)[:, :10]]
    with (tmp_path / "expected.jsonl").open("w") as f:
        for q, row in enumerate(top):
            f.write(json.dumps({"query": q, "ids": [str(i) for i in row]}) + "\n")
    r = run(cluster, "recall", name, "--queries", str(tmp_path / "q.npy"), "--min", "0.95",
            "--where", '{"even": true}', "--expected", str(tmp_path / "expected.jsonl"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(against labelled answers)" in r.stdout
    client.drop_collection(name)
