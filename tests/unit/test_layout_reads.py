"""Every read kind and every write kind against a model of the rows while a collection grows,
shrinks and aborts at random points, through the coordinator and through a query front.

The front here is a real `FrontRuntime` fed by the coordinator's real `LayoutPublisher` (its
pushes applied in process; epochs are set on real replicas in the cluster tier), so it reads
by the pushed view, as a front on another node does. Operations run one at a time against a
layout change running in the background, so the model is exact at every read: counts,
exact search, Get, Scroll, keyword statistics (against a one-shard collection receiving the
same writes: "one index over the same rows") and affected-row counts must all be exact.
Both read collection "c" through its alias "live" (coordinator/aliases.py), resolved by the
coordinator's and the front's `get` as every public read is: an alias names the collection,
never a view of it, so the view a read takes is the current one, whatever the layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shardvec.contract.errors import STALE_LAYOUT, FailedPrecondition, StaleLayout
from shardvec.contract.filters import parse_where, parse_where_document
from shardvec.contract.groups import GroupBy
from shardvec.contract.keyword import Fusion
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.contract.types import ShardUpdate
from shardvec.coordinator.aliases import AliasMap
from shardvec.coordinator.changes import plan as change_plan
from shardvec.coordinator.changes import resharding
from shardvec.coordinator.collection import CollectionRuntime
from shardvec.coordinator.fronts import publish as layout_push
from shardvec.coordinator.fronts.runtime import FrontRuntime
from shardvec.coordinator.layout import Layout
from shardvec.coordinator.queries.facets import facet
from shardvec.coordinator.queries.groups import group_search
from shardvec.coordinator.queries.keyword_search import hybrid_search, keyword_search
from shardvec.coordinator.queries.reads import SearchParams
from shardvec.coordinator.queries.scroll import get_matching
from shardvec.coordinator.runtime import CoordinatorRuntime
from tests.hooks.shardvec_test_observers import observing
from tests.inproc import LocalControls, rows_held

DIM = 8
WORDS = [f"w{i}" for i in range(24)]
CALL_S = 10.0  # every call's deadline; none may take longer


class _Fence:
    """One replica's layout epoch as its shard service keeps it (shard/server.py): a read
    under another epoch is refused, and setting an epoch waits for the reads under others."""

    def __init__(self) -> None:
        self.epoch = 0
        self.reading: dict[int, int] = {}
        self.changed = asyncio.Condition()

    async def set(self, epoch: int, timeout: float) -> None:
        async with self.changed:
            self.epoch = epoch
            await asyncio.wait_for(
                self.changed.wait_for(lambda: all(e == epoch for e in self.reading)), timeout
            )


class _FencedShard:
    """A replica handle whose reads carry a front's layout epoch."""

    def __init__(self, shard: Any, fence: _Fence, epoch: int) -> None:
        self.shard, self.fence, self.epoch = shard, fence, epoch
        self.name, self.address = shard.name, shard.address

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.shard, name)

        async def fenced(*args: Any, **kwargs: Any) -> Any:
            fence = self.fence
            if fence.epoch != self.epoch:
                raise StaleLayout(f"{STALE_LAYOUT}: {self.name} holds {fence.epoch}")
            fence.reading[self.epoch] = fence.reading.get(self.epoch, 0) + 1
            try:
                return await method(*args, **kwargs)
            finally:
                async with fence.changed:
                    fence.reading[self.epoch] -= 1
                    if not fence.reading[self.epoch]:
                        del fence.reading[self.epoch]
                    fence.changed.notify_all()

        return fenced


FENCES: dict[str, _Fence] = {}


class _Front(FrontRuntime):
    """A front whose replica handles are the coordinator's in-process ones, by address."""

    def __init__(self, rt: CoordinatorRuntime) -> None:
        super().__init__("node", "token")
        self.rt = rt

    def _client(self, name: str, address: str) -> Any:
        for col in self.rt.collections.values():
            for rs in col.shard_sets:
                for r in rs.replicas:
                    if r.client is not None and r.client.address == address:
                        return _Epochs(r.client)
        return None


class _Epochs:
    def __init__(self, shard: Any) -> None:
        self.shard = shard

    def with_epoch(self, epoch: int) -> Any:
        return _FencedShard(self.shard, FENCES.setdefault(self.shard.address, _Fence()), epoch)


