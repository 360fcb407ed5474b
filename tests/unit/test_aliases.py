"""Collection aliases in process (no Ray): the registry's table, resolution by the coordinator's
and a front's runtime, every data call through an alias, the switch (persisted first; a crash on
either side of the write ends on one side), a scroll cursor staying on its collection, and bad
input refused with the field named and nothing changed (coordinator/aliases.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.coordinator.aliases import AliasMap
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.fronts.runtime import FrontRuntime
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.registry import Registry
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext
from tests.hooks.shardvec_test_observers import observing
from tests.inproc import LocalControls
from tests.requests import search_request, upsert_request

DIM = 4


def _spec(name: str, dim: int = DIM, metric: str = "cosine", shards: int = 2) -> CollectionSpec:
    return CollectionSpec(name, IndexSettings(dim=dim, metric=metric), shards=shards)


def test_registry_keeps_aliases_across_a_reopen_and_guards_names(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.add(_spec("a"))
    reg.add(_spec("b"))
    reg.set_alias("prod", "a")
    reg.set_alias("prod", "b")  # a switch: one row, the new target
    reg.set_alias("old", "a")
    with pytest.raises(NotFound, match="collection: 'nope'"):
        reg.set_alias("x", "nope")
    with pytest.raises(AlreadyExists, match="alias: 'a' is the name of a collection"):
        reg.set_alias("a", "b")
    with pytest.raises(AlreadyExists, match="'prod' is an alias"):
        reg.add(_spec("prod"))
    with pytest.raises(FailedPrecondition, match="named by alias"):
        reg.remove("a")
    reg.close()

    again = Registry(tmp_path)
    assert again.aliases() == {"prod": "b", "old": "a"}
    assert [s.name for s in again.all()] == ["a", "b"]
    again.remove_alias("old")
    with pytest.raises(NotFound, match="alias: 'old'"):
        again.remove_alias("old")
    again.remove("a")  # no alias names it now
    assert again.aliases() == {"prod": "b"}
    again.close()


def test_alias_map_and_a_front_resolve_the_same_way() -> None:
    m = AliasMap({"prod": "a", "stage": "a", "x": "b"}, version=5)
    assert (m.resolve("prod"), m.resolve("a"), m.resolve("other")) == ("a", "a", "other")
    assert m.pointing_at("a") == ["prod", "stage"] and m.pointing_at("c") == []

    front = FrontRuntime("node", "token")
    assert front.set_aliases(m)
    assert not front.set_aliases(AliasMap({"prod": "b"}, version=4))  # older: ignored
    assert front.aliases.resolve("prod") == "a"
    with pytest.raises(NotFound, match="collection 'a' does not exist"):
        front.get("prod")  # resolved, then looked up like the name itself


def _service(tmp_path: Path, runtime: CoordinatorRuntime) -> VectorSearchService:
    return VectorSearchService(
        runtime, CoordinatorSettings(data_dir=str(tmp_path)), MicroBatcher(window_s=0.0)
    )


async def _open(tmp_path: Path) -> tuple[CoordinatorRuntime, VectorSearchService]:
    runtime = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
    await runtime.restore()
    return runtime, _service(tmp_path, runtime)


async def _fill(svc: VectorSearchService, name: str, n: int, prefix: str) -> np.ndarray:
    rng = np.random.default_rng(len(prefix) + n)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    ids = [f"{prefix}{i}" for i in range(n)]
    metas = [f'{{"src": "{prefix}", "i": {i}}}' for i in range(n)]
    await svc.Upsert(upsert_request(name, ids, vecs, metas, dim=DIM), FakeContext())
    return vecs


def _state(runtime: CoordinatorRuntime) -> tuple[dict[str, str], dict[str, str], list[str]]:
    return dict(runtime.aliases.names), runtime.registry.aliases(), runtime.served()


@pytest.mark.parametrize("shards", [1, 4])
def test_every_data_call_goes_through_an_alias_and_a_switch_moves_them(
    tmp_path: Path, shards: int
) -> None:
    async def main() -> None:
        runtime, svc = await _open(tmp_path)
        ctx = FakeContext()
        for name in ("a", "b"):
            await runtime.create(_spec(name, shards=shards))
        vecs = await _fill(svc, "a", 30, "a")
        await _fill(svc, "b", 12, "b")
        made = await svc.CreateAlias(pb.CreateAliasRequest(alias="prod", collection="a"), ctx)
        assert (made.alias.name, made.alias.collection) == ("prod", "a")

        # Writes, reads and collection calls through the alias reach `a`.
        await _fill(svc, "prod", 5, "p")
        assert (await svc.Count(pb.CountRequest(collection="prod"), ctx)).count == 35
        got = await svc.Get(pb.GetRequest(collection="prod", ids=["a1", "p2"]), ctx)
        assert list(got.ids) == ["a1", "p2"]
        hits = await svc.Search(search_request("prod", vecs[:2], 1, dim=DIM), ctx)
        assert [r.ids[0] for r in hits.results] == ["a0", "a1"]
        facets = await svc.Facet(pb.FacetRequest(collection="prod", field="src"), ctx)
        assert {(v.string_value, v.count) for v in facets.values} == {("a", 30), ("p", 5)}
        upd = await svc.Update(
            pb.UpdateRequest(collection="prod", ids=["a3"], metadata_json=['{"src": "u"}']), ctx
        )
        assert (upd.updated, list(upd.missing_ids)) == (1, []), upd
        dele = await svc.Delete(pb.DeleteRequest(collection="prod", ids=["p0"]), ctx)
        assert dele.deleted == 1
        described = await svc.DescribeCollection(pb.DescribeCollectionRequest(name="prod"), ctx)
        assert (described.name, described.count) == ("a", 34)
        opts = await svc.SetCollectionOptions(
            pb.SetCollectionOptionsRequest(name="prod", target_recall=0.9), ctx
        )
        assert opts.name == "a" and runtime.collections["a"].spec.target_recall == 0.9
        scaled = await svc.ScaleCollection(pb.ScaleCollectionRequest(name="prod", shards=3), ctx)
        assert scaled.name == "a"
        await asyncio.wait_for(runtime.changes["a"].done.wait(), 30)
        assert runtime.get("prod").layout.shards == 3
        assert (await svc.Count(pb.CountRequest(collection="prod"), ctx)).count == 34
        listed = await svc.ListCollections(pb.ListCollectionsRequest(), ctx)
        assert [(x.name, x.collection) for x in listed.aliases] == [("prod", "a")]
        assert [c.name for c in listed.collections] == ["a", "b"]

        # A scroll begun through the alias stays on `a` across a switch to `b`.
        page = await svc.Scroll(pb.ScrollRequest(collection="prod", limit=10), ctx)
        switched = await svc.SwitchAlias(
            pb.SwitchAliasRequest(alias="prod", collection="b"), ctx
        )
        assert (switched.previous, switched.alias.collection) == ("a", "b")
        seen = list(page.ids)
        while page.next_cursor:
            page = await svc.Scroll(
                pb.ScrollRequest(collection="prod", limit=10, cursor=page.next_cursor), ctx
            )
            seen += list(page.ids)
        assert len(seen) == 34 and all(i[0] in "ap" for i in seen)
        # A fresh read through the alias now reads `b`.
        assert (await svc.Count(pb.CountRequest(collection="prod"), ctx)).count == 12
        assert not (await svc.Get(pb.GetRequest(collection="prod", ids=["a1"]), ctx)).ids

        # `a` named by no alias now: it may go; `b` may not, nor the alias by DropCollection.
        with pytest.raises(FailedPrecondition, match=r"alias.*'prod'"):
            await svc.DropCollection(pb.DropCollectionRequest(name="b"), ctx)
        with pytest.raises(FailedPrecondition, match="name: 'prod' is an alias"):
            await svc.DropCollection(pb.DropCollectionRequest(name="prod"), ctx)
        await svc.DropCollection(pb.DropCollectionRequest(name="a"), ctx)
        deleted = await svc.DeleteAlias(pb.DeleteAliasRequest(alias="prod"), ctx)
        assert deleted.alias.collection == "b"
        with pytest.raises(NotFound, match="collection 'prod'"):
            await svc.Count(pb.CountRequest(collection="prod"), ctx)
        await svc.DropCollection(pb.DropCollectionRequest(name="b"), ctx)
        assert _state(runtime) == ({}, {}, [])
        await runtime.shutdown()

    asyncio.run(main())


def test_bad_alias_calls_name_the_field_and_change_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        runtime, svc = await _open(tmp_path)
        ctx = FakeContext()
        await runtime.create(_spec("a"))
        await runtime.create(_spec("wide", dim=8))
        await runtime.create(_spec("eu", metric="euclidean"))
        await svc.CreateAlias(pb.CreateAliasRequest(alias="prod", collection="a"), ctx)
        before = _state(runtime)
        bad: list[tuple[str, Any, type[Exception], str]] = [
            ("CreateAlias", pb.CreateAliasRequest(alias="x", collection="missing"),
             NotFound, "collection: 'missing' does not exist"),
            ("CreateAlias", pb.CreateAliasRequest(alias="x", collection="prod"),
             InvalidArgument, "collection: 'prod' is an alias"),
            ("CreateAlias", pb.CreateAliasRequest(alias="bad name", collection="a"),
             InvalidArgument, "alias: must match"),
            ("CreateAlias", pb.CreateAliasRequest(alias="", collection="a"),
             InvalidArgument, "alias: must match"),
            ("CreateAlias", pb.CreateAliasRequest(alias="x", collection=""),
             InvalidArgument, "collection: must match"),
            ("CreateAlias", pb.CreateAliasRequest(alias="eu", collection="a"),
             AlreadyExists, "alias: 'eu' is the name of a collection"),
            ("CreateAlias", pb.CreateAliasRequest(alias="prod", collection="eu"),
             AlreadyExists, "alias: 'prod' already exists"),
            ("SwitchAlias", pb.SwitchAliasRequest(alias="prod", collection="wide"),
             FailedPrecondition, "collection: 'wide' has dimension 8"),
            ("SwitchAlias", pb.SwitchAliasRequest(alias="prod", collection="eu"),
             FailedPrecondition, "metric euclidean"),
            ("SwitchAlias", pb.SwitchAliasRequest(alias="nope", collection="a"),
             NotFound, "alias: 'nope' does not exist"),
            ("SwitchAlias", pb.SwitchAliasRequest(alias="prod", collection="prod"),
             InvalidArgument, "collection: 'prod' is an alias"),
            ("SwitchAlias", pb.SwitchAliasRequest(alias="prod", collection="gone"),
             NotFound, "collection: 'gone' does not exist"),
            ("DeleteAlias", pb.DeleteAliasRequest(alias="nope"),
             NotFound, "alias: 'nope' does not exist"),
            ("DeleteAlias", pb.DeleteAliasRequest(alias="a/b"),
             InvalidArgument, "alias: must match"),
            ("CreateCollection", pb.CreateCollectionRequest(name="prod", dimension=DIM),
             AlreadyExists, "name: 'prod' is an alias"),
        ]  # fmt: skip
        for method, request, error, message in bad:
            with pytest.raises(error, match=message):
                await getattr(svc, method)(request, ctx)
            assert _state(runtime) == before, (method, request)
        # A re-embedding may change the dimension, never the metric.
        with pytest.raises(FailedPrecondition, match="metric euclidean"):
            await svc.SwitchAlias(
                pb.SwitchAliasRequest(alias="prod", collection="eu", embedding_changed=True), ctx
            )
        assert _state(runtime) == before
        moved = await svc.SwitchAlias(
            pb.SwitchAliasRequest(alias="prod", collection="wide", embedding_changed=True), ctx
        )
        assert (moved.previous, runtime.aliases.resolve("prod")) == ("a", "wide")
        await runtime.shutdown()

    asyncio.run(main())


@pytest.mark.parametrize(("phase", "ends_on"), [("alias-switch-begun", "a"),
                                                ("alias-switched", "b")])  # fmt: skip
def test_a_switch_stopped_at_either_side_of_its_write_ends_on_one_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phase: str, ends_on: str
) -> None:
    """The process stopping at `phase` (here: the call failing there, nothing after it run);
    reopened, the alias names the old collection or the new one and serves reads."""

    async def crash(reached: str) -> None:
        if reached == phase:
            raise RuntimeError(f"stopped at {reached}")

    async def main() -> None:
        runtime, svc = await _open(tmp_path)
        for name in ("a", "b"):
            await runtime.create(_spec(name))
        await _fill(svc, "a", 7, "a")
        await _fill(svc, "b", 3, "b")
        await runtime.create_alias("prod", "a")
        observing(monkeypatch, crash)
        with pytest.raises(RuntimeError, match="stopped at"):
            await runtime.switch_alias("prod", "b")
        await runtime.shutdown()

        again, svc2 = await _open(tmp_path)
        assert again.aliases.resolve("prod") == ends_on
        count = await svc2.Count(pb.CountRequest(collection="prod"), FakeContext())
        assert count.count == {"a": 7, "b": 3}[ends_on]
        await again.shutdown()

    asyncio.run(main())
