"""A client's write batches sent with several in flight, the rows of each id in the order given.

One batch after another leaves the cluster idle between them: while the client waits for a
batch's answer (the last replica's insert, the commit's fsync) and then packs the next, the
other replicas have nothing to do. With `concurrency` batches in flight the next is already
there. Order still holds where it matters: a batch holding an id that a batch still in flight
also holds waits until that one has landed, so the later row of an id lands later, as it does
one batch after another. Rows of different ids are independent.

On an error, every batch before the failed one has landed, as one after another; the batches
sent after it that were in flight beside it finish before the error is raised, and those that
landed are named in a note on it (`exc.__notes__`; with one batch in flight there are none).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shardvec.contract.errors import InvalidArgument


@dataclass(frozen=True)
class Batch:
    """Rows [start, stop) of a call: their ids, and how to build their request."""

    start: int
    stop: int
    ids: Sequence[str]
    request: Callable[[], Any]


@dataclass
class _InFlight:
    batch: Batch
    ids: frozenset[str]
    answer: Future[int]


def send_batches(
    batches: Iterable[Batch],
    send: Callable[[Any], int],
    concurrency: int = 1,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Send each batch's request with `send` (which returns the rows it wrote), at most
    `concurrency` at once (module docstring); returns the rows written. `progress` gets each
    batch's row count as it lands, in the order given, on the calling thread."""
    if concurrency < 1:
        raise InvalidArgument(f"concurrency must be at least 1, got {concurrency}")
    written = 0
    if concurrency == 1:
        for b in batches:
            written += send(b.request())
            if progress is not None:
                progress(b.stop - b.start)
        return written
    flight: deque[_InFlight] = deque()
    failed: list[Batch] = []  # the batch whose send raised

    def land() -> None:
        nonlocal written
        f = flight.popleft()
        try:
            written += f.answer.result()
        except BaseException:
            failed.append(f.batch)
            raise
        if progress is not None:
            progress(f.batch.stop - f.batch.start)

    with ThreadPoolExecutor(concurrency, thread_name_prefix="shardvec-batches") as pool:
        try:
            for b in batches:
                ids = frozenset(b.ids)
                while flight and (
                    len(flight) >= concurrency or any(not ids.isdisjoint(f.ids) for f in flight)
                ):
                    land()
                request = b.request()  # packed here while the others are in flight
                flight.append(_InFlight(b, ids, pool.submit(send, request)))
            while flight:
                land()
        except BaseException as exc:
            # What was in flight finishes before the error goes up: say which of it landed.
            landed = {id(f): _landed(f.answer) for f in flight}
            if failed:  # those in flight were sent after the failed batch
                rows = _spans(f.batch for f in flight if landed[id(f)])
                if rows:
                    exc.add_note(f"sent after rows {_spans(failed)} and in flight beside them, "
                                 f"rows {rows} were written too")  # fmt: skip
            else:  # a request could not be built: those in flight were before it
                rows = _spans(f.batch for f in flight if not landed[id(f)])
                if rows:
                    exc.add_note(f"rows {rows}, in flight before it, were not written")
            flight.clear()
            raise
    return written


def _spans(batches: Iterable[Batch]) -> str:
    return ", ".join(f"[{b.start}, {b.stop})" for b in batches)


def _landed(answer: Future[int]) -> bool:
    """Whether a batch in flight when another failed was written (waits for its answer)."""
    try:
        answer.result()
    except BaseException:
        return False
    return True
