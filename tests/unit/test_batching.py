"""MicroBatcher: no wait when idle, one batch behind a running one, the window as a valve."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import DeadlineExceeded
from shardvec.coordinator.queries.batching import MicroBatcher
from tests.inproc import wait_for


class Runner:
    """Records every batch; each run waits for `gate` (when set) so tests control timing."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.batches: list[np.ndarray] = []
        self.gate = gate

    async def __call__(self, batch: np.ndarray, deadline: float) -> np.ndarray:
        self.batches.append(batch)
        if self.gate is not None and len(self.batches) == 1:
            await self.gate.wait()
        if np.isnan(batch).any():
            raise ValueError("bad query")
        return batch * 2  # one row of results per query row


def split(result: np.ndarray, start: int, n: int) -> np.ndarray:
    return result[start : start + n]


def q(i: float) -> np.ndarray:
    return np.full((1, 3), i, dtype=np.float32)


async def _submit(b: MicroBatcher, run: Runner, i: float, key: Any = "k") -> np.ndarray:
    out: np.ndarray = await b.submit(key, q(i), time.monotonic() + 10, run, split)
    return out


def test_idle_call_goes_out_at_once() -> None:
    async def main() -> None:
        b = MicroBatcher(window_s=5.0)
        run = Runner()
        start = time.perf_counter()
        res = await _submit(b, run, 1.0)
        assert time.perf_counter() - start < 1.0  # far below the window: no wait
        assert len(run.batches) == 1 and res.tolist() == [[2.0, 2.0, 2.0]]

    asyncio.run(main())


def test_calls_behind_a_running_batch_go_out_together_when_it_finishes() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        sizes: list[int] = []
        b = MicroBatcher(window_s=5.0, max_in_flight=1, on_batch=sizes.append)
        run = Runner(gate)
        first = asyncio.ensure_future(_submit(b, run, 0.0))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(_submit(b, run, float(i))) for i in range(1, 11)]
        await wait_for(lambda: "k" in b._pending and b._pending["k"].size == 10)
        assert len(run.batches) == 1  # the ten wait behind the running batch
        gate.set()
        results = await asyncio.gather(first, *rest)
        assert sizes == [1, 10]
        assert [r[0, 0] for r in results] == [2.0 * i for i in range(11)]  # split per caller

    asyncio.run(main())


def test_window_bounds_the_wait_behind_a_stalled_batch() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        b = MicroBatcher(window_s=0.05, max_in_flight=1)
        run = Runner(gate)
        stalled = asyncio.ensure_future(_submit(b, run, 0.0))
        await asyncio.sleep(0)
        start = time.perf_counter()
        res = await asyncio.gather(_submit(b, run, 1.0), _submit(b, run, 2.0))
        waited = time.perf_counter() - start
        assert 0.04 <= waited < 2.0
        assert [r[0, 0] for r in res] == [2.0, 4.0] and not stalled.done()
        gate.set()
        assert (await stalled)[0, 0] == 0.0

    asyncio.run(main())


def test_full_batch_goes_out_without_waiting() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        sizes: list[int] = []
        b = MicroBatcher(window_s=5.0, max_batch=4, max_in_flight=1, on_batch=sizes.append)
        run = Runner(gate)
        stalled = asyncio.ensure_future(_submit(b, run, 0.0))
        await asyncio.sleep(0)
        res = await asyncio.gather(*(_submit(b, run, float(i)) for i in range(1, 5)))
        assert sizes == [1, 4] and [r[0, 0] for r in res] == [2.0, 4.0, 6.0, 8.0]
        gate.set()
        await stalled

    asyncio.run(main())


