"""Several Ray nodes (ray.cluster_utils.Cluster): placement, and a node lost mid-query."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from shardvec.cluster.bringup import ShardvecCluster, loopback_only
from shardvec.cluster.client import Client
from tests.waits import until

pytestmark = pytest.mark.cluster


@pytest.fixture()
def three_nodes() -> Iterator[Any]:
    loopback_only()
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    try:
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()


def test_replicas_spread_and_node_loss_fails_no_query(three_nodes: Any, tmp_path: Path) -> None:
    c, workers = three_nodes
    sv = ShardvecCluster({"data_dir": str(tmp_path / "data"), "port": 0}, ray_address=c.address)
    try:
        client = Client(sv.address, timeout=60)
        col = client.create_collection("spread", dim=16, shards=2, replicas=3)
        reps = client.wait_live("spread", 180)
        for s in (0, 1):
            nodes = {r["node_id"] for r in reps if r["shard"] == s}
            assert len(nodes) == 3, reps  # one replica of each shard on every node
        rng = np.random.default_rng(6)
        base = rng.standard_normal((3000, 16)).astype(np.float32)
        col.upsert([str(i) for i in range(3000)], base, [{"i": i} for i in range(3000)])
        queries = rng.standard_normal((8, 16)).astype(np.float32)
        before = col.search_ids(queries, k=10, exact=True)

        failures: list[BaseException] = []
        done = 0
        stop = threading.Event()

        def loop() -> None:
            nonlocal done
            with Client(sv.address, timeout=30) as rc:
                rcol = rc.get_collection("spread")
                while not stop.is_set():
                    try:
                        got = rcol.search_ids(queries, k=10, exact=True)
                        assert got[0] == before[0]
                        done += 1
                    except BaseException as exc:  # recorded, asserted below
                        failures.append(exc)

        t = threading.Thread(target=loop)
        t.start()
        try:
            until(lambda: done >= 3, what="reads under way")
            # lose a node that hosts replicas only: with every node on 127.0.0.1 the driver
            # may have attached to any raylet, and the coordinator runs beside the driver
            keep = {ray.get_runtime_context().get_node_id(), sv.coordinator_node_id()}
            lost = next(w for w in workers if w.node_id not in keep)
            c.remove_node(lost, allow_graceful=False)
            at_loss = done
            until(lambda: done >= at_loss + 3, what="reads after the node loss")
            # the lost node's replicas are noticed, re-created elsewhere and live again
            until(
                lambda: all(
                    r["node_id"] != lost.node_id and r["state"] == "live"
                    for r in client.describe("spread")["replica_states"]
                ),
                timeout=180, what="every replica off the lost node and live", poll=0.25,
            )
            after = client.wait_live("spread", 180)
            at_live = done
            until(lambda: done >= at_live + 3, what="reads once every replica is back")
        finally:
            stop.set()
            t.join(60)
        assert not failures, failures[:3]
        assert done > 5
        lost_id = lost.node_id
        assert all(r["node_id"] != lost_id for r in after), after
        # the replacements caught up and serve the same results
        assert col.search_ids(queries, k=10, exact=True)[0] == before[0]
        assert col.count() == 3000
        level = {
            s: {(r["count"], r["applied_seq"]) for r in after if r["shard"] == s} for s in (0, 1)
        }
        assert all(len(v) == 1 for v in level.values()), after
        client.close()
    finally:
        sv.stop()
