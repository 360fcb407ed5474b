"""ListCollections shows each collection as Describe does: its true row count and its
replicas' states (it used to answer count 0 and no replica states for a collection holding
thousands of rows)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext
from tests.inproc import LocalControls


def test_listed_collections_carry_their_counts_and_replica_states(tmp_path: Path) -> None:
    from shardvec.coordinator.runtime import CoordinatorRuntime

    async def main() -> None:
        runtime = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        await runtime.restore()
        svc = VectorSearchService(
            runtime, CoordinatorSettings(data_dir=str(tmp_path)), MicroBatcher(window_s=0.0)
        )
        a = await runtime.create(CollectionSpec("a", IndexSettings(dim=4), shards=2, replicas=2))
        await runtime.create(CollectionSpec("b", IndexSettings(dim=4)))
        vecs = np.random.default_rng(1).standard_normal((300, 4)).astype(np.float32)
        await a.upsert([f"r{i}" for i in range(300)], vecs, [], time.monotonic() + 30)
        listed = await svc.ListCollections(pb.ListCollectionsRequest(), FakeContext())
        by_name = {c.name: c for c in listed.collections}
        assert by_name["a"].count == 300 and by_name["b"].count == 0
        assert len(by_name["a"].replica_states) == 4
        assert {r.state for r in by_name["a"].replica_states} == {"live"}
        assert by_name["a"].layout_version == 1
        await runtime.shutdown()

    asyncio.run(main())


def test_a_collection_that_cannot_be_counted_now_lists_no_count_not_zero(tmp_path: Path) -> None:
    """A shard with no live replica: the collection is listed and described with its replica
    states and no count (None in the client), never a count of 0 for rows it holds."""
    from shardvec.contract.convert_public import collection_info_to_dict
    from shardvec.coordinator.replicas.replica_set import ReplicaState
    from shardvec.coordinator.runtime import CoordinatorRuntime

    async def main() -> None:
        runtime = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        await runtime.restore()
        svc = VectorSearchService(
            runtime, CoordinatorSettings(data_dir=str(tmp_path)), MicroBatcher(window_s=0.0)
        )
        created = await svc.CreateCollection(
            pb.CreateCollectionRequest(name="a", dimension=4, shards=2), FakeContext()
        )
        assert collection_info_to_dict(created)["count"] == 0  # a new collection: 0, known
        a = runtime.collections["a"]
        vecs = np.random.default_rng(2).standard_normal((50, 4)).astype(np.float32)
        await a.upsert([f"r{i}" for i in range(50)], vecs, [], time.monotonic() + 30)
        a.shard_sets[1].replicas[0].state = ReplicaState.DEAD  # no live replica in shard 1
        listed = await svc.ListCollections(pb.ListCollectionsRequest(), FakeContext())
        described = await svc.DescribeCollection(
            pb.DescribeCollectionRequest(name="a"), FakeContext()
        )
        for info in (listed.collections[0], described):
            shown = collection_info_to_dict(info)
            assert shown["count"] is None
            assert [r["state"] for r in shown["replica_states"]] == ["live", "dead"]
        a.shard_sets[1].replicas[0].state = ReplicaState.LIVE
        listed = await svc.ListCollections(pb.ListCollectionsRequest(), FakeContext())
        assert collection_info_to_dict(listed.collections[0])["count"] == 50
        await runtime.shutdown()

    asyncio.run(main())
