"""The operating log's rule (coordinator/replicas/events.py): a replica's state change is one
INFO line naming both states and why; a refusal is one WARNING line, at most one per kind
every REFUSAL_EVERY_S with the count left out (the tail of a flood told when the shard is
live again), and its error is marked so the API does not log
it once more per request."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from shardvec.contract.errors import Unavailable
from shardvec.coordinator.replicas import events
from shardvec.coordinator.replicas.replica_set import Replica, ReplicaSet, ReplicaState

LOGGER = "shardvec.coordinator.replicas.events"


def shard(states: list[ReplicaState]) -> ReplicaSet:
    replicas = []
    for i, state in enumerate(states):
        r = Replica(1, i, control=None, label="docs")  # type: ignore[arg-type]
        r.state = state
        replicas.append(r)
    return ReplicaSet(1, replicas)


def test_a_state_change_is_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    r = shard([ReplicaState.LIVE]).replicas[0]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        r.set_state(ReplicaState.DEAD, "health probe unanswered")
        r.set_state(ReplicaState.DEAD, "again")  # no change, no line
    assert [(x.levelname, x.getMessage()) for x in caplog.records] == [
        ("INFO", "replica docs/shard-1/replica-0: live -> dead (health probe unanswered)")
    ]
    assert (caplog.records[0].replica, caplog.records[0].to) == ("docs/shard-1/replica-0", "dead")


def test_refusals_are_warnings_once_per_kind_and_marked(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(events, "_last", {})
    rs = shard([ReplicaState.DEAD, ReplicaState.CATCHING_UP])

    async def read() -> Unavailable:
        with pytest.raises(Unavailable) as got:
            await rs.read(lambda shard, timeout: asyncio.sleep(0), time.monotonic() + 5)
        return got.value

    with caplog.at_level(logging.INFO, logger=LOGGER):
        first = asyncio.run(read())
        for _ in range(3):
            asyncio.run(read())
        now[0] += events.REFUSAL_EVERY_S + 1
        asyncio.run(read())
    lines = [(x.levelname, x.getMessage()) for x in caplog.records]
    assert lines == [
        ("WARNING", "refused: a read of docs/shard-1: no live replica (replica-0 dead, "
                    "replica-1 catching_up)"),
        ("WARNING", "refused: a read of docs/shard-1: no live replica (replica-0 dead, "
                    "replica-1 catching_up) (3 more refused alike in the last 6 s)"),
    ]
    assert events.already_logged(first)
    assert not events.already_logged(Unavailable("another"))

    caplog.clear()  # a flood's tail is told when the shard has a live replica again
    with caplog.at_level(logging.INFO, logger=LOGGER):
        asyncio.run(read())
        asyncio.run(read())
        rs.replicas[1].set_state(ReplicaState.LIVE, "caught up")
    assert [x.getMessage() for x in caplog.records] == [
        "replica docs/shard-1/replica-1: catching_up -> live (caught up)",
        "refused: a read of docs/shard-1: 2 more refused alike until "
        "docs/shard-1/replica-1 was live again",
    ]
