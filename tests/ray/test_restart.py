"""`shardvec up` restarted on the same data directory serves the same collections and results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shardvec.cluster.client import Client
from shardvec.shard.node_lock import default_lock_path
from tests.procs import ServerProcess, free_port
from tests.waits import until

pytestmark = pytest.mark.ray


def test_restart_serves_same_collections_and_results(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = np.random.default_rng(4)
    vecs = rng.standard_normal((1500, 32)).astype(np.float32)
    queries = rng.standard_normal((20, 32)).astype(np.float32)
    port = free_port()
    server = ServerProcess(data, port)
    try:
        with Client(server.address) as client:
            col = client.create_collection("keep", dim=32, metric="euclidean", shards=3,
                                           replicas=2)
            col.upsert([f"v{i}" for i in range(1500)], vecs, [{"i": i} for i in range(1500)])
            col.delete([f"v{i}" for i in range(0, 1500, 10)])
            client.create_collection("other", dim=4, metric="dot")
            text = client.create_collection("texts", dim=0, embedding="minilm")
            text.upsert_documents(["d1", "d2"], ["dogs are loyal pets", "tax on savings"])
            before = col.search_ids(queries, k=10)
            before_exact = col.search_ids(queries, k=10, exact=True)
            before_count = col.count(where={"i": {"$lt": 700}})
            nodes = {r["node_id"] for r in client.describe("keep")["replica_states"]}
            assert nodes and all(default_lock_path(n).exists() for n in nodes)
    finally:
        assert server.stop() == 0
    # the embedded Ray's nodes are gone for good, and so are their search-lock files
    assert not any(default_lock_path(n).exists() for n in nodes)
    server = ServerProcess(data, port)
    try:
        with Client(server.address) as client:
            names = sorted(c["name"] for c in client.list_collections())
            assert names == ["keep", "other", "texts"]
            # The embedder was warm before the server said it served: the first text query
            # after a restart does not wait for the model to load.
            until(lambda: "embedder minilm warm in" in server.log.read_text(), 30, "warm log line")
            log = server.log.read_text()
            assert log.index("embedder minilm warm in") < log.index("coordinator serving on")
            hit = client.get_collection("texts").search_texts("faithful companion animals", k=1)
            assert hit[0][0].id == "d1" and hit[0][0].document == "dogs are loyal pets"
            col = client.get_collection("keep")
            assert col.metric == "euclidean" and col.dim == 32
            assert col.count() == 1350
            assert col.count(where={"i": {"$lt": 700}}) == before_count
            after = col.search_ids(queries, k=10)
            assert after[0] == before[0]
            np.testing.assert_allclose(np.array(after[1]), np.array(before[1]), rtol=1e-5)
            assert col.search_ids(queries, k=10, exact=True)[0] == before_exact[0]
            # writes carry on after the restart with fresh sequence numbers
            col.upsert(["new"], vecs[:1])
            assert col.count() == 1351
    finally:
        assert server.stop() == 0
