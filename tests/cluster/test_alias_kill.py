"""Aliases through a query front, and kill -9 of the coordinator during a switch, on a real
`shardvec up --front-port 0` server (coordinator/aliases.py).

Through a front: an alias created on the coordinator is resolved by the front (pushed with
the layouts), a switch is in force on the front when the switch returns, a scroll begun
through the alias on the front stays on its collection across the switch, and a reader
looping on the front while the alias switches back and forth sees no failed read. Then a switch is
stopped (a kill point: tests/hooks/) before its registry write or right after it, and the
coordinator process is killed with SIGKILL: Ray restarts it, and the alias names the old
collection (killed before the write) or the new one (after), never none, and reads through
it are served by the coordinator and by the front.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.cluster.client import Client
from shardvec.cluster.process import ServerProcess, free_port
from shardvec.contract.errors import ShardvecError
from shardvec.v1 import vector_search_pb2 as pb
from tests.hooks.shardvec_test_observers import hooked_env
from tests.waits import until

pytestmark = pytest.mark.cluster

DIM = 8
ROWS = {"a": 40, "b": 15}


def _count(c: Client, name: str) -> int | None:
    try:
        return c.get_collection(name).count()
    except ShardvecError:
        return None  # the coordinator (or the front's view) is coming back


def test_aliases_through_a_front_and_a_kill_9_during_a_switch_ends_on_one_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arm = tmp_path / "pause"
    hooked_env(monkeypatch, SHARDVEC_TEST_PAUSE_FILE=str(arm))
    port = free_port()
    server = ServerProcess(tmp_path / "data", port, "--front-port", "0", log_dir=tmp_path)
    coord = f"127.0.0.1:{port}"
    try:
        with Client(coord, timeout=60, discover=False) as c:
            for name, n in ROWS.items():
                col = c.create_collection(name, DIM, shards=2)
                vecs = np.random.default_rng(n).standard_normal((n, DIM)).astype(np.float32)
                col.upsert([f"{name}{i}" for i in range(n)], vecs)
            c.create_alias("live", "a")

            def fronts() -> list[str]:
                return [f.address for f in c.call("ClusterInfo", pb.ClusterInfoRequest()).fronts]

            until(lambda: bool(fronts()), 120, "a query front")
            front = Client(fronts()[0], timeout=60, discover=False)
            until(lambda: _count(front, "live") == ROWS["a"], 60, "the front resolves the alias")
            pages = front.get_collection("live").scroll_pages(page_size=10)
            first = next(pages)
            assert c.switch_alias("live", "b") == "a"
            assert front.get_collection("live").count() == ROWS["b"]  # pushed before the answer
            ids = [r.id for r in first.records] + [r.id for p in pages for r in p.records]
            assert sorted(ids) == sorted(f"a{i}" for i in range(ROWS["a"]))

            # A reader looping on the front while the alias switches back and forth.
            seen: list[int | str] = []
            stop = threading.Event()

            def reader() -> None:
                col = front.get_collection("live")
                while not stop.is_set():
                    try:
                        seen.append(col.count())
                    except ShardvecError as exc:
                        seen.append(f"{exc.code.name}: {exc.message}")

            thread = threading.Thread(target=reader)
            thread.start()
            try:
                for target in ("a", "b", "a", "b"):
                    c.switch_alias("live", target)
                    before = len(seen)
                    until(lambda b=before: len(seen) > b + 1, 30, "reads on the front")
            finally:
                stop.set()
                thread.join(60)
            assert set(seen) <= {ROWS["a"], ROWS["b"]}, [x for x in seen if isinstance(x, str)]

        # Killed before the switch is written: old; right after: new. Never none.
        for phase, target, ends_on in [("alias-switch-begun", "a", "b"),
                                       ("alias-switched", "a", "a")]:  # fmt: skip
            outcome = _switch_until_paused(coord, arm, phase, target)
            procs = server.processes("ray::Coordinator")
            assert len(procs) == 1, procs
            procs[0].send_signal(signal.SIGKILL)
            outcome["thread"].join(120)
            assert "ok" not in outcome, "the paused switch was acknowledged before the kill"
            with Client(coord, timeout=60, discover=False) as c:
                until(lambda c=c: _count(c, "live") is not None, 120, "the coordinator back")
                assert c.list_aliases() == {"live": ends_on}, phase
                assert c.describe("live")["name"] == ends_on
                assert _count(c, "live") == ROWS[ends_on]
                until(lambda e=ends_on: _count(front, "live") == ROWS[e], 120,
                      f"the front reads {ends_on} after the restart ({phase})")  # fmt: skip
            assert not arm.exists()
        front.close()
    finally:
        server.stop()


def _switch_until_paused(coord: str, arm: Path, phase: str, target: str) -> dict[str, Any]:
    """Start switching alias `live` to `target` with the pause armed at `phase`; return once
    the coordinator is there."""
    reached = arm.parent / (arm.name + ".reached")
    reached.unlink(missing_ok=True)
    arm.write_text(phase)
    outcome: dict[str, Any] = {}

    def switch() -> None:
        try:
            with Client(coord, timeout=120, discover=False) as c:
                c.switch_alias("live", target)
            outcome["ok"] = True
        except Exception as exc:
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=switch, daemon=True)
    outcome["thread"].start()
    until(reached.exists, 60, f"the switch reaching the {phase!r} pause", poll=0.02)
    return outcome
