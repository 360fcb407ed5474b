"""Documents and Update on a real cluster (Ray actors, gRPC, SQLite): an acknowledged update
survives kill -9 of the replica that holds it and reaches a replica that was down when it was
made; `shardvec load --skip-invalid` loads the valid rows past an 80 KiB metadata row."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from tests.ray.test_cli import run_here as run

pytestmark = pytest.mark.ray


def test_update_survives_kill_9_and_reaches_a_replica_that_was_down(
    client: Client, name: str
) -> None:
    rng = np.random.default_rng(21)
    col = client.create_collection(name, dim=8, shards=1, replicas=2)
    ids = [f"d{i}" for i in range(200)]
    vecs = rng.standard_normal((200, 8)).astype(np.float32)
    col.upsert(ids, vecs, [{"i": i} for i in range(200)], documents=[f"text {i}" for i in ids])
    reps = client.wait_live(name, level=True)
    down, other = reps[1], reps[0]
    os.kill(int(down["pid"]), signal.SIGKILL)
    time.sleep(0.5)
    # made while replica 1 is down (or restarting): only replica 0 acknowledges it
    got = col.update(ids[:50], [{"tag": "u"}] * 50, [f"updated kafka {i}" for i in ids[:50]])
    assert got == {"updated": 50, "missing_ids": [], "inserted": 0}
    assert col.count({"tag": "u"}) == 50  # visible as soon as acknowledged
    assert col.count(where_document={"$contains": "updated kafka"}) == 50
    got_rows = col.get(where={"tag": "u"}, where_document={"$contains": "kafka"}, limit=100,
                       include_documents=True)  # Get by filter, through the client
    assert sorted(r.id for r in got_rows) == sorted(ids[:50])
    assert all(r.document == f"updated kafka {r.id}" for r in got_rows)
    paged = list(col.scroll(where_document={"$contains": "updated"}, page_size=7,
                            include_documents=True))
    assert sorted(r.id for r in paged) == sorted(ids[:50])
    client.wait_live(name, level=True)  # replica 1 back and caught up
    os.kill(int(other["pid"]), signal.SIGKILL)  # now the one that took the update directly
    deadline = time.monotonic() + 90
    after = client.wait_live(name, level=True)
    while other["pid"] in {r["pid"] for r in after} and time.monotonic() < deadline:
        time.sleep(0.5)  # the kill not yet noticed: the old process is still listed live
        after = client.wait_live(name, level=True)
    assert {r["pid"] for r in after}.isdisjoint({down["pid"], other["pid"]})
    for _ in range(4):  # reads alternate between the replicas
        recs = col.get(ids[:60], include_vectors=True, include_documents=True)
        assert [r.metadata for r in recs] == [
            {"i": i, "tag": "u"} if i < 50 else {"i": i} for i in range(60)
        ]
        assert [r.document for r in recs] == [
            f"updated kafka {ids[i]}" if i < 50 else f"text {ids[i]}" for i in range(60)
        ]
        np.testing.assert_array_equal(np.stack([r.vector for r in recs]), vecs[:60])
        hits = col.search(
            vecs[:1], k=5, where_document={"$contains": "updated"}, include_documents=True
        )
        assert hits[0][0].id == ids[0] and hits[0][0].document == f"updated kafka {ids[0]}"
        assert col.count({"tag": "u"}, where_document={"$not_contains": "kafka"}) == 0
    client.drop_collection(name)


def test_load_skip_invalid_reports_and_loads_the_rest(
    cluster: ShardvecCluster, name: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(4)
    np.save(tmp_path / "v.npy", rng.standard_normal((700, 8)).astype(np.float32))
    with (tmp_path / "m.jsonl").open("w") as f:
        for i in range(700):
            row: dict[str, object] = {"key": f"k{i}", "document": f"doc {i}"}
            if i == 666:
                row["blob"] = "x" * 80_000  # 80 KiB of metadata: past the 64 KiB limit
            f.write(json.dumps(row) + "\n")
    assert run(cluster, "create", name, "--dim", "8", "--shards", "2").returncode == 0
    args = ["load", name, "--vectors", str(tmp_path / "v.npy"), "--metadata",
            str(tmp_path / "m.jsonl"), "--id-field", "key", "--batch", "256"]  # fmt: skip
    r = run(cluster, *args)
    assert r.returncode == 1
    assert "rejected row 666 (id 'k666'): metadata_json[154]" in r.stderr, r.stderr
    assert "the limit is 65536" in r.stderr
    r = run(cluster, *args, "--skip-invalid")
    assert r.returncode == 0, r.stderr
    assert "loaded 699 vectors" in r.stdout and "skipped 1 invalid rows" in r.stdout
    assert "rejected row 666 (id 'k666')" in r.stderr
    with Client(cluster.address) as c:
        col = c.get_collection(name)
        assert col.count() == 699
        recs = col.get(["k665", "k666", "k667"], include_documents=True)
        assert [(r.id, r.document, r.metadata) for r in recs] == [
            ("k665", "doc 665", {"key": "k665"}),
            ("k667", "doc 667", {"key": "k667"}),
        ]
        c.drop_collection(name)
