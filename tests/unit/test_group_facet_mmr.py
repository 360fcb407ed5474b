"""Group-by, facets and diverse results through the public service over in-process replicas,
at 1 and 4 shards, each against an answer computed here from all the rows: brute-force
grouping of an exact ranking, value counts over the rows, and MMR written out in NumPy.
Then the same reads through a query front, and the bad input of each."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from shardvec.cluster.aio import AsyncClient
from shardvec.cluster.cli import cli
from shardvec.cluster.client import Client, grouped
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.facets import facet_count_from_proto, rank_of
from shardvec.contract.filters import parse_where
from shardvec.contract.groups import GroupBy, ShardGroupSearch, group_key
from shardvec.contract.limits import MAX_FACET_LIMIT, MAX_K
from shardvec.contract.settings import IndexSettings
from shardvec.contract.types import ShardSearch
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.fronts import publish as layout_push
from shardvec.coordinator.fronts.service import FrontService
from shardvec.coordinator.queries import groups as coordinator_groups
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.replicas.shard_client import RemoteShard
from shardvec.shard import facets as shard_facets
from shardvec.shard.columns import MetadataColumns
from shardvec.shard.engine import ShardEngine
from shardvec.shard.server import ShardServer
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb
from tests import inproc
from tests.fakes import FakeContext, ReadsOnlyLink
from tests.requests import condition, search_request, upsert_request
from tests.seeded import DIM, Seeded, open_seeded
from tests.served import serve_public

N = 400


def _meta(i: int) -> str:
    """Groups of uneven size ("doc"), a few numeric groups and rows with no group (missing,
    null, a list); a number, a boolean and a list field for the facets."""
    md: dict[str, Any] = {"n": i % 5, "b": i % 3 == 0, "tags": ["a", f"t{i % 4}"],
                          "nums": [i % 2, 2, 2.0], "mixed": [True, 1, "1"][i % 3]}
    if i % 11 == 0:
        md["doc"] = 7  # a numeric group
    elif i % 13 == 0:
        md["doc"] = None if i % 2 else ["x", "y"]  # no group
    elif i % 17 != 0:  # else: the field is missing
        md["doc"] = f"d{(i * 7) % 41 if i % 3 else i % 5}"
    if i % 19 == 0:
        md["n"] = 2.5
    return json.dumps(md)


@pytest.fixture(scope="module", params=[1, 4])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Seeded]:  # fmt: skip
    s = open_seeded(tmp_path_factory.mktemp("gfm"), f"gfm{request.param}", request.param, N,
                    _meta, 5)  # fmt: skip
    yield s
    s.close()


def _metas(s: Seeded) -> list[dict[str, Any]]:
    return [json.loads(m) for m in s.metas]


def _cosine(s: Seeded, q: np.ndarray) -> np.ndarray:
    v = s.vectors.astype(np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    qq = q.astype(np.float64) / np.linalg.norm(q, axis=1, keepdims=True)
    out: np.ndarray = qq @ v.T
    return out


# ---------------------------------------------------------------------------- facets


def _facet_reference(metas: list[dict[str, Any]], field: str, keep: Any, limit: int
                     ) -> list[tuple[Any, int]]:  # fmt: skip
    counts: dict[tuple[int, Any], int] = {}
    for md in metas:
        if not keep(md) or field not in md:
            continue
        value = md[field]
        values = set(value) if isinstance(value, list) else {value}
        keys = {rank_of(v) for v in values if v is not None}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(key[1], n) for key, n in ranked[:limit]]


def _facet(s: Seeded, field: str, limit: int = 0, where: Any = None) -> list[tuple[Any, int]]:
    req = pb.FacetRequest(collection=s.name, field=field, limit=limit)
    if where is not None:
        req.filter.CopyFrom(where)
    return [facet_count_from_proto(v) for v in s.call("Facet", req).values]


@pytest.mark.parametrize("field", ["doc", "n", "b", "tags", "nums", "mixed"])
def test_a_facet_counts_every_value_exactly(seeded: Seeded, field: str) -> None:
    metas = _metas(seeded)
    for limit in (0, 3, 1000):
        want = _facet_reference(metas, field, lambda md: True, limit or 10)
        assert _facet(seeded, field, limit) == want, (field, limit)
    where = condition("n", common_pb2.Condition.EQ, "1")
    want = _facet_reference(metas, field, lambda md: md["n"] == 1, 50)
    assert _facet(seeded, field, 50, where) == want


@pytest.mark.parametrize("elements", [3, 40, 5000])
def test_list_elements_count_the_same_by_element_and_by_row(
    monkeypatch: pytest.MonkeyPatch, elements: int
) -> None:
    """A list field's counts through the postings (few distinct elements for the rows) equal
    the row-by-row walk and a Python reference, under a mask, with slots cleared and reused."""
    rng = np.random.default_rng(elements)
    n = 3000
    metas = [{"tags": [f"t{int(t)}" for t in rng.integers(0, elements, rng.integers(0, 4))]
              + ([True, 2, 2.0] if i % 7 == 0 else [])} for i in range(n)]  # fmt: skip
    columns = MetadataColumns()
    columns.set(np.arange(n), metas)
    cleared = np.arange(0, n, 11)
    columns.clear(cleared)
    alive = np.ones(n, dtype=bool)
    alive[cleared] = False
    mask = alive & (rng.random(n) < 0.6)
    want: dict[tuple[int, Any], int] = {}
    for i in np.flatnonzero(mask).tolist():
        for key in {rank_of(v) for v in metas[i]["tags"]}:
            want[key] = want.get(key, 0) + 1
    column = columns.column("tags")
    assert column is not None
    got = {}
    for per_element in (0, 10**9):  # every count by element, then every count by row
        monkeypatch.setattr(shard_facets, "LIST_ROWS_PER_ELEMENT", per_element)
        got[per_element] = shard_facets.count_values(column, mask)
    assert got[0] == got[10**9] == want
    # Lists rewritten after the postings' arrays were made: counts and `contains` see the change.
    columns.clear(np.arange(0, n, 3))
    columns.set(np.arange(0, n, 3), [{"tags": ["t0", "new"]}] * len(range(0, n, 3)))
    monkeypatch.setattr(shard_facets, "LIST_ROWS_PER_ELEMENT", 0)
    counts = shard_facets.count_values(column, np.ones(n, dtype=bool))
    assert counts[rank_of("new")] == len(range(0, n, 3))
    holders = columns.mask(parse_where({"tags": {"$contains": "new"}}), n)
    assert np.array_equal(np.flatnonzero(holders), np.arange(0, n, 3))


def test_a_facet_types_stay_apart(seeded: Seeded) -> None:
    got = {rank_of(v): n for v, n in _facet(seeded, "mixed", 1000)}
    # True, 1 and "1" are three values; 2 and 2.0 in one list are one.
    assert got == {rank_of(True): 134, rank_of(1): 133, rank_of("1"): 133}
    nums = {rank_of(v): n for v, n in _facet(seeded, "nums", 1000)}
    assert nums == {rank_of(2): N, rank_of(0): N // 2, rank_of(1): N // 2}


# ---------------------------------------------------------------------------- group-by


def _group_reference(s: Seeded, q: np.ndarray, groups: int, size: int
                     ) -> list[tuple[list[str], list[str]]]:  # fmt: skip
    """Per query: the ids and group keys of brute-force grouping over every row."""
    metas = _metas(s)
    out = []
    for sims in _cosine(s, q):
        held: dict[str, list[str]] = {}
        order: list[str] = []
        for j in np.argsort(-sims, kind="stable"):
            key = group_key(metas[j].get("doc"))
            if key is None:
                continue
            if key not in held:
                if len(held) == groups:
                    continue
                held[key] = []
                order.append(key)
            if len(held[key]) < size:
                held[key].append(s.ids[j])
        out.append(([i for k in order for i in held[k]],
                     [k for k in order for _ in held[k]]))  # fmt: skip
    return out


def _grouped(s: Seeded, q: np.ndarray, **kw: Any) -> Any:
    return s.call("Search", search_request(s.name, q, k=0, dim=DIM, **kw))


def test_group_by_equals_brute_force(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    asked_again = []
    real = coordinator_groups._ask_again

    async def counted(*args: Any) -> Any:
        asked_again.append(args[4])
        return await real(*args)

    monkeypatch.setattr(coordinator_groups, "_ask_again", counted)
    q = np.random.default_rng(11).standard_normal((12, DIM)).astype(np.float32)
    for groups, size in ((5, 3), (10, 2), (3, 8), (60, 1), (2, 2), (1, 4), (4, 5)):
        resp = _grouped(seeded, q, group_by="doc", groups=groups, group_size=size, exact=True)
        want = _group_reference(seeded, q, groups, size)
        for res, (ids, keys) in zip(resp.results, want, strict=True):
            assert list(res.ids) == ids, (groups, size)
            assert list(res.group_values) == keys
            assert len(set(keys)) == min(groups, len(set(keys)))
    if seeded.shards > 1:
        assert asked_again, "no query needed the second phase: the test covers too little"


def test_group_by_defaults_filters_and_payloads(seeded: Seeded) -> None:
    q = seeded.vectors[:2]
    req = search_request(seeded.name, q, k=0, dim=DIM, group_by="doc", exact=True)
    req.include.metadata = req.include.vectors = True
    req.filter.CopyFrom(condition("b", common_pb2.Condition.EQ, "true"))
    resp = seeded.call("Search", req)
    for res in resp.results:
        assert 0 < len(res.ids) <= 30 and len(set(res.group_values)) <= 10
        vecs = np.frombuffer(res.vectors, dtype="<f4").reshape(-1, DIM)
        want = seeded.vectors[[seeded.ids.index(i) for i in res.ids]]
        np.testing.assert_array_equal(vecs, want)
        for id_, text, key in zip(res.ids, res.metadata_json, res.group_values, strict=True):
            md = json.loads(text)
            assert md == json.loads(seeded.metas[seeded.ids.index(id_)])
            assert md["b"] is True and group_key(md["doc"]) == key


def test_group_by_with_hnsw_keeps_its_shape(seeded: Seeded) -> None:
    q = np.random.default_rng(2).standard_normal((4, DIM)).astype(np.float32)
    resp = _grouped(seeded, q, group_by="doc", groups=6, group_size=2)
    want = _group_reference(seeded, q, 6, 2)
    for res, (ids, _) in zip(resp.results, want, strict=True):
        keys = list(res.group_values)
        assert len(set(keys)) == 6 and all(keys.count(k) <= 2 for k in keys)
        firsts = [keys.index(k) for k in dict.fromkeys(keys)]
        best = [res.scores[i] for i in firsts]
        assert best == sorted(best, reverse=True)  # groups ranked by their best hit
        assert res.ids[0] == ids[0]  # the best hit of all leads


# ---------------------------------------------------------------------------- MMR


def _mmr_reference(rel: np.ndarray, vecs: np.ndarray, k: int, lam: float) -> list[int]:
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    sims = unit @ unit.T
    chosen: list[int] = []
    rest = list(range(len(rel)))
    while rest and len(chosen) < k:
        def gain(i: int) -> float:
            penalty = max((sims[i, j] for j in chosen), default=0.0)
            return float(lam * rel[i] - (1 - lam) * penalty)
        best = max(rest, key=lambda i: (gain(i), -i))
        chosen.append(best)
        rest.remove(best)
    return chosen


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.7, 1.0])
def test_mmr_equals_a_numpy_reference(seeded: Seeded, lam: float) -> None:
    q = np.random.default_rng(4).standard_normal((3, DIM)).astype(np.float32)
    plain = search_request(seeded.name, q, k=25, dim=DIM, exact=True)
    plain.include.vectors = True
    wide = seeded.call("Search", plain)
    req = search_request(seeded.name, q, k=6, dim=DIM, exact=True, diversity=lam, candidates=25)
    got = seeded.call("Search", req)
    for res, ref in zip(got.results, wide.results, strict=True):
        vecs = np.frombuffer(ref.vectors, dtype="<f4").reshape(-1, DIM).astype(np.float64)
        order = _mmr_reference(np.asarray(ref.scores, dtype=np.float64), vecs, 6, lam)
        assert list(res.ids) == [ref.ids[i] for i in order], lam
        assert list(res.scores) == [ref.scores[i] for i in order]
        assert not res.vectors  # not asked for
    if lam == 1.0:
        assert [list(r.ids) for r in got.results] == [list(r.ids[:6]) for r in wide.results]


# ---------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_naming_the_field(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    q = s.vectors[:1]
    facet = pb.FacetRequest
    s.reject("Facet", facet(collection=name, field=""), InvalidArgument, "field", "empty")
    s.reject("Facet", facet(collection=name, field="$x"), InvalidArgument, "field")
    s.reject("Facet", facet(collection=name, field="nobody"), InvalidArgument, "field",
             "nobody")  # fmt: skip
    s.reject("Facet", facet(collection=name, field="doc", limit=MAX_FACET_LIMIT + 1),
             InvalidArgument, "limit", str(MAX_FACET_LIMIT))  # fmt: skip
    bad_filter = facet(collection=name, field="doc")
    bad_filter.filter.CopyFrom(condition("", common_pb2.Condition.EQ, "1"))
    s.reject("Facet", bad_filter, InvalidArgument, "filter")

    def search(**kw: Any) -> Any:
        return search_request(name, q, dim=DIM, **{"k": 0, **kw})

    s.reject("Search", search(group_by="nobody"), InvalidArgument, "group_by", "nobody")
    s.reject("Search", search(groups=3), InvalidArgument, "group_by")  # no field
    s.reject("Search", search(group_by="doc", group_size=0), InvalidArgument, "group_size")
    s.reject("Search", search(group_by="doc", groups=0), InvalidArgument, "groups")
    s.reject("Search", search(group_by="doc", groups=MAX_K, group_size=2), InvalidArgument,
             "groups", "k cap")  # fmt: skip
    s.reject("Search", search(group_by="doc", k=7), InvalidArgument, "k")
    s.reject("Search", search(group_by="doc", query_ids=[s.ids[0]]), InvalidArgument,
             "group_by")  # fmt: skip
    s.reject("Search", search(group_by="doc", diversity=0.5, k=30), InvalidArgument,
             "diversity")  # fmt: skip
    for lam in (-0.1, 1.5, float("nan")):
        s.reject("Search", search(k=5, diversity=lam), InvalidArgument, "diversity")
    s.reject("Search", search(k=5, diversity=0.5, candidates=4), InvalidArgument, "candidates")
    s.reject("Search", search(k=5, diversity=0.5, candidates=MAX_K + 1), InvalidArgument,
             "candidates", str(MAX_K))  # fmt: skip
    s.reject("Search", search(k=5, candidates=10), InvalidArgument, "candidates")
    s.reject("Search", search(k=5, diversity=0.5, query_ids=[s.ids[0]]), InvalidArgument,
             "diversity")  # fmt: skip


def test_the_same_answers_at_every_shard_count(tmp_path: Path) -> None:
    """Facets, exact groups and MMR over exact candidates do not depend on the shard count."""
    answers = []
    for shards in (1, 4):
        s = open_seeded(tmp_path / str(shards), f"same{shards}", shards, N, _meta, 9)
        try:
            q = s.vectors[5:8] + 0.1
            grouped = _grouped(s, q, group_by="doc", groups=7, group_size=3, exact=True)
            mmr = s.call("Search", search_request(s.name, q, k=8, dim=DIM, exact=True,
                                                  diversity=0.4, candidates=40))  # fmt: skip
            answers.append((
                _facet(s, "tags", 100),
                [list(r.ids) for r in grouped.results],
                [list(r.ids) for r in mmr.results],
            ))  # fmt: skip
        finally:
            s.close()
    assert answers[0] == answers[1]



# ---------------------------------------------------------------------------- the wire


def test_the_shard_service_answers_facets_and_groups_over_grpc(tmp_path: Path) -> None:
    """The shard's Facet and GroupSearch over loopback gRPC answer as the engine does."""
    engine = ShardEngine(tmp_path / "e", IndexSettings(dim=DIM))
    rng = np.random.default_rng(8)
    vecs = rng.standard_normal((120, DIM)).astype(np.float32)
    metas = [json.loads(_meta(i)) for i in range(120)]
    inproc.write(engine, 1, [f"r{i}" for i in range(120)], vecs, metas)
    server = ShardServer(engine, token="t")

    async def main() -> None:
        remote = RemoteShard("s", server.address, "t", stream=False)
        try:
            where = parse_where({"b": True})
            for field in ("doc", "tags", "mixed"):
                got = await remote.facet(field, where, 5)
                assert got == engine.facet(field, where) and got.field_known
            assert not (await remote.facet("nobody", None, 5)).field_known
            search = ShardSearch(queries=vecs[:3], k=8, exact=True, include_metadata=True,
                                 include_vectors=True)  # fmt: skip
            ask = ShardGroupSearch(search, GroupBy("doc", 4, 2))
            got_groups = await remote.group_search(ask, 5)
            want = engine.group_search(ask)
            np.testing.assert_array_equal(got_groups.hits.ids, want.hits.ids)
            np.testing.assert_array_equal(got_groups.keys, want.keys)
            np.testing.assert_array_equal(got_groups.hits.vectors, want.hits.vectors)
            np.testing.assert_array_equal(got_groups.hits.metadata, want.hits.metadata)
            assert len(set(want.keys[0].tolist()) - {""}) >= 4  # with the ranking's others
            assert np.isnan(want.bounds).all()  # 120 rows: each ranking is whole
            np.testing.assert_array_equal(got_groups.bounds, want.bounds)
            last = [k for k in want.keys[0].tolist() if k][-1]
            only = ShardGroupSearch(search, GroupBy("doc", 1, 2), (last,))
            narrow = await remote.group_search(only, 5)
            assert set(narrow.keys[0].tolist()) - {""} == {last}
            bad = ShardGroupSearch(search, GroupBy("doc", 1, 2), ("{not json",))
            with pytest.raises(InvalidArgument, match="group_by"):
                await remote.group_search(bad, 5)
        finally:
            await remote.close()

    try:
        asyncio.run(main())
    finally:
        server.stop(0)
        engine.close()