class _Sink:
    def __init__(self, front: _Front) -> None:
        self.front = front

    async def push(self, name: str, view: layout_push.CollectionView | None) -> None:
        self.front.apply(name, view)

    async def push_aliases(self, aliases: AliasMap) -> None:
        self.front.set_aliases(aliases)


async def _set_epoch(replica: Any, epoch: int, timeout: float) -> None:
    await FENCES.setdefault(replica.client.address, _Fence()).set(epoch, timeout)


async def _front_reads(*args: Any) -> None:
    """The reads through the front, retried on a stale layout as its service does
    (coordinator/fronts/service.py FrontService._fenced)."""
    rng, model, front, ref = args
    while True:
        try:
            return await _reads(rng, model, front.get("live"), ref, "front")
        except StaleLayout:
            await asyncio.sleep(0.005)


class Model:
    """The rows as the writes acknowledged them."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.vectors: dict[str, np.ndarray] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.docs: dict[str, str] = {}
        self.next = 0

    def new_rows(self, n: int) -> tuple[list[str], np.ndarray, list[str], list[str]]:
        ids = [f"r{self.next + i}" for i in range(n)]
        self.next += n
        vecs = self.rng.standard_normal((n, DIM)).astype(np.float32)
        metas = [{"g": int(self.rng.integers(0, 4))} for _ in ids]
        docs = [" ".join(self.rng.choice(WORDS, size=int(self.rng.integers(2, 7)))) for _ in ids]
        return ids, vecs, [json.dumps(m) for m in metas], docs

    def matching(self, g: int) -> set[str]:
        return {i for i, m in self.meta.items() if m["g"] == g}


async def _timed(what: str, coro: Any) -> Any:
    start = time.monotonic()
    out = await coro
    took = time.monotonic() - start
    assert took < CALL_S, f"{what} took {took:.1f} s"
    return out


def _deadline() -> float:
    return time.monotonic() + CALL_S


async def _write(rng: np.random.Generator, model: Model, cols: list[CollectionRuntime]) -> None:
    """One random write kind, applied to every collection in `cols`, affected counts checked
    against the model."""
    kind = rng.integers(0, 4)
    live = sorted(model.vectors)
    if kind == 0 or len(live) < 20:
        ids, vecs, metas, docs = model.new_rows(int(rng.integers(5, 40)))
        for col in cols:
            n = await _timed("upsert", col.upsert(ids, vecs, metas, _deadline(), docs))
            assert n == len(ids)
        for i, v, m, d in zip(ids, vecs, metas, docs, strict=True):
            model.vectors[i], model.meta[i], model.docs[i] = v, json.loads(m), d
    elif kind == 1:
        gone = list(rng.choice(live, size=min(len(live), int(rng.integers(1, 8))), replace=False))
        gone += ["never-written"]
        for col in cols:
            n = await _timed("delete", col.delete(gone, None, _deadline()))
            assert n == len(gone) - 1, (n, len(gone) - 1)
        for i in gone[:-1]:
            del model.vectors[i], model.meta[i], model.docs[i]
    elif kind == 2:
        g = int(rng.integers(0, 4))
        # A filter that removes a few rows: g == x and the row's number ends in 7.
        doomed = {i for i in model.matching(g) if i.endswith("7")}
        where = parse_where({"$and": [{"g": g}, {"sevens": True}]})
        for i in doomed:  # mark them first, by an update, so the filter can name them
            model.meta[i]["sevens"] = True
        if doomed:
            marks = sorted(doomed)
            for col in cols:
                out = await _timed("update", col.update(ShardUpdate(
                    ids=marks, metadata_json=['{"sevens": true}'] * len(marks), documents=[],
                ), _deadline()))  # fmt: skip
                assert out.updated == len(marks) and not out.missing_ids and not out.inserted
        for col in cols:
            n = await _timed("delete where", col.delete(None, where, _deadline()))
            assert n == len(doomed), (n, len(doomed))
        for i in doomed:
            del model.vectors[i], model.meta[i], model.docs[i]
    else:
        some = sorted(rng.choice(live, size=min(len(live), 6), replace=False).tolist())
        docs = [" ".join(rng.choice(WORDS, size=4)) for _ in some]
        asked = [*some, "absent-1"]
        for col in cols:
            out = await _timed("update", col.update(ShardUpdate(
                ids=asked, metadata_json=['{"u": 1}'] * len(asked), documents=[*docs, "x"],
            ), _deadline()))  # fmt: skip
            assert out.updated == len(some), (out, len(some))
            assert out.missing_ids == ["absent-1"] and out.inserted == 0
        for i, d in zip(some, docs, strict=True):
            model.meta[i]["u"] = 1
            model.docs[i] = d


def _no_duplicates(ids: np.ndarray, what: str) -> None:
    for row in ids:
        got = [i for i in row if i]
        assert len(got) == len(set(got)), f"{what}: an id came twice: {got}"


async def _reads(
    rng: np.random.Generator, model: Model, col: CollectionRuntime, ref: CollectionRuntime,
    where: str,
) -> None:  # fmt: skip
    """Every read kind on `col`, checked against the model (and `ref`, one shard)."""
    what = f"{where} at layout {col.layout.version} ({col.layout.shards} shards)"
    n = await _timed("count", col.count(None, _deadline()))
    assert n == len(model.vectors), (what, n, len(model.vectors))
    g = int(rng.integers(0, 4))
    n = await _timed("count where", col.count(parse_where({"g": g}), _deadline()))
    assert n == len(model.matching(g)), (what, "count where", n)
    word = str(rng.choice(WORDS))
    n = await _timed("count where_document", col.count(
        None, _deadline(), parse_where_document({"$contains": word})))  # fmt: skip
    held = sum(word in d for d in model.docs.values())
    assert n == held, (what, "count where_document", n, held)

    ids = sorted(model.vectors)
    q = rng.standard_normal((2, DIM)).astype(np.float32)
    hits = await _timed("exact search", col.search(
        q, SearchParams(k=10, exact=True, include_metadata=True, include_documents=True),
        _deadline()))  # fmt: skip
    _no_duplicates(hits.ids, what)
    assert hits.metadata is not None and hits.documents is not None
    for row, metas, docs in zip(hits.ids, hits.metadata, hits.documents, strict=True):
        for i, m, d in zip(row, metas, docs, strict=True):  # each hit's own payloads
            if i:
                assert (json.loads(m), d) == (model.meta[i], model.docs[i]), (what, "payloads")
    mat = np.stack([model.vectors[i] for i in ids])
    norms = np.linalg.norm(mat, axis=1) * np.linalg.norm(q, axis=1)[:, None]
    sims = (q @ mat.T) / norms
    for row, s in zip(hits.ids, sims, strict=True):
        want = [ids[j] for j in np.argsort(-s)[:10]]
        assert list(row) == want, (what, "exact search", list(row), want)
    hits = await _timed("hnsw search", col.search(q, SearchParams(k=10), _deadline()))
    _no_duplicates(hits.ids, what)
    assert {i for row in hits.ids for i in row if i} <= set(ids)
    hits = await _timed("filtered search", col.search(
        q, SearchParams(k=10, where=parse_where({"g": g})), _deadline()))  # fmt: skip
    _no_duplicates(hits.ids, what)
    assert {i for row in hits.ids for i in row if i} <= model.matching(g)

    await _facet_and_groups(rng, model, col, q, what)

    asked = [*rng.choice(ids, size=min(len(ids), 30), replace=False).tolist(), "absent"]
    found, metas, _ = await _timed("get", col.get(asked, True, False, _deadline()))
    assert found == asked[:-1], (what, "get")
    assert [json.loads(m) for m in metas] == [model.meta[i] for i in found]

    pages = await _timed("scroll", get_matching(col, None, None, 100_000, False, False, False,
                                                1 << 30, _deadline()))  # fmt: skip
    walked = [i for p in pages for i in p.ids]
    assert len(walked) == len(set(walked)) and set(walked) == set(ids), (what, "scroll")
    pages = await _timed("get where", get_matching(col, parse_where({"g": g}), None, 100_000,
                                                   False, False, False, 1 << 30, _deadline()))
    assert {i for p in pages for i in p.ids} == model.matching(g), (what, "get where")

    texts = [" ".join(rng.choice(WORDS, size=2)) for _ in range(2)]
    params = SearchParams(k=10)
    kw = await _timed("keyword", keyword_search(col, texts, params, _deadline()))
    one = await _timed("keyword ref", keyword_search(ref, texts, params, _deadline()))
    _no_duplicates(kw.ids, what)
    for qi in range(len(texts)):
        got, want = kw.scores[qi][: kw.counts[qi]], one.scores[qi][: one.counts[qi]]
        assert np.allclose(got, want, rtol=1e-5), (what, "bm25 scores", got, want)
        top = [i for i, s in zip(kw.ids[qi], kw.scores[qi], strict=False) if s > want[-1] + 1e-6] \
            if len(want) else []
        ref_top = [i for i, s in zip(one.ids[qi], one.scores[qi], strict=False)
                   if s > want[-1] + 1e-6] if len(want) else []  # fmt: skip
        assert set(top) == set(ref_top), (what, "bm25 ranking")
    hy = await _timed("hybrid", hybrid_search(col, q, texts, params, Fusion(), 20, _deadline()))
    _no_duplicates(hy.ids, what)
    assert {i for row in hy.ids for i in row if i} <= set(ids)


async def _facet_and_groups(
    rng: np.random.Generator, model: Model, col: CollectionRuntime, q: np.ndarray, what: str
) -> None:
    """Facet counts and an exact group-by (coordinator/queries/facets.py, groups.py) against
    the model: each row counted, and each group's hits found, once, at its owner."""
    want: dict[int, int] = {}
    for md in model.meta.values():
        want[md["g"]] = want.get(md["g"], 0) + 1
    got = await _timed("facet", facet(col, "g", None, None, 10, _deadline()))
    assert {int(v): n for v, n in got} == want, (what, "facet", got, want)
    marked = {i for i, md in model.meta.items() if md.get("u") == 1}
    if marked:
        got = await _timed("facet where", facet(col, "g", parse_where({"u": 1}), None, 10,
                                                _deadline()))  # fmt: skip
        assert sum(n for _, n in got) == len(marked), (what, "facet where")
    size = int(rng.integers(1, 4))
    grouped = await _timed("group-by", group_search(
        col, q, SearchParams(k=3 * size, exact=True), GroupBy("g", 3, size), _deadline()))
    ids = sorted(model.vectors)
    mat = np.stack([model.vectors[i] for i in ids])
    sims = (q @ mat.T) / (np.linalg.norm(mat, axis=1) * np.linalg.norm(q, axis=1)[:, None])
    for row, s in zip(grouped.hits.ids, sims, strict=True):
        held: dict[int, list[str]] = {}
        for j in np.argsort(-s):
            g = model.meta[ids[j]]["g"]
            if g in held or len(held) < 3:
                held.setdefault(g, [])
                if len(held[g]) < size:
                    held[g].append(ids[j])
        assert [i for i in row if i] == [i for hs in held.values() for i in hs], (what, "groups")


