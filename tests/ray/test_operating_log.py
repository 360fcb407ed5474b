"""`shardvec up`'s operating log on its own stderr: a replica killed with kill -9 shows as one
readable line per state change (live -> dead, dead -> catching_up, catching_up -> live), sent
from the coordinator's process through Ray to the terminal of `shardvec up`; stopping prints
where the data stays. `--log-json` giving the same events as JSON lines is tested on the
`--log-json` server of tests/ray/test_metrics.py (one server start fewer).

Before, `shardvec up` printed Ray's JSON lines of its own process only, and the coordinator's
lines stayed in Ray's worker-*.err files (coordinator/replicas/events.py, cluster/logs.py).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from shardvec.cluster.client import Client
from tests.procs import ServerProcess, free_port
from tests.waits import until

pytestmark = pytest.mark.ray

DIM = 8


def kill_one_replica(srv: ServerProcess, name: str) -> str:
    """Create `name` (1 shard, 2 replicas) with a few rows, kill -9 replica 1; returns its name."""
    with Client(srv.address, timeout=60) as client:
        col = client.create_collection(name, DIM, shards=1, replicas=2)
        vecs = np.random.default_rng(5).standard_normal((200, DIM)).astype(np.float32)
        col.upsert([f"r{i}" for i in range(200)], vecs)
        states = client.wait_live(name, level=True)
        pid = next(int(s["pid"]) for s in states if s["replica"] == 1)
        os.kill(pid, signal.SIGKILL)
        col.upsert(["after"], vecs[:1])  # a write the dead replica catches up on
        client.wait_live(name, level=True, timeout=120)
    return f"{name}/shard-0/replica-1"


def test_replica_state_changes_are_readable_lines_on_stderr(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data", free_port(), "--num-cpus", "2")
    try:
        replica = kill_one_replica(srv, "logs")
        until(lambda: f"replica {replica}: catching_up -> live" in srv.log.read_text(),
              timeout=30, what="the rejoin line on stderr")
    finally:
        assert srv.stop() == 0
    text = srv.log.read_text()
    lines = text.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    dead = [ln for ln in lines if f"replica {replica}: live -> dead (" in ln]
    assert len(dead) == 1, text[-3000:]
    assert re.fullmatch(rf"{stamp} INFO replica {re.escape(replica)}: live -> dead \(.+\)",
                        dead[0])
    assert any(re.fullmatch(rf"{stamp} INFO replica {re.escape(replica)}: dead -> catching_up "
                            r"\(process back, at seq \d+\)", ln) for ln in lines), text[-3000:]
    assert any(re.fullmatch(rf"{stamp} INFO replica {re.escape(replica)}: catching_up -> live "
                            r"\(caught up \d+ batches from replica-0, at seq \d+\)", ln)
               for ln in lines), text[-3000:]
    assert not any(ln.startswith("{") for ln in lines)  # no JSON unless asked for
    assert not any(ln.startswith("(") for ln in lines)  # no Ray prefix on forwarded lines
    assert f"shardvec stopped; the data stays in {(tmp_path / 'data').resolve()}" in text