# ---------------------------------------------------------------------------- a front


def test_a_front_serves_facets_groups_and_mmr(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Through a query front's service (views pushed by the coordinator's publisher), the
    three reads answer exactly as the coordinator's own service does."""
    from tests.unit import test_layout_reads as layout_reads

    monkeypatch.setattr(layout_push, "_set_epoch", layout_reads._set_epoch)
    layout_reads.FENCES.clear()
    s = open_seeded(tmp_path, "fr", 4, N, _meta, 13)
    try:
        rt = s.runtime
        front = layout_reads._Front(rt)
        rt.publisher = layout_push.LayoutPublisher(
            lambda: rt.collections, lambda n: n in rt.collections, lambda n: rt.uid(n),
            layout_reads._Sink(front),
        )  # fmt: skip
        s.loop.run_until_complete(rt.layout_changed(s.name))
        service = FrontService(ReadsOnlyLink(), front, CoordinatorSettings(data_dir=str(tmp_path)),
                               MicroBatcher(window_s=0.0))  # fmt: skip
        q = s.vectors[10:13] + 0.05
        calls = [
            ("Facet", pb.FacetRequest(collection=s.name, field="doc", limit=20)),
            ("Search", search_request(s.name, q, k=0, dim=DIM, group_by="doc", groups=5,
                                      group_size=2, exact=True)),
            ("Search", search_request(s.name, q, k=5, dim=DIM, exact=True, diversity=0.5,
                                      candidates=30)),
        ]  # fmt: skip
        for method, req in calls:
            via_front = s.loop.run_until_complete(
                getattr(service, method)(req, FakeContext()))  # fmt: skip
            assert via_front == s.call(method, req), method
        with pytest.raises(InvalidArgument, match="group_size"):
            s.loop.run_until_complete(service.Search(
                search_request(s.name, q, k=0, dim=DIM, group_by="doc", group_size=0),
                FakeContext()))  # fmt: skip
    finally:
        s.close()


