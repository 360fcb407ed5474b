"""Validation at the public service's edge, without Ray: VectorSearchService over a
CoordinatorRuntime of in-process replicas. Each bad request raises the precise shardvec error
(the interceptor maps it to its status; tests/ray/test_bad_input.py checks that end to end)
and changes nothing. A quick sweep under lowered row limits; every bad-input case of the Ray
tier that needs no real cluster, with its full message, is in tests/unit/test_bad_input.py."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ShardvecError,
)
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext
from tests.inproc import LocalControls
from tests.requests import condition, search_request, upsert_request

DIM = 8
N_ROWS = 60



def _upsert(ids: list[str], vectors: Any, metas: list[str] | None = None, dim: int = DIM) -> Any:
    return upsert_request("c", ids, vectors, metas, dim=dim)


def _search(queries: Any, k: int = 5, **kw: Any) -> Any:
    return search_request("c", queries, k, dim=DIM, **kw)




Case = Callable[[VectorSearchService], Awaitable[Any]]
ctx = FakeContext()
ones = np.ones((1, DIM), dtype=np.float32)
CASES: dict[str, tuple[type[ShardvecError], str, Case]] = {
    "wrong dimension": (
        InvalidArgument,
        "dimension",
        lambda s: s.Upsert(_upsert(["x"], np.ones((1, 4)), dim=4), ctx),
    ),
    "nan names the row": (
        InvalidArgument,
        r"\[1\]",
        lambda s: s.Upsert(_upsert(["x", "y"], np.array([[1.0] * DIM, [math.nan] * DIM])), ctx),
    ),
    "zero vector under cosine": (
        InvalidArgument,
        "zero",
        lambda s: s.Upsert(_upsert(["x"], np.zeros((1, DIM))), ctx),
    ),
    "bad id": (InvalidArgument, "ids", lambda s: s.Upsert(_upsert([""], ones), ctx)),
    "bad metadata": (
        InvalidArgument,
        r"metadata_json\[0\]",
        lambda s: s.Upsert(_upsert(["x"], ones, ["[1]"]), ctx),
    ),
    "metadata rows must match ids": (
        InvalidArgument,
        "metadata_json",
        lambda s: s.Upsert(_upsert(["x"], ones, ["{}", "{}"]), ctx),
    ),
    "k zero": (InvalidArgument, "k must be", lambda s: s.Search(_search(ones, k=0), ctx)),
    "ef below k": (
        InvalidArgument,
        "ef must be",
        lambda s: s.Search(_search(ones, k=5, ef=2), ctx),
    ),
    "max_distance under cosine": (
        InvalidArgument,
        "max_distance",
        lambda s: s.Search(_search(ones, max_distance=1.0), ctx),
    ),
    "bad filter operand": (
        InvalidArgument,
        "filter",
        lambda s: s.Count(pb.CountRequest(collection="c", filter=condition("i", 3, '"x"')), ctx),
    ),
    "delete with neither ids nor filter": (
        InvalidArgument,
        "exactly one",
        lambda s: s.Delete(pb.DeleteRequest(collection="c"), ctx),
    ),
    "unknown collection": (
        NotFound,
        "does not exist",
        lambda s: s.Count(pb.CountRequest(collection="nope"), ctx),
    ),
    "bad collection name": (
        InvalidArgument,
        "name",
        lambda s: s.Count(pb.CountRequest(collection="a b"), ctx),
    ),
    "existing collection": (
        AlreadyExists,
        "already exists",
        lambda s: s.CreateCollection(pb.CreateCollectionRequest(name="c", dimension=DIM), ctx),
    ),
    "bad dimension": (
        InvalidArgument,
        "dimension",
        lambda s: s.CreateCollection(pb.CreateCollectionRequest(name="d", dimension=0), ctx),
    ),
    "upsert batch limit": (
        ResourceExhausted,
        "limit",
        lambda s: s.Upsert(_upsert([f"r{i}" for i in range(11)], np.ones((11, DIM))), ctx),
    ),
    "query batch limit": (
        ResourceExhausted,
        "limit",
        lambda s: s.Search(_search(np.ones((11, DIM))), ctx),
    ),
}


def test_bad_requests_raise_precise_errors_and_change_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        runtime = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        settings = CoordinatorSettings(
            data_dir=str(tmp_path), max_upsert_rows=10, max_query_rows=10
        )
        service = VectorSearchService(runtime, settings, MicroBatcher(window_s=0.0))
        await service.CreateCollection(pb.CreateCollectionRequest(name="c", dimension=DIM), ctx)
        rng = np.random.default_rng(0)
        for start in range(0, N_ROWS, 10):
            ids = [f"r{i}" for i in range(start, start + 10)]
            await service.Upsert(_upsert(ids, rng.standard_normal((10, DIM))), ctx)
        failures = []
        for name, (error, pattern, case) in CASES.items():
            try:
                await case(service)
            except error as exc:
                if not re.search(pattern, exc.message):
                    failures.append(f"{name}: message {exc.message!r} lacks {pattern!r}")
            except BaseException as exc:
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
            else:
                failures.append(f"{name}: accepted")
        assert not failures, failures
        count = await service.Count(pb.CountRequest(collection="c"), ctx)
        assert count.count == N_ROWS  # nothing changed
        resp = await service.Search(_search(rng.standard_normal((2, DIM)), k=3), ctx)
        assert [len(r.ids) for r in resp.results] == [3, 3]  # and it still answers
        await runtime.shutdown()

    asyncio.run(main())


@pytest.mark.parametrize("bad_row", [0, 5, 9])
def test_one_bad_row_rejects_the_whole_batch(tmp_path: Path, bad_row: int) -> None:
    async def main() -> None:
        runtime = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        service = VectorSearchService(
            runtime, CoordinatorSettings(data_dir=str(tmp_path)), MicroBatcher(window_s=0.0)
        )
        await service.CreateCollection(pb.CreateCollectionRequest(name="c", dimension=DIM), ctx)
        vectors = np.random.default_rng(1).standard_normal((10, DIM))
        vectors[bad_row, 3] = math.inf
        with pytest.raises(InvalidArgument, match=rf"\[{bad_row}\]"):
            await service.Upsert(_upsert([f"r{i}" for i in range(10)], vectors), ctx)
        assert (await service.Count(pb.CountRequest(collection="c"), ctx)).count == 0
        await runtime.shutdown()

    asyncio.run(main())
