"""The recall tuner on a real cluster (embedded Ray, shard actors, gRPC): a collection created
with a target is tuned after its load, Describe and the client show the measured recall and
the breadth in force, and a new target set through SetCollectionOptions is tuned for. That a
restarted server keeps the tuned breadth (the registry) and does not tune it again is checked
on the restart of tests/cluster/test_kill_restarts.py, which restarts a server anyway."""

from __future__ import annotations

import numpy as np
import pytest

from shardvec.cluster.client import Client
from shardvec.contract.errors import InvalidArgument
from shardvec.coordinator.config import CoordinatorSettings
from tests.waits import until

pytestmark = pytest.mark.ray

DIM = 48
# How often the tuner looks at each collection (2 s), the default a server starts with.
TUNER_ROUND_S = CoordinatorSettings("-").recall_tuner_interval_s


def _points(rng: np.random.Generator, n: int) -> np.ndarray:
    centers = np.random.default_rng(7).standard_normal((20, DIM)).astype(np.float32) * 0.6
    return (centers[rng.integers(0, 20, n)] + rng.standard_normal((n, DIM))).astype(np.float32)


def test_a_loaded_collection_is_tuned_and_retuned_for_a_new_target(client: Client, name: str
                                                                   ) -> None:  # fmt: skip
    col = client.create_collection(
        name, dim=DIM, metric="euclidean", shards=2, m=6, ef_construction=20, target_recall=0.9
    )
    base = _points(np.random.default_rng(1), 3000)
    col.upsert([f"r{i}" for i in range(len(base))], base, batch_size=1000)
    assert client.describe(name)["target_recall"] == pytest.approx(0.9)

    def tuned_for(target: float) -> bool:
        info = client.describe(name)
        return info["recall_estimate"] is not None and info["tuned_rows"] == 3000 and (
            abs(info["target_recall"] - target) < 1e-9
        )

    until(lambda: tuned_for(0.9), timeout=120, what="the first tune")
    first = client.describe(name)
    assert first["recall_estimate"] >= 0.9 and first["search_ef"] >= 10
    assert first["recall_queries"] >= 100

    with pytest.raises(InvalidArgument, match="target_recall"):
        client.set_collection_options(name, target_recall=0.0)
    changed = client.set_collection_options(name, target_recall=0.97)
    assert changed["target_recall"] == pytest.approx(0.97)
    until(lambda: client.describe(name)["tuned_unix"] > first["tuned_unix"], timeout=120,
          what="the tune for the new target")  # fmt: skip
    second = client.describe(name)
    assert second["recall_estimate"] >= 0.97 and second["search_ef"] > first["search_ef"]
    client.drop_collection(name)
