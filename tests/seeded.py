"""A public service over in-process replicas with one seeded collection, on its own event
loop, and the checks every rejection ends with (bad input must change nothing)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import ShardvecError
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext
from tests.inproc import LocalControls
from tests.requests import search_request, upsert_request

DIM = 8


@dataclass
class Seeded:
    """A service over in-process replicas with one seeded collection, on its own event loop,
    and the checks every rejection ends with."""

    loop: asyncio.AbstractEventLoop
    runtime: CoordinatorRuntime
    controls: LocalControls
    service: VectorSearchService
    data_dir: Path
    name: str
    shards: int
    ids: list[str]
    vectors: np.ndarray
    metas: list[str]
    per_shard: list[int]

    def call(self, method: str, request: Any) -> Any:
        """The service's handler `method` on `request`, as the interceptor would call it."""
        return self.loop.run_until_complete(getattr(self.service, method)(request, FakeContext()))

    def engine_counts(self, name: str | None = None, shards: int | None = None) -> list[int]:
        """Each shard's (replica 0's) engine row count, read from the engine itself."""
        name = name or self.name
        counts = []
        for s in range(self.shards if shards is None else shards):
            engine = self.controls.controls[(name, s, 0)].engine
            assert engine is not None
            counts.append(engine.count())
        return counts

    def assert_unchanged(self) -> None:
        """The service still answers, and count, shard counts, rows and vectors are as seeded."""
        assert self.call("Count", pb.CountRequest(collection=self.name)).count == len(self.ids)
        assert self.engine_counts() == self.per_shard
        get = pb.GetRequest(collection=self.name, ids=self.ids)
        get.include.metadata = get.include.vectors = True
        got = self.call("Get", get)
        assert list(got.ids) == self.ids
        assert [json.loads(m) for m in got.metadata_json] == [json.loads(m) for m in self.metas]
        np.testing.assert_array_equal(
            np.frombuffer(got.vectors.packed, dtype="<f4").reshape(-1, DIM), self.vectors
        )
        query = search_request(self.name, self.vectors[:1], k=3, dim=DIM, exact=True)
        resp = self.call("Search", query)
        assert resp.results[0].ids[0] == self.ids[0]

    def reject(
        self, method: str, request: Any, error: type[ShardvecError], *fragments: str
    ) -> str:
        """Call `method`, expect exactly `error`'s status with every fragment in the message,
        then check nothing changed. Returns the message."""
        with pytest.raises(ShardvecError) as info:
            self.call(method, request)
        exc = info.value
        assert isinstance(exc, error) and exc.code == error.code, (type(exc), exc.message)
        for fragment in fragments:
            assert fragment in exc.message, (fragment, exc.message)
        self.assert_unchanged()
        return exc.message

    def close(self) -> None:
        self.loop.run_until_complete(self.runtime.shutdown())
        self.loop.close()


def open_seeded(
    data_dir: Path,
    name: str,
    shards: int,
    n_rows: int,
    metas: Callable[[int], str],
    seed: int,
    id_prefix: str = "r",
) -> Seeded:
    """A service over in-process replicas (data in `data_dir`) holding collection `name` of
    `shards` shards and `n_rows` seeded rows, ids `{id_prefix}{i}`, metadata `metas(i)`."""
    loop = asyncio.new_event_loop()

    async def build() -> tuple[CoordinatorRuntime, LocalControls, VectorSearchService]:
        controls = LocalControls(data_dir)
        runtime = CoordinatorRuntime(data_dir, controls)
        service = VectorSearchService(
            runtime, CoordinatorSettings(data_dir=str(data_dir)), MicroBatcher(window_s=0.0)
        )
        return runtime, controls, service

    runtime, controls, service = loop.run_until_complete(build())
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n_rows, DIM)).astype(np.float32)
    ids = [f"{id_prefix}{i}" for i in range(n_rows)]
    texts = [metas(i) for i in range(n_rows)]
    s = Seeded(loop, runtime, controls, service, data_dir, name, shards, ids, vectors, texts, [])
    s.call(
        "CreateCollection",
        pb.CreateCollectionRequest(
            name=name, dimension=DIM, metric=common_pb2.COSINE, shards=shards
        ),
    )
    s.call("Upsert", upsert_request(name, ids, vectors, texts, dim=DIM))
    s.per_shard = s.engine_counts()
    assert len(s.per_shard) == shards and all(c > 0 for c in s.per_shard)
    assert sum(s.per_shard) == n_rows
    return s
