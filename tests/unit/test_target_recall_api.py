"""target_recall on the public API, in-process (no Ray): set at CreateCollection, changed by
SetCollectionOptions, persisted across a restart, shown by Describe with the tuned breadth
once there is one, and bad values refused as INVALID_ARGUMENT naming the field, with nothing
changed; and the Prometheus gauges per collection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shardvec.contract.convert_public import collection_info_to_dict
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.contract.types import TunedBreadth
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext
from tests.inproc import LocalControls


def _service(tmp_path: Path, runtime: CoordinatorRuntime) -> VectorSearchService:
    return VectorSearchService(
        runtime, CoordinatorSettings(data_dir=str(tmp_path)), MicroBatcher(window_s=0.0)
    )


def test_target_recall_is_set_changed_persisted_and_described(tmp_path: Path) -> None:
    async def main() -> None:
        runtime = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        await runtime.restore()
        svc = _service(tmp_path, runtime)
        ctx = FakeContext()
        created = await svc.CreateCollection(
            pb.CreateCollectionRequest(name="a", dimension=4, target_recall=0.9), ctx
        )
        assert created.target_recall == pytest.approx(0.9)
        await svc.CreateCollection(pb.CreateCollectionRequest(name="b", dimension=4), ctx)
        described = collection_info_to_dict(
            await svc.DescribeCollection(pb.DescribeCollectionRequest(name="b"), ctx)
        )
        assert described["target_recall"] == 0.95  # the default
        assert described["recall_estimate"] is None and described["search_ef"] == 0

        for bad in (0.0, -1.0, 1.5, float("nan")):
            with pytest.raises(InvalidArgument, match="target_recall"):
                await svc.SetCollectionOptions(
                    pb.SetCollectionOptionsRequest(name="a", target_recall=bad), ctx
                )
            if not bad:
                continue  # 0 at creation: the default
            with pytest.raises(InvalidArgument, match="target_recall"):
                await svc.CreateCollection(
                    pb.CreateCollectionRequest(name="c", dimension=4, target_recall=bad), ctx
                )
        assert runtime.get("a").spec.target_recall == 0.9 and "c" not in runtime.collections

        info = await svc.SetCollectionOptions(
            pb.SetCollectionOptionsRequest(name="a", target_recall=0.99), ctx
        )
        assert info.target_recall == pytest.approx(0.99)
        unchanged = await svc.SetCollectionOptions(pb.SetCollectionOptionsRequest(name="a"), ctx)
        assert unchanged.target_recall == pytest.approx(0.99)

        runtime.get("a").tuned = TunedBreadth(40, 1, 0.991, 264, 5000, 1, 0.99, 1.5e9)
        shown = collection_info_to_dict(
            await svc.DescribeCollection(pb.DescribeCollectionRequest(name="a"), ctx)
        )
        assert shown["recall_estimate"] == pytest.approx(0.991)
        assert (shown["search_ef"], shown["tuned_rows"], shown["recall_queries"]) == (40, 5000, 264)
        await runtime.shutdown()

        again = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        await again.restore()
        assert again.get("a").spec.target_recall == 0.99
        assert again.get("b").spec.target_recall == 0.95
        await again.shutdown()

    asyncio.run(main())


def test_the_gauges_show_the_target_the_measured_recall_and_the_breadth(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from shardvec.coordinator.metrics import CoordinatorMetrics

    async def main() -> None:
        runtime = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        await runtime.restore()
        await runtime.create(CollectionSpec("a", IndexSettings(dim=4), target_recall=0.9))
        await runtime.create(CollectionSpec("b", IndexSettings(dim=4)))
        runtime.get("a").tuned = TunedBreadth(40, 1, 0.931, 264, 5000, 1, 0.9, 1.5e9)
        metrics = CoordinatorMetrics()
        metrics.attach(runtime, asyncio.get_running_loop())
        text = (await asyncio.to_thread(generate_latest, metrics.registry)).decode()
        assert 'shardvec_recall_estimate{collection="a"} 0.931' in text
        assert 'shardvec_search_ef{collection="a"} 40.0' in text
        assert 'shardvec_recall_target{collection="a"} 0.9' in text
        assert 'shardvec_recall_target{collection="b"} 0.95' in text
        assert 'shardvec_search_ef{collection="b"}' not in text  # not tuned yet
        await runtime.shutdown()

    asyncio.run(main())
