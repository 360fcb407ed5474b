"""Online resharding without Ray: the bucket planner, and in-process collections going
2 -> 4 -> 3 -> 1 shards while a writer and a reader run, a rollback, and a coordinator stopped
in the middle of each phase (the resharding kill -9 tests are in tests/cluster)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.buckets import NUM_BUCKETS
from shardvec.contract.errors import FailedPrecondition, InvalidArgument
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.coordinator.changes import plan as change_plan
from shardvec.coordinator.changes.plan import plan_owners
from shardvec.coordinator.layout import Layout
from shardvec.coordinator.queries.reads import SearchParams
from shardvec.coordinator.runtime import CoordinatorRuntime
from tests.hooks.shardvec_test_observers import PAUSE_ENV, observing, pause_at_armed_phase
from tests.inproc import LocalControls, rows_held, wait_for

DIM = 8


@pytest.mark.parametrize(("before", "after"), [(1, 2), (2, 4), (4, 3), (3, 1), (2, 1024), (7, 5)])
def test_plan_moves_only_what_the_balance_needs(before: int, after: int) -> None:
    old = Layout.initial(before).owners
    new = plan_owners(old, after)
    sizes = np.bincount(new, minlength=after)
    assert sizes.min() >= NUM_BUCKETS // after and sizes.max() <= NUM_BUCKETS // after + 1
    moved = int(np.count_nonzero(old != new))
    # A bucket stays wherever its shard stays and is not over its share: the fewest moves.
    kept_possible = sum(min(int(np.count_nonzero(old == s)), int(sizes[s]))
                        for s in range(min(before, after)))
    assert moved == NUM_BUCKETS - kept_possible
    assert Layout(2, new).shards == after


def test_plan_refuses_counts_outside_the_buckets() -> None:
    with pytest.raises(InvalidArgument):
        plan_owners(Layout.initial(2).owners, NUM_BUCKETS + 1)


def _runtime(tmp_path: Path) -> CoordinatorRuntime:
    return CoordinatorRuntime(tmp_path, LocalControls(tmp_path))


def _rows(start: int, n: int) -> tuple[list[str], np.ndarray, list[str]]:
    ids = [f"r{i}" for i in range(start, start + n)]
    rng = np.random.default_rng(start)
    return ids, rng.standard_normal((n, DIM)).astype(np.float32), [f'{{"i": {i}}}' for i in
                                                                  range(start, start + n)]


def _deadline() -> float:
    return time.monotonic() + 30


async def _scale_and_wait(rt: CoordinatorRuntime, name: str, shards: int) -> None:
    await rt.scale(name, shards, None)
    job = rt.changes[name]
    await asyncio.wait_for(job.done.wait(), 60)
    assert job.error is None
    assert rt.get(name).change is None


def test_shards_change_while_a_writer_and_a_reader_run(tmp_path: Path) -> None:
    async def main() -> None:
        rt = _runtime(tmp_path)
        col = await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), shards=2))
        ids, vecs, metas = _rows(0, 3000)
        await col.upsert(ids, vecs, metas, _deadline())
        acked = set(ids)
        deleted: set[str] = set()
        stop = asyncio.Event()
        failures: list[BaseException] = []

        go = asyncio.Event()  # cleared: the writer pauses between its batches
        go.set()
        paused = asyncio.Event()

        async def writer() -> None:
            i = 3000
            while not stop.is_set():
                if not go.is_set():
                    paused.set()
                    await go.wait()
                    paused.clear()
                new_ids, v, m = _rows(i, 20)
                await col.upsert(new_ids, v, m, _deadline())
                acked.update(new_ids)
                gone = [f"r{i - 2990}"]
                deleted.update(gone)  # from here a read may or may not see them
                await col.delete(gone, None, _deadline())
                acked.difference_update(gone)
                i += 20
                await asyncio.sleep(0)

        async def reader() -> None:
            while not stop.is_set():
                try:
                    q = vecs[:4]
                    hits = await col.search(q, SearchParams(k=20, exact=True), _deadline())
                    for row in hits.ids:
                        assert len(row) == len(set(row)), "a row came twice"
                    wanted = set(sorted(acked)[:200])
                    got, _, _ = await col.get(sorted(wanted), False, False, _deadline())
                    assert wanted - deleted <= set(got) <= wanted  # no acked row missing
                    low, high = len(acked - deleted), len(acked) + 20
                    n = await col.count(None, _deadline())
                    assert low <= n <= high, (n, low, high, col.layout.shards, col.receivers)
                except BaseException as exc:
                    failures.append(exc)
                    raise
                await asyncio.sleep(0)

        tasks = [asyncio.ensure_future(writer()), asyncio.ensure_future(reader())]
        for shards in (4, 3, 1):
            await _scale_and_wait(rt, "c", shards)
            assert col.layout.shards == shards and len(col.shard_sets) == shards
            go.clear()  # rows held and count compared with no write between them
            await asyncio.wait_for(paused.wait(), 30)
            assert await rows_held(col) == await col.count(None, _deadline())
            go.set()
        stop.set()
        await asyncio.gather(*tasks)
        assert not failures
        assert col.layout.version == 4
        assert await col.count(None, _deadline()) == len(acked)
        got, _, _ = await col.get(sorted(acked), False, False, _deadline())
        assert set(got) == acked
        # Only the live shards' directories are left.
        shard_dirs = sorted(p.name for p in (tmp_path / "collections" / "c").iterdir())
        assert shard_dirs == ["shard-0000"]
        await rt.shutdown()
        # The layout survives a restart.
        rt2 = _runtime(tmp_path)
        await rt2.restore()
        col2 = rt2.get("c")
        assert col2.layout.version == 4 and col2.spec.shards == 1
        assert await col2.count(None, _deadline()) == len(acked)
        await rt2.shutdown()

    asyncio.run(main())


def test_a_second_scale_is_refused_and_abort_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(change_plan, "COPY_ROWS", 1)  # a bucket a step: the abort lands mid-copy

    async def main() -> None:
        rt = _runtime(tmp_path / "d")
        for shards, target in ((2, 4), (3, 2)):  # a growth, then a shrink (copies into shards read)
            name = f"c{shards}"
            col = await rt.create(CollectionSpec(name, IndexSettings(dim=DIM), shards=shards))
            ids, vecs, metas = _rows(0, 2000)
            await col.upsert(ids, vecs, metas, _deadline())
            await rt.scale(name, target, None)
            await wait_for(lambda c=col: c.change is not None and c.change.rows_copied > 0)
            with pytest.raises(FailedPrecondition, match="already in progress"):
                await rt.scale(name, 1, None)
            await rt.abort_change(name)
            more, v, m = _rows(9000, 50)
            await col.upsert(more, v, m, _deadline())
            assert col.layout.shards == shards and len(col.shard_sets) == shards
            assert col.layout.version == 1 and col.dual is None and col.change is None
            assert rt.registry.change(name) is None
            assert await col.count(None, _deadline()) == 2050
            assert await rows_held(col) == 2050  # no copy left on a shard that stays
            dirs = sorted(p.name for p in (tmp_path / "d" / "collections" / name).iterdir())
            assert dirs == [f"shard-{s:04d}" for s in range(shards)]
            with pytest.raises(FailedPrecondition, match="no layout change"):
                await rt.abort_change(name)
        await rt.shutdown()

    asyncio.run(main())


@pytest.mark.parametrize("phase", ["copied-step", "switched"])
def test_a_coordinator_stopped_in_a_phase_resumes_to_the_new_layout(
    tmp_path: Path, phase: str
) -> None:
    arm = tmp_path / "arm"

    async def first() -> set[str]:
        rt = _runtime(tmp_path / "d")
        col = await rt.create(CollectionSpec("c", IndexSettings(dim=DIM), shards=2))
        ids, vecs, metas = _rows(0, 2000)
        await col.upsert(ids, vecs, metas, _deadline())
        arm.write_text(phase)
        await rt.scale("c", 3, None)
        await wait_for(lambda: (tmp_path / "arm.reached").exists())
        # Writes during the pause (before the switch they are dual-written where copied).
        more, v, m = _rows(5000, 100)
        if phase == "copied-step":
            await col.upsert(more, v, m, _deadline())
            await col.delete(ids[:50], None, _deadline())
            acked = (set(ids) - set(ids[:50])) | set(more)
        else:
            acked = set(ids)
        await rt.shutdown()  # the coordinator stops here; the change is persisted
        return acked

    async def second(acked: set[str]) -> None:
        rt = _runtime(tmp_path / "d")
        await rt.restore()
        col = rt.get("c")
        if phase == "switched":  # cleaned before it is served
            assert col.layout.shards == 3
            assert await col.count(None, _deadline()) == len(acked)
        job = rt.changes["c"]
        await asyncio.wait_for(job.done.wait(), 60)
        assert job.error is None
        assert col.layout.shards == 3 and col.layout.version == 2
        assert await col.count(None, _deadline()) == len(acked)
        got, _, _ = await col.get(sorted(acked), False, False, _deadline())
        assert set(got) == acked
        for rs in col.shard_sets:
            assert rs.live()
        await rt.shutdown()

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PAUSE_ENV, str(arm))
        observing(mp, pause_at_armed_phase)
        acked = asyncio.run(first())
    asyncio.run(second(acked))
