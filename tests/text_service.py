"""A public service over in-process replicas with an in-process embedder pool (the model code
the Ray actors run), for the tests of collections that embed their documents."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from shardvec.contract.errors import ShardvecError
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.embedding.pool import local_pool
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext
from tests.inproc import LocalControls

DOCS = [
    "A fast JSON parser written in C with Python bindings",
    "Read and write GPX tracks from hiking and cycling trips",
    "Rename photos by the date they were taken",
    "An async HTTP client with connection pooling",
    "Plot time series in the terminal",
]

CTX = FakeContext(60.0)


class Service:
    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.data_dir = data_dir

        async def build() -> tuple[CoordinatorRuntime, VectorSearchService]:
            runtime = CoordinatorRuntime(data_dir, LocalControls(data_dir))
            await runtime.restore()
            settings = CoordinatorSettings(data_dir=str(data_dir))
            svc = VectorSearchService(
                runtime, settings, MicroBatcher(window_s=0.0), embedders=local_pool(2)
            )
            return runtime, svc

        self.runtime, self.service = self.loop.run_until_complete(build())

    def call(self, method: str, request: Any) -> Any:
        return self.loop.run_until_complete(getattr(self.service, method)(request, CTX))

    def reject(self, method: str, request: Any, error: type[ShardvecError], *parts: str) -> None:
        with pytest.raises(ShardvecError) as info:
            self.call(method, request)
        assert type(info.value) is error, (type(info.value), info.value.message)
        for part in parts:
            assert part in info.value.message, (part, info.value.message)

    def close(self) -> None:
        self.loop.run_until_complete(self.runtime.shutdown())
        self.loop.close()


def text_search(name: str, *texts: str, k: int = 3) -> Any:
    req = pb.SearchRequest(collection=name, k=k)
    req.query_texts.extend(texts)
    return req