# ---------------------------------------------------------------------------- the client


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[str]:
    """The real public service and guard on loopback gRPC over in-process replicas."""
    with serve_public(tmp_path) as (address, _):
        yield address


def test_the_client_groups_facets_and_diversifies(served: str) -> None:
    rng = np.random.default_rng(21)
    vecs = rng.standard_normal((200, DIM)).astype(np.float32)
    metas = [json.loads(_meta(i)) for i in range(200)]
    with Client(served, discover=False) as client:
        col = client.create_collection("cl", DIM, shards=4)
        col.upsert([f"r{i}" for i in range(200)], vecs, metas)
        counts = col.facet("doc", limit=5)
        want = _facet_reference(metas, "doc", lambda md: True, 5)
        assert [(float(v) if isinstance(v, int) else v, n) for v, n in counts] == want
        assert all(isinstance(v, (str, int)) for v, _ in counts)  # 7.0 comes back as 7
        assert col.facet("b", where={"n": 1}) == [
            (v, n) for v, n in _facet_reference(metas, "b", lambda md: md["n"] == 1, 10)]
        hits = col.search(vecs[:2], group_by="doc", groups=4, group_size=2, exact=True)
        for row in hits:
            parts = grouped(row)
            assert len(parts) == 4 and all(len(h) <= 2 for _, h in parts)
            for value, members in parts:
                assert all(h.metadata is not None and h.metadata["doc"] == value
                           for h in members)  # fmt: skip
        plain = col.search(vecs[:2], k=5, exact=True)
        same = col.search(vecs[:2], k=5, exact=True, diversity=1.0, candidates=20)
        assert [[h.id for h in r] for r in same] == [[h.id for h in r] for r in plain]
        varied = col.search(vecs[:2], k=5, exact=True, diversity=0.0, candidates=20)
        assert all(h.group is None for r in varied for h in r)
        assert [r[0].id for r in varied] == [r[0].id for r in plain]  # the first pick
        with pytest.raises(InvalidArgument, match="diversity"):
            col.search(vecs[:1], k=5, diversity=2.0)
        docs = client.create_collection("cl_docs", DIM, shards=3)
        docs.upsert([f"r{i}" for i in range(200)], vecs, metas,
                    documents=[f"w{i % 9} w{i % 4}" for i in range(200)])  # fmt: skip
        for row in docs.search_keywords(["w1 w2"], group_by="doc", groups=3, group_size=2):
            assert len(grouped(row)) == 3
            assert all(h.metadata is not None and h.metadata["doc"] == h.group for h in row)
        with pytest.raises(InvalidArgument, match="limit"):
            col.facet("doc", limit=MAX_FACET_LIMIT + 1)

        async def via_async() -> list[tuple[Any, int]]:
            async with AsyncClient(served, discover=False) as aclient:
                acol = await aclient.get_collection("cl")
                return await acol.facet("doc", limit=5)

        assert asyncio.run(via_async()) == counts