def test_batches_pass_through_and_errors_reach_every_caller() -> None:
    async def main() -> None:
        sizes: list[int] = []
        b = MicroBatcher(passthrough_rows=8, on_batch=sizes.append)
        run = Runner()
        big = np.ones((8, 3), dtype=np.float32)
        out = await b.submit("k", big, time.monotonic() + 10, run, split)
        assert out.shape == (8, 3) and sizes == []  # straight through, not counted as a batch
        gate = asyncio.Event()
        b2 = MicroBatcher(window_s=5.0, max_in_flight=1)
        run2 = Runner(gate)
        first = asyncio.ensure_future(_submit(b2, run2, 0.0))
        await asyncio.sleep(0)
        bad = [asyncio.ensure_future(_submit(b2, run2, v)) for v in (1.0, float("nan"))]
        await asyncio.sleep(0)
        gate.set()
        await first
        for fut in bad:  # one bad query fails its whole batch, and every caller hears it
            with pytest.raises(ValueError, match="bad query"):
                await fut

    asyncio.run(main())


class SlowRunner:
    """Takes `seconds` per batch and honours the deadline it is given, as a fan-out does."""

    def __init__(self, seconds: float, honour_deadline: bool = True) -> None:
        self.seconds = seconds
        self.honour_deadline = honour_deadline
        self.batches: list[np.ndarray] = []
        self.deadlines: list[float] = []
        self.cancelled = 0

    async def __call__(self, batch: np.ndarray, deadline: float) -> np.ndarray:
        self.batches.append(batch)
        self.deadlines.append(deadline)
        try:
            limit = deadline - time.monotonic() if self.honour_deadline else None
            await asyncio.wait_for(asyncio.sleep(self.seconds), limit)
        except TimeoutError:
            raise DeadlineExceeded("batch deadline exceeded") from None
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return batch * 2


def test_a_short_deadline_fails_only_its_own_caller_in_a_merged_batch() -> None:
    async def main() -> None:
        sizes: list[int] = []
        b = MicroBatcher(window_s=5.0, max_batch=2, max_in_flight=1, on_batch=sizes.append)
        run = SlowRunner(0.05)

        async def call(i: float, timeout: float) -> np.ndarray:
            out: np.ndarray = await b.submit("k", q(i), time.monotonic() + timeout, run, split)
            return out

        calls: list[tuple[float, asyncio.Future[np.ndarray]]] = []
        for i in range(20):  # a 5 ms client and a 10 s client, interleaved
            timeout = 0.005 if i % 2 == 0 else 10.0
            calls.append((timeout, asyncio.ensure_future(call(float(i), timeout))))
            await asyncio.sleep(0)
        results = await asyncio.gather(*(f for _, f in calls), return_exceptions=True)
        assert max(sizes) == 2  # the two clients did share batches
        for i, ((timeout, _), res) in enumerate(zip(calls, results, strict=True)):
            if timeout > 1:
                assert isinstance(res, np.ndarray) and res[0, 0] == 2.0 * i, res
            else:
                assert isinstance(res, DeadlineExceeded), res
        for batch, deadline in zip(run.batches, run.deadlines, strict=True):
            if (batch[:, 0] % 2 == 1).any():  # a batch holding a 10 s call runs to its deadline
                assert deadline - time.monotonic() > 5

    asyncio.run(main())


def test_a_batch_whose_callers_all_left_is_dropped_or_cancelled() -> None:
    async def main() -> None:
        b = MicroBatcher(window_s=5.0, max_batch=2, max_in_flight=1)
        run = SlowRunner(1.0, honour_deadline=False)  # only a cancel stops it early

        async def call(i: float) -> None:
            await b.submit("k", q(i), time.monotonic() + 0.02, run, split)

        results = await asyncio.gather(*(call(float(i)) for i in range(5)), return_exceptions=True)
        assert all(isinstance(r, DeadlineExceeded) for r in results), results
        await wait_for(lambda: not b._tasks)  # every batch ended: cancelled, not run out
        assert run.cancelled == len(run.batches) >= 1  # no batch ran on for nobody
        assert b._in_flight == {}

    asyncio.run(main())
