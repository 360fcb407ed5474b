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
from shardvec.contract.errors import FailedPrecondition

from cluster.bringup import ShardvecCluster, loopback_only
from cluster.client import Client
from coordinator import minilm

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


def _wait_nodes(sv: ShardvecCluster, col: Any, want: int, timeout: float = 90) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert col.search_texts("a weather api", k=1)[0][0].id == "w"
        nodes = _nodes(sv)
        if len(nodes) == want:
            return nodes
        time.sleep(1.0)
    raise AssertionError(f"pool has {_nodes(sv)}, wanted {want} embedders")


def test_the_pool_follows_the_nodes(two_nodes: Any, tmp_path: Path) -> None:
    c, worker = two_nodes
    sv = ShardvecCluster({"data_dir": str(tmp_path / "data"), "port": 0}, ray_address=c.address)
    try:
        client = Client(sv.address, timeout=120)
        col = client.create_collection("texts", dim=0, replicas=2, embedding="minilm")
        col.upsert_documents(["w", "c"], ["weather forecast api client", "chess engine"])
        first = _wait_nodes(sv, col, 2)
        assert set(first) == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        third = c.add_node(num_cpus=1)
        c.wait_for_nodes()
        grown = _wait_nodes(sv, col, 3)  # refreshed within 10 s
        assert third.node_id in grown
        keep = {ray.get_runtime_context().get_node_id(), sv.coordinator_node_id()}
        lost = next(w for w in (worker, third) if w.node_id not in keep)
        c.remove_node(lost, allow_graceful=False)
        shrunk = _wait_nodes(sv, col, 2)
        assert lost.node_id not in shrunk
    finally:
        sv.stop()
