"""Micro-batching of concurrent small searches into one fan-out per batch.

Single-query calls with equal search parameters are coalesced: a call goes out at once when
fewer than `max_in_flight` batches of its kind are running (so an idle cluster adds no wait);
otherwise it joins the pending batch, which goes out as soon as a running batch finishes, or
when it holds `max_batch` queries, or after `window_s` at the latest; results are split back
per caller. Calls that already carry a batch of queries pass straight through.

Deadlines stay per caller: a merged batch runs under the latest deadline of the callers still
waiting for it, and a caller whose own deadline passes first gets DEADLINE_EXCEEDED alone and
leaves the batch, which carries on for the others. A batch every caller has left is not sent
(or, once running, is cancelled); the rows of callers who left before it went out are not
searched.

Why completion, not a short timer: a batch costs one RPC per shard plus a merge whatever its
size, and under load a batch takes longer than any sub-millisecond window, so a timer leaves
with batches of one query and the batches in flight grow without bound. Waiting for the
running batch lets the batch size follow the load, and one batch in flight per kind makes the
largest batches (the measurements behind both: docs/design-notes.md, "The query path").
`window_s` only bounds the wait behind a stalled batch (a replica failing over), so it sits
well above a batch's service time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shardvec.contract.errors import DeadlineExceeded

Runner = Callable[[np.ndarray, float], Awaitable[Any]]
Splitter = Callable[[Any, int, int], Any]


@dataclass
class _Member:
    queries: np.ndarray
    deadline: float
    future: asyncio.Future[Any]


@dataclass
class _Pending:
    members: list[_Member] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    size: int = 0
    task: asyncio.Task[None] | None = None

    def waiting(self) -> list[_Member]:
        """The members still waiting for their rows (not timed out, not cancelled)."""
        return [m for m in self.members if not m.future.done()]


class MicroBatcher:
    """Merges concurrent single-query searches of one kind (see the module docstring)."""

    def __init__(
        self,
        *,
        window_s: float = 0.1,
        max_batch: int = 256,
        max_in_flight: int = 1,
        passthrough_rows: int = 8,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.window_s = window_s
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.passthrough_rows = passthrough_rows
        self._pending: dict[Hashable, _Pending] = {}
        self._in_flight: dict[Hashable, int] = {}
        self._on_batch = on_batch
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(
        self, key: Hashable, queries: np.ndarray, deadline: float, run: Runner, split: Splitter
    ) -> Any:
        """Search `queries` (nq, dim) under `key`; `run` searches a batch, `split` slices.

        Raises DeadlineExceeded when `deadline` passes first, whatever the batch does."""
        if queries.shape[0] >= self.passthrough_rows:
            return await run(queries, deadline)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        p = self._pending.setdefault(key, _Pending())
        p.members.append(_Member(queries, deadline, fut))
        p.size += queries.shape[0]
        if self._in_flight.get(key, 0) < self.max_in_flight or p.size >= self.max_batch:
            self._flush(key, run, split)
        elif p.timer is None:
            p.timer = loop.call_later(self.window_s, self._flush, key, run, split)
        try:
            # On timeout or cancellation wait_for cancels `fut`: this caller has left the batch.
            return await asyncio.wait_for(fut, deadline - time.monotonic())
        except TimeoutError:
            raise DeadlineExceeded("search: deadline exceeded waiting for its batch") from None
        finally:
            if fut.cancelled():
                self._left(p)

    def _left(self, p: _Pending) -> None:
        """A caller gave up: a running batch nobody waits for any more is cancelled."""
        if p.task is not None and not p.waiting():
            p.task.cancel()

    def _flush(self, key: Hashable, run: Runner, split: Splitter) -> None:
        p = self._pending.pop(key, None)
        if p is None:
            return
        if p.timer is not None:
            p.timer.cancel()
        if not p.waiting():
            return  # every caller left while it waited: nothing to run
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        if self._on_batch is not None:
            self._on_batch(p.size)
        task = asyncio.ensure_future(self._run(key, p, run, split))
        p.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable, p: _Pending, run: Runner, split: Splitter) -> None:
        try:
            members = p.waiting()  # the rows of callers who already left are not searched
            if members:
                queries = [m.queries for m in members]
                batch = queries[0] if len(queries) == 1 else np.concatenate(queries)
                # The batch serves its most patient caller; the others stop at their own.
                result = await run(batch, max(m.deadline for m in members))
                start = 0
                for m in members:
                    n = m.queries.shape[0]
                    if not m.future.done():
                        m.future.set_result(
                            result if len(members) == 1 else split(result, start, n)
                        )
                    start += n
        except BaseException as exc:
            for m in p.members:
                if not m.future.done():
                    m.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            left = self._in_flight[key] - 1
            if left:
                self._in_flight[key] = left
            else:
                del self._in_flight[key]
            nxt = self._pending.get(key)
            if nxt is not None and nxt.timer is not None:
                self._flush(key, run, split)
