"""kill -9 between the phases of an atomic write ("Hardening", issue 13: failed or interrupted
operations leave partial data), on a real `shardvec up` server.

A batch spanning both shards is stopped (a kill point: tests/hooks/) after it is staged
on every replica, or after its commit is recorded in the registry, and then killed with SIGKILL:
the coordinator process alone (the replicas run on, holding the batch staged; Ray restarts the
coordinator, which resolves them), or every process of the server (the replicas restart from
their stores with the batch staged). Each time the batch is then wholly absent (killed before
the decision: the client saw an error) or wholly present (killed after it), never partial, and
every acknowledged batch is present, on every replica.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.cluster.client import Client
from shardvec.cluster.process import ServerProcess, free_port
from tests.hooks.shardvec_test_observers import hooked_env

pytestmark = pytest.mark.cluster

DIM = 16
ROWS = 400


def batch(b: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(b)
    return [f"b{b}-{i}" for i in range(ROWS)], rng.standard_normal((ROWS, DIM)).astype(
        np.float32
    )


def put(c: Client, b: int) -> None:
    """Upsert batch `b`, each row with its document (staged and committed with the rows)."""
    ids, vecs = batch(b)
    c.get_collection("c").upsert(ids, vecs, documents=[f"doc of {i}" for i in ids])


def present(c: Client, b: int) -> int:
    """Rows of batch `b` held, each with its own document."""
    got = c.get_collection("c").get(batch(b)[0], include_vectors=False, include_documents=True)
    assert all(r.document == f"doc of {r.id}" for r in got), "a row without its document"
    return len(got)


def test_kill_9_between_stage_and_commit_leaves_the_batch_whole_or_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arm = tmp_path / "pause"
    hooked_env(monkeypatch, SHARDVEC_TEST_PAUSE_FILE=str(arm))
    data, port = tmp_path / "data", free_port()
    server = ServerProcess(data, port, log_dir=tmp_path)
    assert "no collections yet" in server.banner[1], server.banner  # `shardvec up`'s summary
    acked: list[int] = []
    try:
        with Client(f"127.0.0.1:{port}", timeout=60) as c:
            c.create_collection("c", DIM, "euclidean", shards=2, replicas=2)
            for b in range(3):
                put(c, b)
                acked.append(b)

        # (The whole server killed after staging resolves like the coordinator alone: no
        # decision, dropped; tests/unit/test_atomic.py covers a replica reopening with one.)
        cases = [(10, "staged", "coordinator", 0), (11, "decided", "coordinator", ROWS),
                 (13, "decided", "cluster", ROWS)]
        for b, phase, victim, want in cases:
            outcome = _write_until_paused(port, arm, phase, b)
            if victim == "coordinator":
                procs = server.processes("ray::Coordinator")
                assert len(procs) == 1, procs
                procs[0].send_signal(signal.SIGKILL)
            else:
                server.kill()
            outcome["thread"].join(120)
            assert "ok" not in outcome, "the paused write was acknowledged before the kill"
            if victim == "cluster":
                server = ServerProcess(data, port, log_dir=tmp_path)
                assert "serving 1 collection(s): c (" in server.banner[1], server.banner
            with Client(f"127.0.0.1:{port}", timeout=60) as c:
                c.wait_live("c", 120, level=True, poll=0.5)
                got = present(c, b)
                assert got == want, f"{victim} killed after {phase}: {got} of {ROWS} rows"
                for a in acked:
                    assert present(c, a) == ROWS, f"acknowledged batch {a} lost"
                if want:
                    acked.append(b)
                assert c.get_collection("c").count() == ROWS * len(acked)
                # Writes go on after each kill, and every replica of a shard stays level.
                put(c, 100 + b)
                acked.append(100 + b)
                reps = c.wait_live("c", 60, level=True, poll=0.2)
                assert len(reps) == 4
            assert not arm.exists()
    finally:
        server.stop()


def _write_until_paused(port: int, arm: Path, phase: str, b: int) -> dict[str, Any]:
    """Start upserting batch `b` with the pause armed at `phase`; return once it is there."""
    reached = arm.parent / (arm.name + ".reached")
    reached.unlink(missing_ok=True)
    arm.write_text(phase)
    outcome: dict[str, Any] = {}

    def write() -> None:
        try:
            with Client(f"127.0.0.1:{port}", timeout=120) as c:
                put(c, b)
            outcome["ok"] = True
        except Exception as exc:
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=write, daemon=True)
    outcome["thread"].start()
    deadline = time.monotonic() + 60
    while not reached.exists():
        assert time.monotonic() < deadline, f"the write never reached the {phase!r} pause"
        time.sleep(0.02)
    return outcome