async def _slow_step(phase: str) -> None:
    """Each copy step lets a few operations run (the "copied-step" phase, coordinator/phases.py)."""
    if phase == "copied-step":
        await asyncio.sleep(0.05)


async def _run(
    tmp: Path, seed: int, plan: list[tuple[int, int | None]], on_disk: bool = False
) -> None:
    rng = np.random.default_rng(seed)
    rt = CoordinatorRuntime(tmp, LocalControls(tmp))
    front = _Front(rt)
    rt.publisher = layout_push.LayoutPublisher(
        lambda: rt.collections, lambda n: n in rt.collections, lambda n: rt.uid(n), _Sink(front)
    )
    index = IndexSettings(dim=DIM)
    # `on_disk`: the changing collection reads its metadata and documents from the stores,
    # the reference holds them in memory; every read must still agree.
    col = await rt.create(
        CollectionSpec("c", dataclasses.replace(index, payload_on_disk=on_disk), shards=2)
    )
    ref = await rt.create(CollectionSpec("ref", index, shards=1))
    await rt.layout_changed("c")
    await rt.create_alias("live", "c")
    assert front.aliases.resolve("live") == "c"  # pushed
    model = Model(rng)
    ids, vecs, metas, docs = model.new_rows(800)
    for c in (col, ref):
        await c.upsert(ids, vecs, metas, _deadline(), docs)
    for i, v, m, d in zip(ids, vecs, metas, docs, strict=True):
        model.vectors[i], model.meta[i], model.docs[i] = v, json.loads(m), d
    during = 0
    for target, abort_after in plan:
        await rt.scale("c", target, None)
        job = rt.changes["c"]
        ops = 0
        while not job.done.is_set():
            during += 1
            await _write(rng, model, [col, ref])
            await _reads(rng, model, rt.get("live"), ref, "coordinator")
            await _front_reads(rng, model, front, ref)
            ops += 1
            if abort_after is not None and ops == abort_after:
                with contextlib.suppress(FailedPrecondition):  # it may have switched first
                    await rt.abort_change("c")
            await asyncio.sleep(0)
        assert job.error is None, job.error
        # Between changes: every row on exactly its owner, nothing left behind.
        held = await rows_held(col)
        assert held == len(model.vectors) == await col.count(None, _deadline())
        assert not col.foreign and col.dual is None
        await _reads(rng, model, col, ref, "coordinator after")
        await _front_reads(rng, model, front, ref)
    assert during >= len(plan), "the operations did not run while the layout changed"
    await rt.shutdown()