def test_the_cli_counts_by_value_and_groups(served: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(22)
    vecs = rng.standard_normal((120, DIM)).astype(np.float32)
    metas = [json.loads(_meta(i)) for i in range(120)]
    with Client(served, discover=False) as client:
        client.create_collection("cli", DIM, shards=2).upsert(
            [f"r{i}" for i in range(120)], vecs, metas)  # fmt: skip
    runner = CliRunner()
    out = runner.invoke(cli, ["--server", served, "count", "cli", "--by", "doc", "--limit", "3"])
    assert out.exit_code == 0, out.output
    want = _facet_reference(metas, "doc", lambda md: True, 3)
    lines = [line.split(None, 1) for line in out.output.splitlines()]
    assert [(json.loads(v), int(n)) for n, v in lines] == [
        (int(v) if isinstance(v, float) else v, n) for v, n in want]
    queries = tmp_path / "q.npy"
    np.save(queries, vecs[:2])
    out = runner.invoke(cli, ["--server", served, "query", "cli", "--vectors", str(queries),
                              "--group-by", "doc", "--groups", "3", "--group-size", "2",
                              "--exact", "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    for line in out.output.splitlines():
        hits = json.loads(line)
        groups = [h["group"] for h in hits]
        assert len(set(map(json.dumps, groups))) == 3
        assert all(h["metadata"]["doc"] == h["group"] for h in hits)
    out = runner.invoke(cli, ["--server", served, "query", "cli", "--vectors", str(queries),
                              "-k", "4", "--diversity", "0.5", "--candidates", "16"])
    assert out.exit_code == 0 and out.output.count("query ") == 2, out.output
    out = runner.invoke(cli, ["--server", served, "query", "cli", "--vectors", str(queries),
                              "--diversity", "3"])  # fmt: skip
    assert out.exit_code != 0 and "diversity" in out.output


# ---------------------------------------------------------------------------- keyword, hybrid

WORDS = [f"w{i}" for i in range(30)]


def _with_documents(s: Seeded) -> str:
    """A collection beside the seeded one, as many shards, whose rows have documents."""
    name = f"{s.name}_docs"
    if name not in s.runtime.collections:
        s.call("CreateCollection", pb.CreateCollectionRequest(
            name=name, dimension=DIM, metric=common_pb2.COSINE, shards=s.shards))  # fmt: skip
        rng = np.random.default_rng(30)
        req = upsert_request(name, s.ids, s.vectors, s.metas, dim=DIM)
        req.documents.extend(" ".join(rng.choice(WORDS, size=6)) for _ in s.ids)
        s.call("Upsert", req)
    return name


def _group_hits(ids: list[str], metas: list[str], groups: int, size: int) -> list[str]:
    held: dict[str, list[str]] = {}
    for id_, text in zip(ids, metas, strict=True):
        key = group_key(json.loads(text).get("doc"))
        if key is None or (key not in held and len(held) == groups):
            continue
        if len(held.setdefault(key, [])) < size:
            held[key].append(id_)
    return [i for members in held.values() for i in members]


def test_keyword_group_by_groups_the_global_ranking(seeded: Seeded) -> None:
    name = _with_documents(seeded)
    texts = ["w1 w2", "w3", "w4 w5 w6"]
    plain = pb.SearchRequest(collection=name, k=N, text_query=texts)
    plain.include.metadata = True
    ranking = seeded.call("Search", plain)
    for groups, size in ((4, 2), (8, 3)):
        req = pb.SearchRequest(collection=name, text_query=texts, group_by="doc",
                               groups=groups, group_size=size)  # fmt: skip
        got = seeded.call("Search", req)
        for res, full in zip(got.results, ranking.results, strict=True):
            want = _group_hits(list(full.ids), list(full.metadata_json), groups, size)
            assert list(res.ids) == want, (groups, size)
            assert not res.metadata_json  # not asked for
            metas = dict(zip(full.ids, full.metadata_json, strict=True))
            assert [group_key(json.loads(metas[i])["doc"]) for i in res.ids] == list(
                res.group_values)


def test_hybrid_group_by_keeps_its_shape(seeded: Seeded) -> None:
    name = _with_documents(seeded)
    req = search_request(name, seeded.vectors[:2], k=0, dim=DIM, text_query=["w1", "w7 w8"],
                         group_by="doc", groups=5, group_size=2)  # fmt: skip
    req.include.metadata = True
    got = seeded.call("Search", req)
    for res in got.results:
        keys = list(res.group_values)
        assert len(set(keys)) == 5 and all(keys.count(k) <= 2 for k in keys)
        assert [group_key(json.loads(m)["doc"]) for m in res.metadata_json] == keys
        runs = [k for j, k in enumerate(keys) if j == 0 or keys[j - 1] != k]
        assert len(runs) == len(set(runs))  # listed group by group
    seeded.reject("Search", pb.SearchRequest(collection=name, text_query=["w1"], diversity=0.5,
                                             k=5), InvalidArgument, "diversity")  # fmt: skip


def test_an_hnsw_grouped_search_stops_widening_at_its_depth_cap(tmp_path: Path) -> None:
    """Groups of scattered rows (each group's rows far apart): exact=True widens to a scan and
    fills every group; HNSW stops at 16 x groups x group_size and keeps the groups it found
    with the hits it found (shard/groups.py)."""
    engine = ShardEngine(tmp_path / "e", IndexSettings(dim=DIM))
    try:
        rng = np.random.default_rng(12)
        vecs = rng.standard_normal((3000, DIM)).astype(np.float32)
        inproc.write(engine, 1, [f"r{i}" for i in range(3000)], vecs,
                     [{"doc": f"d{i % 1000}"} for i in range(3000)])  # fmt: skip
        q = vecs[:4] + 0.01
        ask = ShardGroupSearch(ShardSearch(queries=q, k=15, exact=True), GroupBy("doc", 5, 3))
        exact = engine.group_search(ask)
        approx = engine.group_search(ShardGroupSearch(ShardSearch(queries=q, k=15),
                                                      GroupBy("doc", 5, 3)))  # fmt: skip

        def first_groups(keys: np.ndarray) -> dict[str, int]:
            held: dict[str, int] = {}
            for key in keys.tolist():
                if key and (key in held or len(held) < 5):
                    held[key] = held.get(key, 0) + 1
            return held

        for qi in range(4):
            assert exact.keys[qi, 0] == approx.keys[qi, 0] == '"d' + str(qi) + '"'
            assert list(first_groups(exact.keys[qi]).values()) == [3] * 5
            found = first_groups(approx.keys[qi])  # no group whole within 240 hits
            assert len(found) == 5 and min(found.values()) < 3
            assert len([k for k in approx.keys[qi].tolist() if k]) <= 240 + 15
        assert not np.isnan(exact.bounds).any() and not np.isnan(approx.bounds).any()
    finally:
        engine.close()
