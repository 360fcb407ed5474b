"""The node search lock: one holder across processes and threads, released when its holder
is killed; a shard server makes large searches (only) take it. Also the settings and the
hnswlib thread count behind it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.limits import TOKEN_HEADER
from shardvec.contract.settings import IndexSettings
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.shard.engine import ShardEngine
from shardvec.shard.node_lock import NodeSearchLock
from shardvec.shard.server import ShardServer
from shardvec.v1 import shard_pb2, shard_pb2_grpc
from tests import inproc

REPO = Path(__file__).resolve().parents[2]


def _holder(lock_path: Path, ready: Path) -> subprocess.Popen[bytes]:
    """Another process that takes the lock, says so, and holds it until killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from shardvec.shard.node_lock import NodeSearchLock
        with NodeSearchLock(Path({str(lock_path)!r})).hold():
            Path({str(ready)!r}).write_text("held")
            time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "holder did not start"
        time.sleep(0.02)
    return proc


def _hold_in_thread(lock: NodeSearchLock) -> tuple[threading.Event, threading.Thread]:
    """A thread that takes `lock` and lets it go; the event is set once it has it."""
    got = threading.Event()

    def take() -> None:
        with lock.hold():
            got.set()

    t = threading.Thread(target=take, daemon=True)
    t.start()
    return got, t


def test_one_holder_across_processes_and_a_killed_holder_frees_it(tmp_path: Path) -> None:
    path = tmp_path / "search.lock"
    proc = _holder(path, tmp_path / "ready")
    lock = NodeSearchLock(path)
    try:
        got, waiter = _hold_in_thread(lock)
        assert not got.wait(0.3)  # the other process holds it
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 mid-hold: the kernel drops the lock
        proc.wait(10)
        assert got.wait(5.0)  # and the waiter gets it
        # joined before the lock is closed: a waiter left blocked would release a closed
        # file later (EBADF in its thread, reported under whichever test runs then)
        waiter.join(5.0)
        assert not waiter.is_alive()
        other = NodeSearchLock(path)
        got, taker = _hold_in_thread(other)
        assert got.wait(5.0)
        taker.join(5.0)
        other.close()
    finally:
        proc.kill()
        lock.close()


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    lock = NodeSearchLock(tmp_path / "search.lock")
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(20):
            with lock.hold():
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.001)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1
    lock.close()


def test_large_searches_wait_for_the_lock_and_small_ones_do_not(tmp_path: Path) -> None:
    settings = IndexSettings.from_dict({"dim": 8, "metric": "cosine"})
    engine = ShardEngine(tmp_path / "engine", settings, search_threads=2, build_threads=1)
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((200, 8)).astype(np.float32)
    inproc.write(engine, 1, [str(i) for i in range(200)], vecs, [{}] * 200)
    lock_path = tmp_path / "search.lock"
    server = ShardServer(
        engine, token="t", node_turn_rows=16, search_lock_path=lock_path
    )
    holder = _holder(lock_path, tmp_path / "ready")
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = shard_pb2_grpc.ShardStub(channel)

            def search(n: int) -> shard_pb2.ShardSearchResponse:
                req = shard_pb2.ShardSearchRequest(k=3)
                req.queries.dim = 8
                req.queries.packed = vecs[:n].astype("<f4").tobytes()
                resp: shard_pb2.ShardSearchResponse = stub.Search(
                    req, timeout=30, metadata=((TOKEN_HEADER, "t"),)
                )
                return resp

            small = search(4)  # below node_turn_rows: no wait while another holds the lock
            assert list(small.ids)[::3] == ["0", "1", "2", "3"]
            done: list[shard_pb2.ShardSearchResponse] = []
            t = threading.Thread(target=lambda: done.append(search(32)), daemon=True)
            t.start()
            t.join(0.5)
            assert not done  # waits for its turn
            holder.kill()
            holder.wait(10)
            t.join(20)
            assert done and list(done[0].ids)[::3] == [str(i) for i in range(32)]
    finally:
        holder.kill()
        server.stop(0)
        engine.close()


def test_search_threads_and_node_turn_rows_settings() -> None:
    base = {"data_dir": "/tmp/x"}
    s = CoordinatorSettings.from_dict(base)
    assert s.search_threads == 0 and s.node_turn_rows == 256 and s.batch_in_flight == 1
    CoordinatorSettings.from_dict({**base, "search_threads": 4, "node_turn_rows": 0})
    for key in ("search_threads", "node_turn_rows"):
        with pytest.raises(InvalidArgument, match=key):
            CoordinatorSettings.from_dict({**base, key: -1})


def test_engine_uses_one_thread_per_32_queries_up_to_search_threads(tmp_path: Path) -> None:
    settings = IndexSettings.from_dict({"dim": 8, "metric": "cosine"})
    e = ShardEngine(tmp_path, settings, search_threads=4, build_threads=1)
    try:
        assert [e._planner.threads_for(n) for n in (1, 31, 32, 64, 100, 1000)] == [1, 1, 1, 2, 3, 4]
        rng = np.random.default_rng(0)
        vecs = rng.standard_normal((300, 8)).astype(np.float32)
        inproc.write(e, 1, [str(i) for i in range(300)], vecs, [{}] * 300)
        one = e.search(vecs[:1], 5)
        many = e.search(vecs[:200], 5)  # four threads: the same answers as one at a time
        assert many.ids[0].tolist() == one.ids[0].tolist()
        assert all(many.ids[i, 0] == str(i) for i in range(200))
    finally:
        e.close()
