"""Expiry through the public service over in-process replicas, at 1 and 4 shards, and through
a query front: the collection default (create, set options, describe), per-row ttl_seconds
and expires_at on Upsert and Update, every read hiding the expired rows at once, the sweep
removing them on every replica with its figures, and bad input refused naming the field.

The rows are written with real absolute times (the service computes them from the real
clock); the replicas then read "now" from a clock the test moves, so nothing sleeps."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.limits import SWEEP_GRACE_S
from shardvec.coordinator.api import update_checks
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.fronts import publish as layout_push
from shardvec.coordinator.fronts.service import FrontService
from shardvec.coordinator.metrics import CoordinatorMetrics
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.shard.engine import ShardEngine
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext, ReadsOnlyLink
from tests.requests import search_request, upsert_request
from tests.seeded import DIM, Seeded, open_seeded

N = 120
EXTRA = 40  # rows written with an expiry, ids e0..e39


def _meta(i: int) -> str:
    return json.dumps({"g": f"g{i % 3}", "n": i % 5})


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _engines(s: Seeded) -> list[ShardEngine]:
    out = []
    for (name, _, _), control in sorted(s.controls.controls.items()):
        if name == s.name and control.engine is not None:
            out.append(control.engine)
    return out


@pytest.fixture(params=[1, 4])
def expiring(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Seeded, Clock]]:
    """A seeded collection plus EXTRA rows expiring 1000 s from now (their documents say
    "fleeting"), every replica on a clock the test moves."""
    s = open_seeded(tmp_path, f"ttl{request.param}", request.param, N, _meta, 3)
    clock = Clock()
    for engine in _engines(s):
        engine._slots.clock = clock
    rng = np.random.default_rng(9)
    extra = rng.standard_normal((EXTRA, DIM)).astype(np.float32)
    up = upsert_request(s.name, [f"e{i}" for i in range(EXTRA)], extra,
                        [_meta(i) for i in range(EXTRA)], dim=DIM)  # fmt: skip
    up.documents.extend(["fleeting words"] * EXTRA)
    up.expires_at.append(clock.now + 1000)
    s.call("Upsert", up)
    yield s, clock
    s.close()


def _visible(s: Seeded, q: np.ndarray) -> dict[str, Any]:
    """What each read kind sees of the whole collection."""
    out: dict[str, Any] = {"count": s.call("Count", pb.CountRequest(collection=s.name)).count}
    ids = [f"e{i}" for i in range(EXTRA)] + s.ids
    out["get"] = set(s.call("Get", pb.GetRequest(collection=s.name, ids=ids)).ids)
    scroll = s.call("Scroll", pb.ScrollRequest(collection=s.name, limit=1000))
    out["scroll"] = set(scroll.ids)
    for exact in (True, False):
        resp = s.call("Search", search_request(s.name, q, k=20, dim=DIM, exact=exact))
        out[f"search {exact}"] = {i for r in resp.results for i in r.ids}
    kw = s.call("Search", pb.SearchRequest(collection=s.name, k=60, text_query=["fleeting"]))
    out["keyword"] = {i for r in kw.results for i in r.ids}
    hybrid = s.call("Search", search_request(s.name, q, k=10, dim=DIM,
                                             text_query=["fleeting"] * len(q)))  # fmt: skip
    out["hybrid"] = {i for r in hybrid.results for i in r.ids}
    facet = s.call("Facet", pb.FacetRequest(collection=s.name, field="g", limit=10))
    out["facet"] = sum(c.count for c in facet.values)
    grouped = s.call("Search", search_request(s.name, q, k=0, dim=DIM, group_by="g", groups=3,
                                              group_size=50, exact=True))  # fmt: skip
    out["group"] = {h for r in grouped.results for h in r.ids}
    return out


def _scraped(s: Seeded, series: str) -> float:
    """The sum over the collection's replicas of `series`, as the metrics endpoint serves it
    (a fresh scrape: the figures are read from every replica on the service's loop)."""
    metrics = CoordinatorMetrics()
    metrics.attach(s.runtime, s.loop)
    text = s.loop.run_until_complete(asyncio.to_thread(generate_latest, metrics.registry))
    pattern = rf'^{series}{{collection="{s.name}",[^}}]*}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text.decode(), re.M))


def test_expired_rows_vanish_from_every_read_then_are_swept(
    expiring: tuple[Seeded, Clock],
) -> None:
    s, clock = expiring
    q = s.vectors[:3] + 0.01
    extra = {f"e{i}" for i in range(EXTRA)}
    before = _visible(s, q)
    assert before["count"] == N + EXTRA and extra <= before["get"] and extra <= before["scroll"]
    assert before["keyword"] == extra and before["facet"] == N + EXTRA
    assert before["hybrid"] & extra
    clock.now += 1000  # every extra row expires now, on every replica at once
    after = _visible(s, q)
    assert after["count"] == N and after["facet"] == N
    assert after["get"] == after["scroll"] == set(s.ids)
    assert after["keyword"] == set()
    for kind in ("search True", "search False", "group", "hybrid"):
        assert after[kind] and not after[kind] & extra, kind
    resp = s.call("Search", search_request(s.name, q, k=20, dim=DIM))
    assert all(len(r.ids) == 20 for r in resp.results)  # k live rows still
    # the sweep removes them on every replica; the figures the metrics export say so
    engines = _engines(s)
    assert sum(e.info()["expired_rows"] for e in engines) == EXTRA
    assert _scraped(s, "shardvec_rows_expired") == EXTRA
    assert sum(e.sweep(1000) for e in engines) == 0  # not before the grace
    clock.now += SWEEP_GRACE_S
    assert sum(e.sweep(1000) for e in engines) == EXTRA
    infos = [e.info() for e in engines]
    assert sum(i["swept_rows"] for i in infos) == EXTRA
    assert sum(i["expired_rows"] for i in infos) == 0
    assert _scraped(s, "shardvec_rows_expired") == 0
    assert _scraped(s, "shardvec_rows_swept_total") == EXTRA
    assert _visible(s, q) == after
    assert s.call("Count", pb.CountRequest(collection=s.name)).count == N


def test_update_keeps_or_sets_expiry_and_default_ttl(
    expiring: tuple[Seeded, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, clock = expiring
    # the coordinator accepts updates by the same clock as the replicas (accepted_at)
    monkeypatch.setattr(update_checks, "time", SimpleNamespace(time=clock))
    # An update naming no expiry keeps it; one naming ttl 0 clears it; expires_at sets it.
    s.call("Update", pb.UpdateRequest(collection=s.name, ids=["e0"], metadata_json=['{"k":1}']))
    s.call("Update", pb.UpdateRequest(collection=s.name, ids=["e1"], ttl_seconds=[0]))
    s.call("Update", pb.UpdateRequest(collection=s.name, ids=[s.ids[0]],
                                      expires_at=[clock.now + 10]))  # fmt: skip
    # The collection default: set, shown, used by an upsert that names no expiry.
    info = s.call("SetCollectionOptions", pb.SetCollectionOptionsRequest(name=s.name,
                                                                        ttl_seconds=50))
    assert info.ttl_seconds == 50
    assert s.call("DescribeCollection", pb.DescribeCollectionRequest(name=s.name)).ttl_seconds == 50
    s.call("Upsert", upsert_request(s.name, ["d0"], s.vectors[:1], dim=DIM))
    clock.now += 60
    got = set(s.call("Get", pb.GetRequest(collection=s.name,
                                          ids=["e0", "e1", s.ids[0], "d0"])).ids)  # fmt: skip
    assert got == {"e0", "e1"}
    clock.now += 1000
    got = set(s.call("Get", pb.GetRequest(collection=s.name, ids=["e0", "e1"])).ids)
    assert got == {"e1"}
    # An expired row is missing to an update (as after the sweep).
    resp = s.call("Update", pb.UpdateRequest(collection=s.name, ids=["e0"],
                                             metadata_json=['{"k":2}']))  # fmt: skip
    assert list(resp.missing_ids) == ["e0"] and resp.updated == 0
    s.call("SetCollectionOptions", pb.SetCollectionOptionsRequest(name=s.name, ttl_seconds=0))
    assert s.call("DescribeCollection", pb.DescribeCollectionRequest(name=s.name)).ttl_seconds == 0


def test_a_collection_created_with_a_ttl(tmp_path: Path) -> None:
    s = open_seeded(tmp_path, "plain", 2, 10, _meta, 1)
    try:
        info = s.call("CreateCollection", pb.CreateCollectionRequest(
            name="cache", dimension=DIM, shards=2, ttl_seconds=30))  # fmt: skip
        assert info.ttl_seconds == 30
        with pytest.raises(InvalidArgument, match="ttl_seconds"):
            s.call("CreateCollection", pb.CreateCollectionRequest(
                name="bad", dimension=DIM, ttl_seconds=-1))  # fmt: skip
        listed = s.call("ListCollections", pb.ListCollectionsRequest())
        assert {c.name: c.ttl_seconds for c in listed.collections}["cache"] == 30
    finally:
        s.close()


def test_bad_expiry_is_refused_naming_the_field(expiring: tuple[Seeded, Clock]) -> None:
    s, _ = expiring
    s.ids, s.vectors, s.metas = s.ids, s.vectors, s.metas
    base = s.call("Count", pb.CountRequest(collection=s.name)).count

    def upsert(**kw: Any) -> pb.UpsertRequest:
        req = upsert_request(s.name, ["x0", "x1"], s.vectors[:2], dim=DIM)
        for field, values in kw.items():
            getattr(req, field).extend(values)
        return req

    now = time.time()
    for kw, fragment in (
        ({"ttl_seconds": [-1]}, "ttl_seconds[0]"),
        ({"ttl_seconds": [float("nan")]}, "ttl_seconds[0]"),
        ({"ttl_seconds": [1, 2e10]}, "ttl_seconds[1]"),
        ({"ttl_seconds": [1, 2, 3]}, "ttl_seconds: 3 values for 2 ids"),
        ({"ttl_seconds": [5], "expires_at": [now + 5]}, "not both"),
        ({"expires_at": [now - 5]}, "expires_at[0]"),
        ({"expires_at": [float("inf")]}, "expires_at[0]"),
    ):
        with pytest.raises(InvalidArgument) as info:
            s.call("Upsert", upsert(**kw))
        assert fragment in info.value.message, (kw, info.value.message)
        assert s.call("Count", pb.CountRequest(collection=s.name)).count == base
    with pytest.raises(InvalidArgument, match="ttl_seconds"):
        s.call("Update", pb.UpdateRequest(collection=s.name, ids=["e2"], ttl_seconds=[-3]))
    with pytest.raises(InvalidArgument, match="ttl_seconds"):
        s.call("SetCollectionOptions",
               pb.SetCollectionOptionsRequest(name=s.name, ttl_seconds=float("inf")))
    assert s.call("DescribeCollection", pb.DescribeCollectionRequest(name=s.name)).ttl_seconds == 0


def test_a_front_hides_expired_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A query front's reads (views pushed by the coordinator) hide expired rows too."""
    from tests.unit import test_layout_reads as layout_reads

    monkeypatch.setattr(layout_push, "_set_epoch", layout_reads._set_epoch)
    layout_reads.FENCES.clear()
    s = open_seeded(tmp_path, "frx", 4, N, _meta, 5)
    try:
        clock = Clock()
        for engine in _engines(s):
            engine._slots.clock = clock
        up = upsert_request(s.name, ["gone"], s.vectors[:1] + 0.001, dim=DIM)
        up.ttl_seconds.append(100)
        s.call("Upsert", up)
        rt = s.runtime
        front = layout_reads._Front(rt)
        rt.publisher = layout_push.LayoutPublisher(
            lambda: rt.collections, lambda n: n in rt.collections, lambda n: rt.uid(n),
            layout_reads._Sink(front),
        )  # fmt: skip
        s.loop.run_until_complete(rt.layout_changed(s.name))
        service = FrontService(ReadsOnlyLink(), front, CoordinatorSettings(data_dir=str(tmp_path)),
                               MicroBatcher(window_s=0.0))  # fmt: skip

        def via_front(method: str, req: Any) -> Any:
            return s.loop.run_until_complete(getattr(service, method)(req, FakeContext()))

        query = search_request(s.name, s.vectors[:1], k=3, dim=DIM, exact=True)
        assert "gone" in via_front("Search", query).results[0].ids
        assert via_front("Count", pb.CountRequest(collection=s.name)).count == N + 1
        clock.now += 200
        assert "gone" not in via_front("Search", query).results[0].ids
        assert via_front("Count", pb.CountRequest(collection=s.name)).count == N
        assert list(via_front("Get", pb.GetRequest(collection=s.name, ids=["gone"])).ids) == []
    finally:
        s.close()


def test_expiry_survives_a_coordinator_and_replica_restart(tmp_path: Path) -> None:
    """The collection default and each row's absolute expiry come back with a restarted
    coordinator and replicas reopened from their directories."""
    from shardvec.contract.settings import CollectionSpec, IndexSettings
    from shardvec.coordinator.runtime import CoordinatorRuntime
    from tests.inproc import LocalControls

    rng = np.random.default_rng(4)
    vecs = rng.standard_normal((30, DIM)).astype(np.float32)
    at = time.time() + 1000

    async def main() -> None:
        rt = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        col = await rt.create(CollectionSpec("keep", IndexSettings(dim=DIM), shards=3,
                                             ttl_seconds=3600))  # fmt: skip
        ids = [f"i{i}" for i in range(30)]
        await col.upsert(ids, vecs, [], time.monotonic() + 30,
                         expires_at=[at if i % 3 == 0 else 0.0 for i in range(30)])  # fmt: skip
        await rt.shutdown()
        controls = LocalControls(tmp_path)
        rt2 = CoordinatorRuntime(tmp_path, controls)
        await rt2.restore()
        col2 = rt2.get("keep")
        assert col2.spec.ttl_seconds == 3600
        assert await col2.count(None, time.monotonic() + 30) == 30
        clock = Clock()
        clock.now = at
        for (name, _, _), control in controls.controls.items():
            assert name == "keep" and control.engine is not None
            control.engine._slots.clock = clock
        assert await col2.count(None, time.monotonic() + 30) == 20
        await rt2.shutdown()

    asyncio.run(main())
