"""kill -9 during an online resharding (issue 15), on a real `shardvec up` server.

A change is stopped (a kill point: tests/hooks/) after a copy step is recorded, or right
after the switch is recorded, and then processes are killed with SIGKILL: a target replica and
then the coordinator (Ray restarts it, and the restart resumes the copy), or the whole server
(the restart finishes the cleanup before it serves). Each time the collection ends in the new
layout with every acknowledged row, each with its document, the exact count, no row on a shard
that does not own it, and every replica level.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from shardvec.cluster.client import Client
from shardvec.cluster.process import ServerProcess, free_port
from tests.hooks.shardvec_test_observers import hooked_env

pytestmark = pytest.mark.cluster

DIM = 16


def rows(start: int, n: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(start)
    return [f"r{i}" for i in range(start, start + n)], rng.standard_normal((n, DIM)).astype(
        np.float32
    )


def put(c: Client, start: int, n: int) -> set[str]:
    ids, vecs = rows(start, n)
    c.get_collection("c").upsert(ids, vecs, documents=[f"doc of {i}" for i in ids])
    return set(ids)


def check(c: Client, acked: set[str], shards: int) -> None:
    info = c.wait_layout("c", timeout=180, poll=0.3)
    assert info["shards"] == shards and info["change"] is None
    col = c.get_collection("c")
    got = col.get(sorted(acked), include_vectors=False, include_documents=True)
    assert len(got) == len(acked), f"{len(acked) - len(got)} acknowledged rows lost"
    assert all(r.document == f"doc of {r.id}" for r in got)
    assert col.count() == len(acked)
    reps = c.wait_live("c", 120, level=True, poll=0.3)
    # Replica 0 of every shard together holds each row once: no copy left on an old owner.
    assert sum(r["count"] for r in reps if r["replica"] == 0) == len(acked)


def pause(c: Client, arm: Path, phase: str, shards: int) -> None:
    reached = arm.parent / (arm.name + ".reached")
    reached.unlink(missing_ok=True)
    arm.write_text(phase)
    c.get_collection("c").scale(shards=shards, wait=False)
    deadline = time.monotonic() + 60
    while not reached.exists():
        assert time.monotonic() < deadline, f"the change never reached {phase!r}"
        time.sleep(0.05)


def kill_coordinator(server: ServerProcess) -> None:
    procs = server.processes("ray::Coordinator")
    assert len(procs) == 1, procs
    procs[0].send_signal(signal.SIGKILL)


def test_kill_9_in_each_phase_of_a_resharding_ends_in_the_new_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arm = tmp_path / "pause"
    hooked_env(monkeypatch, SHARDVEC_TEST_PAUSE_FILE=str(arm))
    data, port = tmp_path / "data", free_port()
    server = ServerProcess(data, port, log_dir=tmp_path)
    addr = f"127.0.0.1:{port}"
    try:
        with Client(addr, timeout=60) as c:
            c.create_collection("c", DIM, "euclidean", shards=2, replicas=2)
            acked = put(c, 0, 3000)

            # 1. Copying, 2 -> 4: writes during the pause are dual-written where copied; a
            # target replica is killed, then the coordinator (the restart resumes the copy).
            pause(c, arm, "copied-step", 4)
            acked |= put(c, 10_000, 300)
            target = next(r for r in c.describe("c")["replica_states"]
                          if r["shard"] == 3 and r["replica"] == 0)
            os.kill(target["pid"], signal.SIGKILL)
            kill_coordinator(server)
        with Client(addr, timeout=60) as c:
            check(c, acked, 4)
            acked |= put(c, 20_000, 100)

            # 2. Switched, 4 -> 3: the whole server dies; the restart cleans up, then serves.
            pause(c, arm, "switched", 3)
        server.kill()
        server = ServerProcess(data, port, log_dir=tmp_path)
        with Client(addr, timeout=60) as c:
            check(c, acked, 3)
            assert c.describe("c")["layout_version"] == 3
            assert not (data / "collections" / "c" / "shard-0003").exists()
    finally:
        server.stop()
