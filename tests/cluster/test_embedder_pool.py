"""The embedder pool grows with the Ray cluster: one embedder actor per node, a node that
joins gets one, a node lost with kill (remove_node, not graceful) takes its embedder along,
and text searches keep working throughout (ray.cluster_utils.Cluster). The collection has
two replicas: a joining node gets replicas through auto-rebalance, so the node killed may
hold one, and reads go on only because its sibling is on another node."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from shardvec.cluster.bringup import ShardvecCluster, loopback_only
from shardvec.cluster.client import Client
from shardvec.contract.errors import FailedPrecondition
from shardvec.coordinator.embedding import minilm

pytestmark = pytest.mark.cluster


@pytest.fixture()
def two_nodes() -> Iterator[Any]:
    try:
        minilm.model_dir()
    except FailedPrecondition as exc:
        pytest.skip(f"text support not installed: {exc.message}")
    loopback_only()
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    try:
        yield c, worker
    finally:
        ray.shutdown()
        c.shutdown()


def _nodes(sv: ShardvecCluster) -> list[str]:
    return sorted(e["key"] for e in ray.get(sv.coordinator.embedders.remote()))


def _wait_nodes(sv: ShardvecCluster, col: Any, want: set[str], timeout: float = 90) -> None:
    """Until the pool holds one embedder for each node of `want` and no other, searching by
    text all the while. The whole set, not a count: while a node goes, the pool can hold the
    lost node's embedder (restarted elsewhere) and miss a live one whose call timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert col.search_texts("a weather api", k=1)[0][0].id == "w"
        if set(_nodes(sv)) == want:
            return
        time.sleep(0.25)
    raise AssertionError(f"pool has {_nodes(sv)}, wanted {sorted(want)}")


def test_the_pool_follows_the_nodes(two_nodes: Any, tmp_path: Path) -> None:
    c, worker = two_nodes
    # The pool re-reads the live nodes every second here (every 10 s by default): a joining
    # node's embedder comes within a second of the next text call, not up to ten.
    settings = {"data_dir": str(tmp_path / "data"), "port": 0, "embedder_refresh_s": 1.0}
    sv = ShardvecCluster(settings, ray_address=c.address)
    try:
        client = Client(sv.address, timeout=120)
        col = client.create_collection("texts", dim=0, replicas=2, embedding="minilm")
        col.upsert_documents(["w", "c"], ["weather forecast api client", "chess engine"])
        first = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(first) == 2
        _wait_nodes(sv, col, first)
        third = c.add_node(num_cpus=1)
        c.wait_for_nodes()
        _wait_nodes(sv, col, first | {third.node_id})  # refreshed within a second
        keep = {ray.get_runtime_context().get_node_id(), sv.coordinator_node_id()}
        lost = next(w for w in (worker, third) if w.node_id not in keep)
        c.remove_node(lost, allow_graceful=False)
        _wait_nodes(sv, col, (first | {third.node_id}) - {lost.node_id})
    finally:
        sv.stop()
