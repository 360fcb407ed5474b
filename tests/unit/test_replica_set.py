"""The replica rules of ReplicaSet over in-process replicas (LocalShard over real engines, no
Ray): reads fail over, a failed write marks DEAD but a bad request or a timeout (the caller's
deadline, or the first replica's share of it) does not, a write is acknowledged once every LIVE
replica holds it (none live: Unavailable), and a dead replica catches up from a live peer while
writes go on, rejoining only when level."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import DeadlineExceeded, InvalidArgument, ReplicaDown, Unavailable
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.contract.shard_api import ShardLike
from shardvec.contract.types import ShardWrite
from shardvec.coordinator.replicas.replica_set import ReplicaSet, ReplicaState
from shardvec.coordinator.writes.atomic import AtomicWriter
from tests import inproc
from tests.inproc import LocalControl, wait_for

DIM = 8
SPEC = CollectionSpec("t", IndexSettings(dim=DIM, metric="euclidean"))


async def make_set(tmp_path: Path, n: int = 2) -> tuple[ReplicaSet, list[LocalControl]]:
    rs, controls, writer = await inproc.replica_set(tmp_path, SPEC, n)
    WRITERS[id(rs)] = writer
    return rs, controls


WRITERS: dict[int, AtomicWriter] = {}


def rows(rng: np.random.Generator, start: int, n: int) -> tuple[list[str], np.ndarray]:
    return [f"r{i}" for i in range(start, start + n)], rng.standard_normal((n, DIM)).astype(
        np.float32
    )


async def write(rs: ReplicaSet, ids: list[str], vectors: np.ndarray, timeout: float = 10) -> Any:
    """One atomic write of the rows to the set's shard (coordinator/writes/atomic.py)."""
    writes = {0: ShardWrite(ids=ids, vectors=vectors)}
    return (await WRITERS[id(rs)].apply(writes, time.monotonic() + timeout))[0]


async def count(rs: ReplicaSet, timeout: float = 10) -> int:
    async def call(shard: ShardLike, t: float) -> int:
        return await shard.count(None, t)

    return await rs.read(call, time.monotonic() + timeout)


def engine_count(c: LocalControl) -> int:
    assert c.engine is not None
    return c.engine.count()


def test_reads_fail_over_from_a_killed_replica(tmp_path: Path) -> None:
    async def main() -> None:
        rs, controls = await make_set(tmp_path)
        await write(rs, *rows(np.random.default_rng(0), 0, 50))
        controls[0].kill()
        assert [await count(rs) for _ in range(4)] == [50] * 4
        assert rs.replicas[0].state is not ReplicaState.LIVE
        assert rs.replicas[1].state is ReplicaState.LIVE
        await rs.close()

    asyncio.run(main())


def test_write_is_acked_when_every_live_replica_holds_it(tmp_path: Path) -> None:
    async def main() -> None:
        rs, controls = await make_set(tmp_path, 3)
        ack = await write(rs, *rows(np.random.default_rng(1), 0, 40))
        assert ack == 40  # rows affected on the shard
        assert [engine_count(c) for c in controls] == [40, 40, 40]
        assert rs.acked_seq == 1 and all(r.applied_seq == 1 for r in rs.replicas)
        await rs.close()

    asyncio.run(main())


