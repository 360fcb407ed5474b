"""A client's batches with several in flight (cluster/batches.py): at most `concurrency` at
once, an id's later row sent only once its earlier one has landed, progress in order, and on
an error the batches written beside the failed one named."""

from __future__ import annotations

import functools
import threading
from typing import Any

import pytest

from shardvec.cluster.batches import Batch, send_batches
from shardvec.contract.errors import InvalidArgument, Unavailable


def _batches(groups: list[list[str]]) -> list[Batch]:
    out, start = [], 0
    for ids in groups:
        out.append(Batch(start, start + len(ids), ids, functools.partial(list, ids)))
        start += len(ids)
    return out


class Recorder:
    """A `send` that records what was in flight. With `width`, each request is held until
    `width` requests are in the sender at once (or all `total` have come), so batches the
    client sends together are seen together whatever the scheduler does; a hold that never
    ends (the client never filled its pipeline) is counted in `stuck` after 10 s."""

    def __init__(self, width: int = 1, total: int = 0, fail: set[str] | None = None) -> None:
        self.width, self.total = width, total
        self.fail = fail or set()
        self.cond = threading.Condition()
        self.in_flight: list[list[str]] = []
        self.released: set[int] = set()
        self.started = self.most = self.stuck = 0
        self.events: list[tuple[str, str]] = []  # ("start" | "end", first id)

    def __call__(self, request: list[str]) -> int:
        with self.cond:
            self.in_flight.append(request)
            self.started += 1
            self.most = max(self.most, len(self.in_flight))
            self.events.append(("start", request[0]))
            if len(self.in_flight) >= self.width or self.started >= self.total:
                self.released.update(id(r) for r in self.in_flight)
                self.cond.notify_all()
            if not self.cond.wait_for(lambda: id(request) in self.released, timeout=10):
                self.stuck += 1
            self.in_flight.remove(request)
            self.events.append(("end", request[0]))
        if request[0] in self.fail:
            raise Unavailable(f"batch {request[0]} failed")
        return len(request)


def test_at_most_concurrency_in_flight_and_progress_in_order() -> None:
    groups = [[f"b{b}-{i}" for i in range(b + 1)] for b in range(8)]
    rec = Recorder(width=3, total=len(groups))
    seen: list[int] = []
    written = send_batches(_batches(groups), rec, concurrency=3, progress=seen.append)
    assert written == sum(len(g) for g in groups)
    assert rec.most == 3 and rec.stuck == 0  # the pipeline filled, and never past its width
    assert seen == [len(g) for g in groups]
    one = Recorder()
    assert send_batches(_batches(groups), one, concurrency=1) == written and one.most == 1


def test_a_repeated_id_waits_for_the_batch_in_flight_that_holds_it() -> None:
    groups = [["a", "x"], ["b"], ["c", "x"], ["d"]]  # "x" again in the third batch
    rec = Recorder(width=2, total=len(groups))
    send_batches(_batches(groups), rec, concurrency=4)
    assert rec.stuck == 0
    ev = rec.events
    assert ev.index(("end", "a")) < ev.index(("start", "c"))  # x's later row lands later
    assert ev.index(("start", "b")) < ev.index(("end", "a"))  # others still overlap


def test_an_error_names_the_batches_written_beside_the_failed_one() -> None:
    # No hold: which batches are in flight beside b follows from the client's own order (d
    # goes out when a lands, e would wait for b), whatever the sender's timing.
    rec = Recorder(fail={"b"})
    groups = [["a"], ["b", "b2"], ["c"], ["d"], ["e"]]
    with pytest.raises(Unavailable, match="batch b failed") as err:
        send_batches(_batches(groups), rec, concurrency=3)
    notes = " ".join(getattr(err.value, "__notes__", []))
    # a landed before b; c and d were in flight beside b, and landed; e was never sent
    assert "sent after rows [1, 3)" in notes and "rows [3, 4), [4, 5) were written too" in notes
    assert ("start", "e") not in rec.events
    assert not rec.in_flight  # nothing left running when the error is raised
    with pytest.raises(Unavailable) as one:
        send_batches(_batches(groups), Recorder(fail={"b"}), concurrency=1)
    assert not getattr(one.value, "__notes__", [])  # one in flight: nothing beside it


def test_a_request_that_cannot_be_built_stops_the_rest() -> None:
    def bad() -> Any:
        raise InvalidArgument("ttl_seconds[4]: must be >= 0")

    rec = Recorder()
    batches = [*_batches([["a"], ["b"]]), Batch(2, 3, ["c"], bad), *_batches([["d"]])]
    with pytest.raises(InvalidArgument, match="ttl_seconds"):
        send_batches(batches, rec, concurrency=2)
    assert not rec.in_flight and ("start", "d") not in rec.events


def test_concurrency_below_one_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="concurrency must be at least 1"):
        send_batches(_batches([["a"]]), Recorder(), concurrency=0)
