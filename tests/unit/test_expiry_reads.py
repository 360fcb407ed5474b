"""Each row's absolute expiry read back through the public service over in-process replicas,
at 1 and 4 shards: Get by ids and by filter, and Scroll in small pages, with and without
vectors, metadata and documents. The expiry comes one per returned id in the ids' order (0:
never), and not at all when none of the returned rows expires; an expired row leaves with its
expiry, and an Update that sets one is read back.

Rows are written with real absolute times; the replicas read "now" from a clock the test
moves, so nothing sleeps."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.convert import filter_to_proto
from shardvec.contract.filters import parse_where
from shardvec.shard.engine import ShardEngine
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb
from tests.requests import upsert_request
from tests.seeded import DIM, Seeded, open_seeded

N = 60  # seeded rows r0..r59, none expiring
EXTRA = 30  # rows x0..x29: x{i} expires at BASE + 100 + i, every third one (i % 3 == 0) never


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _meta(i: int) -> str:
    return json.dumps({"g": f"g{i % 3}"})


@pytest.fixture(params=[1, 4])
def rows(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Seeded, Clock, dict[str, float]]]:
    """The seeded collection, EXTRA rows with their own expiries (one Upsert, one value per
    row), every replica on a clock the test moves; and each row's expected expiry."""
    s = open_seeded(tmp_path, f"exp{request.param}", request.param, N, _meta, 5)
    clock = Clock()
    engines: list[ShardEngine] = [
        c.engine for (name, _, _), c in s.controls.controls.items()
        if name == s.name and c.engine is not None
    ]  # fmt: skip
    for engine in engines:
        engine._slots.clock = clock
    ids = [f"x{i}" for i in range(EXTRA)]
    at = [0.0 if i % 3 == 0 else round(clock.now) + 100.0 + i for i in range(EXTRA)]
    vecs = np.random.default_rng(7).standard_normal((EXTRA, DIM)).astype(np.float32)
    up = upsert_request(s.name, ids, vecs, [_meta(i) for i in range(EXTRA)], dim=DIM)
    up.documents.extend([f"doc {i}" for i in range(EXTRA)])
    up.expires_at.extend(at)
    s.call("Upsert", up)
    want = {rid: 0.0 for rid in s.ids} | dict(zip(ids, at, strict=True))
    yield s, clock, want
    s.close()


def _pairs(resp: pb.GetResponse | pb.ScrollResponse) -> dict[str, float]:
    """id -> expiry of one answer, checking the wire rule: one per id, or none at all."""
    exp = list(resp.expires_at)
    assert len(exp) in (0, len(resp.ids)), (len(exp), len(resp.ids))
    return {rid: (exp[j] if exp else 0.0) for j, rid in enumerate(resp.ids)}


def _scroll(s: Seeded, inc: common_pb2.Include, limit: int) -> dict[str, float]:
    out: dict[str, float] = {}
    cursor = b""
    while True:
        page = s.call("Scroll", pb.ScrollRequest(collection=s.name, limit=limit, cursor=cursor,
                                                 include=inc))  # fmt: skip
        got = _pairs(page)
        assert not set(got) & set(out)
        out |= got
        if not any(got.values()):
            assert not page.expires_at  # a page of never-expiring rows carries none
        cursor = page.next_cursor
        if not cursor:
            return out


INCLUDES = [
    common_pb2.Include(),
    common_pb2.Include(metadata=True),
    common_pb2.Include(vectors=True),
    common_pb2.Include(metadata=True, vectors=True, documents=True),
]


@pytest.mark.parametrize("inc", INCLUDES, ids=["ids", "meta", "vec", "all"])
def test_get_and_scroll_return_each_rows_expiry(
    rows: tuple[Seeded, Clock, dict[str, float]], inc: common_pb2.Include
) -> None:
    s, _, want = rows
    ask = ["x1", "r3", "missing", "x0", "x29", "x2", "r0"]
    resp = s.call("Get", pb.GetRequest(collection=s.name, ids=ask, include=inc))
    assert list(resp.ids) == ["x1", "r3", "x0", "x29", "x2", "r0"]  # request order, found only
    assert list(resp.expires_at) == [want[i] for i in resp.ids]
    if inc.vectors:
        assert len(resp.vectors.packed) == 4 * DIM * len(resp.ids)
    never = s.call("Get", pb.GetRequest(collection=s.name, ids=["r1", "x3", "r2"], include=inc))
    assert list(never.ids) == ["r1", "x3", "r2"] and not never.expires_at
    by_filter = s.call("Get", pb.GetRequest(collection=s.name, include=inc, limit=500,
                                            filter=_eq("g", "g1")))  # fmt: skip
    got = _pairs(by_filter)
    assert got == {i: e for i, e in want.items() if _group(i) == "g1"}
    assert _scroll(s, inc, 7) == want


def test_an_expired_row_leaves_with_its_expiry_and_an_update_is_read_back(
    rows: tuple[Seeded, Clock, dict[str, float]],
) -> None:
    s, clock, want = rows
    clock.now = want["x1"]  # x1 expires now: "expires_at > now" is live
    live = {i: e for i, e in want.items() if i != "x1"}
    assert _scroll(s, common_pb2.Include(), 11) == live
    resp = s.call("Get", pb.GetRequest(collection=s.name, ids=["x1", "x2", "r5"]))
    assert _pairs(resp) == {"x2": want["x2"], "r5": 0.0}
    later = time.time() + 5000.0
    s.call("Update", pb.UpdateRequest(collection=s.name, ids=["x2", "r5"], expires_at=[later]))
    s.call("Update", pb.UpdateRequest(collection=s.name, ids=["x4"], ttl_seconds=[0.0]))
    resp = s.call("Get", pb.GetRequest(collection=s.name, ids=["x2", "r5", "x4", "x5"]))
    assert _pairs(resp) == {"x2": later, "r5": later, "x4": 0.0, "x5": want["x5"]}
    assert _scroll(s, common_pb2.Include(metadata=True), 13) == live | {"x2": later, "r5": later,
                                                               "x4": 0.0}  # fmt: skip


def _group(rid: str) -> str:
    return f"g{int(rid[1:]) % 3}"


def _eq(field: str, value: str) -> Any:
    return filter_to_proto(parse_where({field: value}))
