"""Node turns: FIFO per node, parallel across nodes, bounded by the deadline; a turn that
times out never marks a replica dead. Also the settings and hnswlib threads behind them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coordinator.config import CoordinatorSettings
from coordinator.replicas import Replica, ReplicaSet, ReplicaState
from coordinator.turns import NodeTurns, TurnTimeout
from shard.engine import ShardEngine
from shard.errors import DeadlineExceeded, InvalidArgument
from shard.settings import IndexSettings


def test_one_node_takes_turns_in_arrival_order_and_nodes_run_side_by_side() -> None:
    async def main() -> None:
        turns = NodeTurns()
        log: list[str] = []

        async def search(node: str, name: str) -> None:
            async with turns.turn(node, time.monotonic() + 10):
                log.append(f"start {name}")
                await asyncio.sleep(0.05)
                log.append(f"end {name}")

        start = time.perf_counter()
        await asyncio.gather(
            search("a", "a1"), search("a", "a2"), search("a", "a3"), search("b", "b1")
        )
        elapsed = time.perf_counter() - start
        on_a = [e for e in log if "a" in e.split()[1]]
        assert on_a == ["start a1", "end a1", "start a2", "end a2", "start a3", "end a3"]
        assert log.index("start b1") < log.index("end a1")  # node b did not wait for node a
        assert elapsed < 0.15 + 0.1  # three turns of 0.05 s on a, b alongside

    asyncio.run(main())


def test_a_turn_not_reached_by_the_deadline_raises_and_leaves_the_lock_usable() -> None:
    async def main() -> None:
        turns = NodeTurns()
        release = asyncio.Event()

        async def holder() -> None:
            async with turns.turn("n", time.monotonic() + 10):
                await release.wait()

        task = asyncio.ensure_future(holder())
        await asyncio.sleep(0)
        with pytest.raises(TurnTimeout, match="turn"):
            async with turns.turn("n", time.monotonic() + 0.05):
                raise AssertionError("must not get the turn")
        assert issubclass(TurnTimeout, DeadlineExceeded)
        release.set()
        await task
        async with turns.turn("n", time.monotonic() + 1):  # the timed-out waiter left no hold
            pass

    asyncio.run(main())


class _Remote:
    def __init__(self, name: str, exc: BaseException | None = None) -> None:
        self.name = name
        self.node_id = "n"
        self.exc = exc
        self.calls = 0

    async def search(self) -> str:
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        return self.name


def _replica_set(remotes: list[_Remote]) -> ReplicaSet:
    replicas = []
    for i, remote in enumerate(remotes):
        r = Replica(0, i, control=None, token="t", label="c")  # type: ignore[arg-type]
        r.client = remote  # type: ignore[assignment]
        r.state = ReplicaState.LIVE
        replicas.append(r)
    return ReplicaSet(0, replicas, 1, lambda upto: upto, 1 << 20)


def test_read_moves_on_after_a_turn_timeout_without_marking_the_replica_dead() -> None:
    async def main() -> None:
        first = _Remote("r0", TurnTimeout("deadline exceeded waiting for node n's turn"))
        second = _Remote("r1")
        rs = _replica_set([first, second])

        async def call(remote: Any, timeout: float) -> str:
            return str(await remote.search())

        assert await rs.read(call, time.monotonic() + 5) == "r1"
        assert [r.state for r in rs.replicas] == [ReplicaState.LIVE, ReplicaState.LIVE]

    asyncio.run(main())


def test_search_threads_and_node_turn_rows_settings() -> None:
    base = {"data_dir": "/tmp/x"}
    s = CoordinatorSettings.from_dict(base)
    assert s.search_threads == 0 and s.node_turn_rows == 256 and s.batch_in_flight == 1
    CoordinatorSettings.from_dict({**base, "search_threads": 4, "node_turn_rows": 0})
    for key in ("search_threads", "node_turn_rows"):
        with pytest.raises(InvalidArgument, match=key):
            CoordinatorSettings.from_dict({**base, key: -1})


def test_engine_uses_one_thread_per_32_queries_up_to_search_threads(tmp_path: Path) -> None:
    settings = IndexSettings.from_dict({"dim": 8, "metric": "cosine"})
    e = ShardEngine(tmp_path, settings, search_threads=4, build_threads=1)
    try:
        assert [e._threads_for(n) for n in (1, 31, 32, 64, 100, 1000)] == [1, 1, 1, 2, 3, 4]
        rng = np.random.default_rng(0)
        vecs = rng.standard_normal((300, 8)).astype(np.float32)
        e.upsert(1, [str(i) for i in range(300)], vecs, [{}] * 300)
        one = e.search(vecs[:1], 5)
        many = e.search(vecs[:200], 5)  # four threads: the same answers as one at a time
        assert many.ids[0].tolist() == one.ids[0].tolist()
        assert all(many.ids[i, 0] == str(i) for i in range(200))
    finally:
        e.close()