# Two drawn plans and one fixed one that holds every kind: a growth aborted mid-copy (2 -> 4,
# ten steps, aborted after two), a shrink (2 -> 1) and a growth that finishes (1 -> 3); the
# fixed plan also with the changing collection's payloads on disk (payload_on_disk).
@settings(
    max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(seed=25, plan=[(4, 2), (1, None), (3, None)], on_disk=False)
@example(seed=25, plan=[(4, 2), (1, None), (3, None)], on_disk=True)
@given(
    seed=st.integers(0, 2**16),
    plan=st.lists(
        st.tuples(st.sampled_from([1, 3, 4, 5]), st.one_of(st.none(), st.integers(1, 6))),
        min_size=2, max_size=3,
    ).filter(lambda p: all(a[0] != b[0] for a, b in itertools.pairwise(p)) and p[0][0] != 2),
    on_disk=st.booleans(),
)
def test_every_read_and_write_is_exact_while_the_layout_changes(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, seed: int,
    plan: list[tuple[int, int | None]], on_disk: bool,
) -> None:  # fmt: skip
    monkeypatch.setattr(change_plan, "COPY_ROWS", 40)  # many steps: ops land between them
    monkeypatch.setattr(layout_push, "_set_epoch", _set_epoch)
    observing(monkeypatch, _slow_step)
    FENCES.clear()
    tmp = tmp_path_factory.mktemp("layout")
    asyncio.run(_run(tmp, seed, plan, on_disk))


@pytest.mark.parametrize(("before", "after", "copy_rows"), [(43, 44, 1), (3, 2, 100)])
def test_an_abort_at_every_point_of_a_change_leaves_no_row_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: int, after: int, copy_rows: int
) -> None:
    """An abort after each copy step (and before the first) of a growth that moves buckets
    between existing shards (43 -> 44, a new collection's smallest) and of a shrink (3 -> 2)
    deletes exactly the copies; no read in between sees a row twice or counts it twice."""
    monkeypatch.setattr(change_plan, "COPY_ROWS", copy_rows)
    old = Layout.initial(before).owners
    change = change_plan.LayoutChange("copying", old.tolist(),
                               change_plan.plan_owners(old, after).tolist(), before, after, 1)
    assert change.receivers(), f"{before} -> {after} no longer copies into a shard that is read"
    state: dict[str, Any] = {}

    async def abort_at(phase: str) -> None:
        job = state.get("job")
        if (phase == "copied-step" and job is not None and not job.change.abort
                and job.change.copied and len(state["steps"]) >= state["at"]):
            n = await state["col"].count(None, _deadline())
            assert n == state["rows"], ("count mid-copy", n)
            hits = await state["col"].search(state["q"], SearchParams(k=5, exact=True),
                                             _deadline())  # fmt: skip
            _no_duplicates(hits.ids, "mid-copy")
            job.change.abort = True

    async def step_seen(phase: str) -> None:
        if phase == "copied-step":
            state["steps"].append(1)
        await abort_at(phase)

    observing(monkeypatch, step_seen)

    async def main() -> None:
        rt = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        col = await rt.create(CollectionSpec("g", IndexSettings(dim=DIM), shards=before))
        rng = np.random.default_rng(7)
        model = Model(rng)
        # 1.5 rows a bucket: most steps move rows (3k rows cost half as much again here).
        ids, vecs, metas, docs = model.new_rows(1500)
        await col.upsert(ids, vecs, metas, _deadline(), docs)
        state.update(col=col, rows=1500, q=vecs[:3])
        at, steps_in_all = 0, None
        while steps_in_all is None or at <= steps_in_all:
            state.update(at=at, steps=[])
            await rt.scale("g", after, None)
            job = state["job"] = rt.changes["g"]
            if at == 0:
                job.change.abort = True
            await asyncio.wait_for(job.done.wait(), 120)
            if steps_in_all is None:
                steps_in_all = len(change_plan.copy_steps(
                    dataclasses.replace(job.change, copied=[]), job._rows_per_bucket))
            assert job.error is None and col.change is None, (at, job.error)
            assert col.layout.shards == before and len(col.shard_sets) == before, at
            held = await rows_held(col)
            assert held == 1500, (at, held)  # no stray copy on a shard that stays
            assert await col.count(None, _deadline()) == 1500
            hits = await col.search(vecs[:3], SearchParams(k=5, exact=True), _deadline())
            _no_duplicates(hits.ids, f"abort at {at}")
            assert [row[0] for row in hits.ids] == ids[:3]
            at += 1
        assert steps_in_all >= 4, steps_in_all
        await col.delete(ids[:1], None, _deadline())
        hits = await col.search(vecs[:1], SearchParams(k=3, exact=True), _deadline())
        assert ids[0] not in hits.ids[0]  # a deleted row is not served from a stray copy
        await rt.shutdown()

    asyncio.run(main())


