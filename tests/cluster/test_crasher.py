"""A short crasher run per mode: kill -9 under load, then every acknowledged write is there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shardvec.cluster.crasher import Crasher
from shardvec.cluster.process import ServerProcess, free_port

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One `shardvec up` for the modes that kill parts of it (replicas, the coordinator) but
    never the server itself: each drill writes, reads and checks its own collection, dropped
    after its checks, and starts on a server that has come back from the previous drill's
    kills, as a server does in service. Mode `cluster` kills the whole server: its own."""
    root = tmp_path_factory.mktemp("crasher")
    server = ServerProcess(root / "data", free_port(), log_dir=root)
    try:
        yield server
    finally:
        server.stop()


# Drills just long enough for a kill or two each (the server's start and the check after it
# are most of a run); scale keeps 10 s so that a change can start and end under the kills.
# `cluster` runs first: its own server never runs beside the shared one.
@pytest.mark.parametrize(
    ("mode", "seconds", "interval"),
    [("cluster", 5, 2.5), ("replica", 6, 2.0), ("coordinator", 5, 2.0), ("scale", 10, 2.0)],
)
def test_crasher_loses_no_acknowledged_write(
    mode: str, seconds: float, interval: float, request: pytest.FixtureRequest
) -> None:
    server = None if mode == "cluster" else request.getfixturevalue("shared_server")
    rep = Crasher(mode, seconds=seconds, interval=interval, shards=2, replicas=2, batch=10,
                  log=lambda _msg: None, server=server, collection=f"crasher_{mode}").run()
    assert rep.kills >= 1
    assert rep.batches_acked > 10
    assert rep.lost_acked == 0
    assert rep.wrong_content == 0
    assert rep.phantoms == 0
    assert rep.partial_batches == 0  # atomic writes: a batch is all there or not at all
    assert rep.count_expected_min <= rep.count_total <= rep.count_expected_max
    assert rep.filtered_count == rep.filtered_fetched
    assert rep.replicas_level
    assert rep.duplicate_results == 0
    # Reads during the drill agree with the writer's model (counts, exact search, Get).
    assert rep.read_mismatches == 0, rep.errors
    assert rep.reads_checked >= 1, rep.errors
    if mode == "scale":
        # A change was started and ended under the kills. A second one starts only once the
        # first has ended, which 10 s on a loaded 2-core machine does not always allow (the
        # 60 s drill in BENCHMARKS.md section 6.2 makes six).
        assert rep.scales >= 1 and rep.layout_version >= 2, rep.errors
    if mode == "replica":
        assert rep.reads_failed == 0, rep.errors  # R=2 tolerates one dead replica per shard
    assert rep.ok