def test_a_failed_write_marks_the_replica_dead_and_none_live_is_unavailable(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        rng = np.random.default_rng(2)
        rs, controls = await make_set(tmp_path)
        controls[1].kill()
        await write(rs, *rows(rng, 0, 10))  # still succeeds: one replica holds it
        assert rs.replicas[1].state is ReplicaState.DEAD
        assert rs.live() == [rs.replicas[0]] and rs.acked_seq == 1
        controls[0].kill()
        with pytest.raises(Unavailable):
            await write(rs, *rows(rng, 10, 10))  # the last live replica fails it
        assert rs.live() == []
        with pytest.raises(Unavailable, match="no live replica"):
            await write(rs, *rows(rng, 20, 10))
        assert rs.acked_seq == 1
        await rs.close()

    asyncio.run(main())


def test_a_bad_request_marks_nobody_dead(tmp_path: Path) -> None:
    async def main() -> None:
        rs, _ = await make_set(tmp_path)
        with pytest.raises(InvalidArgument):
            await write(rs, ["a"], np.ones((1, DIM + 1), dtype=np.float32))
        with pytest.raises(InvalidArgument):
            await write(rs, ["a"], np.full((1, DIM), np.nan, dtype=np.float32))
        assert [r.state for r in rs.replicas] == [ReplicaState.LIVE] * 2
        await write(rs, *rows(np.random.default_rng(3), 0, 5))
        assert await count(rs) == 5
        await rs.close()

    asyncio.run(main())


class SlowShard:
    """A replica that answers nothing within any deadline."""

    def __init__(self, inner: ShardLike) -> None:
        self.name, self.address = inner.name, inner.address

    async def count(self, where: Any, timeout: float) -> int:
        await asyncio.sleep(timeout)
        raise DeadlineExceeded(f"{self.name} timed out")

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize(
    "timeout",
    [
        0.2,  # under 0.5 s: every try gets the whole deadline
        1.2,  # the first of two replicas gets half of it, the second what is left
    ],
)
def test_a_caller_deadline_timeout_marks_nobody_dead(
    tmp_path: Path, n: int, timeout: float
) -> None:
    async def main() -> None:
        rs, _ = await make_set(tmp_path, n)
        for r in rs.replicas:
            r.client = SlowShard(r.remote())  # type: ignore[assignment]
        with pytest.raises(DeadlineExceeded):
            await count(rs, timeout=timeout)
        assert [r.state for r in rs.replicas] == [ReplicaState.LIVE] * n
        await rs.close()

    asyncio.run(main())


class HeavyOnce:
    """A healthy replica that runs `slow` calls past their timeout (a heavy search), then
    answers as usual."""

    def __init__(self, inner: ShardLike, slow: int = 1) -> None:
        self.inner, self.slow, self.calls = inner, slow, 0
        self.name, self.address = inner.name, inner.address

    async def count(self, where: Any, timeout: float) -> int:
        self.calls += 1
        if self.calls <= self.slow:
            await asyncio.sleep(timeout)
            raise DeadlineExceeded(f"{self.name}: count timed out after {timeout:.2f} s")
        return await self.inner.count(where, timeout)

    async def close(self) -> None:
        await self.inner.close()


def test_a_heavy_read_that_times_out_leaves_every_replica_live(tmp_path: Path) -> None:
    async def main() -> None:
        rs, _ = await make_set(tmp_path)
        await write(rs, *rows(np.random.default_rng(6), 0, 20))
        heavy = [HeavyOnce(r.remote()) for r in rs.replicas]
        for r, h in zip(rs.replicas, heavy, strict=True):
            r.client = h  # type: ignore[assignment]
        with pytest.raises(DeadlineExceeded):
            await count(rs, timeout=1.2)  # replica 0 gets 0.6 s, replica 1 the rest
        assert [h.calls for h in heavy] == [1, 1]
        assert [r.state for r in rs.replicas] == [ReplicaState.LIVE] * 2
        assert [await count(rs) for _ in range(4)] == [20] * 4  # both serve again
        assert [h.calls for h in heavy] == [3, 3]
        await rs.close()

    asyncio.run(main())


class LateProbes:
    """A replica whose health probe (`info`) answers late `late` times, then as usual; or whose
    connection is gone (`down`)."""

    def __init__(self, inner: ShardLike, late: int = 0, down: bool = False) -> None:
        self.inner, self.late, self.down, self.calls = inner, late, down, 0
        self.name, self.address = inner.name, inner.address

    async def info(self, timeout: float) -> Any:
        self.calls += 1
        if self.down:
            raise ReplicaDown(f"{self.name}: its connection was closed")
        if self.calls <= self.late:
            raise DeadlineExceeded(f"{self.name}: info timed out after {timeout:.2f} s")
        return await self.inner.info(timeout)

    async def close(self) -> None:
        await self.inner.close()


def test_one_late_health_probe_leaves_a_replica_live_two_in_a_row_take_it_out(
    tmp_path: Path,
) -> None:
    """A replica too busy to answer one probe within 2 s (every core busy) stays LIVE; two
    late answers in a row mark it DEAD, and a broken connection marks it DEAD at once."""

    async def main() -> None:
        rs, _ = await make_set(tmp_path, 3)
        once, twice = LateProbes(rs.replicas[0].remote(), late=1), LateProbes(
            rs.replicas[1].remote(), late=2)  # fmt: skip
        gone = LateProbes(rs.replicas[2].remote(), down=True)
        for r, wrapped in zip(rs.replicas, (once, twice, gone), strict=True):
            r.client = wrapped  # type: ignore[assignment]
        await rs.probe(timeout=0.5)
        assert [r.state for r in rs.replicas][:2] == [ReplicaState.LIVE] * 2
        assert rs.replicas[2].state is not ReplicaState.LIVE  # at once
        await rs.probe(timeout=0.5)
        assert rs.replicas[0].state is ReplicaState.LIVE  # answered in time: the count restarts
        assert rs.replicas[1].state is not ReplicaState.LIVE  # late twice in a row
        await rs.probe(timeout=0.5)
        first = rs.replicas[0]
        assert first.probes_late == 0 and first.state.value == ReplicaState.LIVE.value
        await rs.close()

    asyncio.run(main())


def test_a_first_replica_timeout_fails_over_within_the_deadline_and_stays_live(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        rs, _ = await make_set(tmp_path)
        await write(rs, *rows(np.random.default_rng(7), 0, 20))
        rs.replicas[0].client = HeavyOnce(rs.replicas[0].remote())  # type: ignore[assignment]
        start = time.monotonic()
        assert await count(rs, timeout=1.2) == 20  # replica 1 answers in what is left
        assert 0.5 < time.monotonic() - start < 1.2
        assert [r.state for r in rs.replicas] == [ReplicaState.LIVE] * 2
        await rs.close()

    asyncio.run(main())


def test_a_dead_replica_catches_up_while_writes_go_on_and_rejoins_level(tmp_path: Path) -> None:
    async def main() -> None:
        rng = np.random.default_rng(4)
        rs, controls = await make_set(tmp_path)
        back = rs.replicas[1]
        seen: list[tuple[ReplicaState, int, int]] = []
        original = back.set_state

        def record(state: ReplicaState, why: str = "") -> None:
            original(state, why)
            seen.append((state, back.applied_seq, rs.acked_seq))

        back.set_state = record  # type: ignore[method-assign]
        n = 0
        for _ in range(3):
            await write(rs, *rows(rng, n, 20))
            n += 20
        controls[1].kill()
        for _ in range(6):  # missed by replica 1; the first marks it DEAD
            await write(rs, *rows(rng, n, 20))
            n += 20
        assert back.state is ReplicaState.DEAD
        controls[1].restart()
        while back.state is not ReplicaState.LIVE:  # writes go on during the catch-up
            await write(rs, *rows(rng, n, 20))
            n += 20
            await asyncio.sleep(0.01)
            assert n < 20_000, "the replica never rejoined"
        for _ in range(3):
            await write(rs, *rows(rng, n, 20))
            n += 20
        assert ReplicaState.CATCHING_UP in [s for s, _, _ in seen]
        live = [(applied, acked) for s, applied, acked in seen if s is ReplicaState.LIVE]
        assert live and all(applied >= acked for applied, acked in live)  # rejoined level
        assert controls[1].catch_ups >= 1
        assert engine_count(controls[0]) == engine_count(controls[1]) == n
        e0, e1 = controls[0].engine, controls[1].engine
        assert e0 is not None and e1 is not None
        assert e0.applied_seq == e1.applied_seq == rs.acked_seq
        ids = [f"r{i}" for i in range(n)]
        v0 = np.stack([r.vector for r in e0.get(ids) if r is not None and r.vector is not None])
        v1 = np.stack([r.vector for r in e1.get(ids) if r is not None and r.vector is not None])
        np.testing.assert_array_equal(v0, v1)
        await rs.close()

    asyncio.run(main())


def test_recovery_waits_while_the_process_is_down(tmp_path: Path) -> None:
    async def main() -> None:
        rs, controls = await make_set(tmp_path)
        await write(rs, *rows(np.random.default_rng(5), 0, 10))
        controls[0].kill()
        rs.mark_dead(rs.replicas[0])
        await asyncio.sleep(0.5)
        assert rs.replicas[0].state is ReplicaState.DEAD
        controls[0].restart()
        await wait_for(lambda: rs.replicas[0].state is ReplicaState.LIVE)
        assert rs.replicas[0].applied_seq == rs.acked_seq == 1
        await rs.close()

    asyncio.run(main())