def test_scale_refuses_above_the_creation_cap_at_once(tmp_path: Path) -> None:
    from shardvec.contract.errors import InvalidArgument
    from shardvec.contract.limits import MAX_SHARDS

    async def main() -> None:
        rt = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), shards=1))
        with pytest.raises(InvalidArgument, match=f"MAX_SHARDS.*{MAX_SHARDS + 1}"):
            await rt.scale("c", MAX_SHARDS + 1, None)
        with pytest.raises(InvalidArgument):
            CollectionSpec("d", IndexSettings(dim=DIM), shards=MAX_SHARDS + 1)
        assert rt.get("c").change is None and "c" not in rt.changes
        await rt.shutdown()

    asyncio.run(main())


def test_a_change_that_cannot_finish_is_shown_failed_and_can_be_aborted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(self: Any) -> None:
        raise FailedPrecondition("the switch cannot be made (a test's refusal)")

    monkeypatch.setattr(resharding.Resharder, "_switch", refuse)

    async def main() -> None:
        rt = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        col = await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), shards=3))
        model = Model(np.random.default_rng(3))
        ids, vecs, metas, docs = model.new_rows(500)
        await col.upsert(ids, vecs, metas, _deadline(), docs)
        await rt.scale("c", 2, None)  # a shrink: copies land on shards that are read
        job = rt.changes["c"]
        await asyncio.wait_for(job.done.wait(), 60)
        assert col.change is not None and col.change.phase == "failed"
        assert "cannot be made" in col.change.error
        with pytest.raises(FailedPrecondition, match=r"failed.*abort"):
            await rt.scale("c", 1, None)
        assert await col.count(None, _deadline()) == 500  # reads stay exact meanwhile
        await rt.abort_change("c")
        assert col.change is None and col.dual is None and not col.foreign
        assert rt.registry.change("c") is None
        held = await rows_held(col)
        assert held == 500 and col.layout.shards == 3
        with pytest.raises(FailedPrecondition, match="no layout change"):
            await rt.abort_change("c")
        await rt.shutdown()

    asyncio.run(main())


def test_writes_are_not_sent_round_again_while_buckets_are_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Routes change at a change's start and switch, not at its copy steps: a writer
    running through a copy of many steps is rerouted a handful of times at most (before,
    every step sent every waiting write round again: upserts waited 30 s behind a 100k-row
    copy)."""
    monkeypatch.setattr(change_plan, "COPY_ROWS", 10)  # many steps

    async def main() -> None:
        rt = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        col = await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), shards=2))
        model = Model(np.random.default_rng(5))
        ids, vecs, metas, docs = model.new_rows(2000)
        await col.upsert(ids, vecs, metas, _deadline(), docs)
        await rt.scale("c", 4, None)
        job = rt.changes["c"]
        writes = 0
        while not job.done.is_set():
            more, v, m, d = model.new_rows(20)
            await asyncio.gather(*(col.upsert(more[i::4], v[i::4], m[i::4], _deadline(),
                                              d[i::4]) for i in range(4)))  # fmt: skip
            writes += 4
        assert job.error is None and len(job.change.copied) > 20
        assert writes > 20
        assert col.atomic.rerouted <= 8, col.atomic.rerouted
        assert await col.count(None, _deadline()) == model.next
        await rt.shutdown()

    asyncio.run(main())
