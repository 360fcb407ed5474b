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
