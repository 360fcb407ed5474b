"""kill -9 of a real `shardvec up` server in the middle of a long operation, one server for
the three ("Hardening", issue 13, and online resharding, issue 15): an atomic write, a
resharding and a snapshot restore, each stopped in a phase (a kill point: tests/hooks/, or
polling) and killed with SIGKILL, some phases the coordinator alone (Ray restarts it), the
last the whole server, restarted on the same data directory.

Each test ends by killing the whole server and starting it again, which is what the next
test then runs on: one server start fewer per test than a fresh server each (the restart
under test is the next one's start). Each works in its own collections and drops them after
its checks, so a restart serves only the collections of the test that killed it; the
atomic write's test runs first and checks a fresh server's summary.

- Atomic write: a batch spanning both shards is stopped after it is staged on every replica,
  or after its commit is recorded in the registry, then the coordinator process alone (the
  replicas run on, holding the batch staged; Ray restarts the coordinator, which resolves
  them) or every process of the server (the replicas restart from their stores with the
  batch staged) is killed. Each time the batch is then wholly absent (killed before the
  decision: the client saw an error) or wholly present (killed after it), never partial, and
  every acknowledged batch is present, on every replica.
- Resharding: a change is stopped after a copy step is recorded, or right after the switch
  is recorded; then a target replica and the coordinator (the restart resumes the copy), or
  the whole server (the restart finishes the cleanup before it serves). Each time the
  collection ends in the new layout with every acknowledged row, each with its document, the
  exact count, no row on a shard that does not own it, and every replica level.
- Restore: a 40,000-row archive is restored while the test polls the new collection; as soon
  as it is seen part way (rows being copied, or the restore's FAILED_PRECONDITION refusal)
  the whole server is killed. The collection is then absent or complete, never partial, and
  no snapshot work directory remains.
- Last, a clean stop (SIGTERM) and start on the same data directory: the same collections and
  results, the embedded Ray's search-lock files gone, the embedder warm before it serves, and
  the recall tuner's breadth kept from the registry, not tuned again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.cluster.client import Client
from shardvec.cluster.process import ServerProcess, free_port
from shardvec.contract.errors import FailedPrecondition, NotFound
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.shard.node_lock import default_lock_path
from tests.hooks.shardvec_test_observers import hooked_env
from tests.waits import until

pytestmark = pytest.mark.cluster

DIM = 16
# How often the recall tuner looks at each collection (2 s), the default a server starts with.
TUNER_ROUND_S = CoordinatorSettings("-").recall_tuner_interval_s
# The module's server tunes without pauses, so the restart test's collection is tuned in the
# 10 s of still rows and its searches' own time (what is tested is that the tune is kept).
UP_OPTIONS = ("--recall-tuner-cpu-share", "1")


@dataclass
class Killable:
    """The module's server: its data directory, port and kill-point arm file."""

    root: Path
    port: int
    server: ServerProcess

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def arm(self) -> Path:
        return self.root / "pause"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self.server = ServerProcess(self.data, self.port, *UP_OPTIONS, log_dir=self.root)
        return self.server

    def kill_coordinator(self) -> None:
        procs = self.server.processes("ray::Coordinator")
        assert len(procs) == 1, procs
        procs[0].send_signal(signal.SIGKILL)


@pytest.fixture(scope="module")
def killable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Killable]:
    root = tmp_path_factory.mktemp("kill-restarts")
    with pytest.MonkeyPatch.context() as mp:
        hooked_env(mp, SHARDVEC_TEST_PAUSE_FILE=str(root / "pause"))  # for every (re)start
        port = free_port()
        k = Killable(root, port, ServerProcess(root / "data", port, *UP_OPTIONS, log_dir=root))
        try:
            yield k
        finally:
            k.server.stop()


@pytest.fixture()
def server(killable: Killable) -> Iterator[Killable]:
    """The module's server for one test, serving (a test that failed part way may have left
    it killed or paused: then a fresh start on the same data)."""
    for path in (killable.arm, killable.arm.parent / (killable.arm.name + ".reached")):
        path.unlink(missing_ok=True)
    if killable.server.proc.poll() is not None:
        killable.start()
    yield killable


# --- an atomic write --------------------------------------------------------------------

ROWS = 400


def batch(b: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(b)
    return [f"b{b}-{i}" for i in range(ROWS)], rng.standard_normal((ROWS, DIM)).astype(
        np.float32
    )


def put_batch(c: Client, b: int) -> None:
    """Upsert batch `b`, each row with its document (staged and committed with the rows)."""
    ids, vecs = batch(b)
    c.get_collection("c").upsert(ids, vecs, documents=[f"doc of {i}" for i in ids])


def present(c: Client, b: int) -> int:
    """Rows of batch `b` held, each with its own document."""
    got = c.get_collection("c").get(batch(b)[0], include_vectors=False, include_documents=True)
    assert all(r.document == f"doc of {r.id}" for r in got), "a row without its document"
    return len(got)


def test_kill_9_between_stage_and_commit_leaves_the_batch_whole_or_absent(
    server: Killable,
) -> None:
    arm, port = server.arm, server.port
    assert "no collections yet" in server.server.banner[1], server.server.banner
    acked: list[int] = []
    with Client(server.address, timeout=60) as c:
        c.create_collection("c", DIM, "euclidean", shards=2, replicas=2)
        for b in range(3):
            put_batch(c, b)
            acked.append(b)

    # (The whole server killed after staging resolves like the coordinator alone: no
    # decision, dropped; tests/unit/test_atomic.py covers a replica reopening with one.)
    cases = [(10, "staged", "coordinator", 0), (11, "decided", "coordinator", ROWS),
             (13, "decided", "cluster", ROWS)]
    for b, phase, victim, want in cases:
        outcome = _write_until_paused(port, arm, phase, b)
        if victim == "coordinator":
            server.kill_coordinator()
        else:
            server.server.kill()
        outcome["thread"].join(120)
        assert "ok" not in outcome, "the paused write was acknowledged before the kill"
        if victim == "cluster":
            server.start()
            assert "serving 1 collection(s): c (" in server.server.banner[1], server.server.banner
        with Client(server.address, timeout=60) as c:
            c.wait_live("c", 120, level=True, poll=0.5)
            got = present(c, b)
            assert got == want, f"{victim} killed after {phase}: {got} of {ROWS} rows"
            for a in acked:
                assert present(c, a) == ROWS, f"acknowledged batch {a} lost"
            if want:
                acked.append(b)
            assert c.get_collection("c").count() == ROWS * len(acked)
            # Writes go on after each kill, and every replica of a shard stays level.
            put_batch(c, 100 + b)
            acked.append(100 + b)
            reps = c.wait_live("c", 60, level=True, poll=0.2)
            assert len(reps) == 4
        assert not arm.exists()
    with Client(server.address, timeout=60) as c:
        c.drop_collection("c")


def _write_until_paused(port: int, arm: Path, phase: str, b: int) -> dict[str, Any]:
    """Start upserting batch `b` with the pause armed at `phase`; return once it is there."""
    reached = arm.parent / (arm.name + ".reached")
    reached.unlink(missing_ok=True)
    arm.write_text(phase)
    outcome: dict[str, Any] = {}

    def write() -> None:
        try:
            with Client(f"127.0.0.1:{port}", timeout=120) as c:
                put_batch(c, b)
            outcome["ok"] = True
        except Exception as exc:
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=write, daemon=True)
    outcome["thread"].start()
    until(reached.exists, 60, f"the write reaching the {phase!r} pause", poll=0.02)
    return outcome


# --- a resharding -----------------------------------------------------------------------

SCALED = "s"


def rows(start: int, n: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(start)
    return [f"r{i}" for i in range(start, start + n)], rng.standard_normal((n, DIM)).astype(
        np.float32
    )


def put_rows(c: Client, start: int, n: int) -> set[str]:
    ids, vecs = rows(start, n)
    c.get_collection(SCALED).upsert(ids, vecs, documents=[f"doc of {i}" for i in ids])
    return set(ids)


def check(c: Client, acked: set[str], shards: int) -> None:
    info = c.wait_layout(SCALED, timeout=180, poll=0.3)
    assert info["shards"] == shards and info["change"] is None
    col = c.get_collection(SCALED)
    got = col.get(sorted(acked), include_vectors=False, include_documents=True)
    assert len(got) == len(acked), f"{len(acked) - len(got)} acknowledged rows lost"
    assert all(r.document == f"doc of {r.id}" for r in got)
    assert col.count() == len(acked)
    reps = c.wait_live(SCALED, 120, level=True, poll=0.3)
    # Replica 0 of every shard together holds each row once: no copy left on an old owner.
    assert sum(r["count"] for r in reps if r["replica"] == 0) == len(acked)


def pause(c: Client, arm: Path, phase: str, shards: int) -> None:
    reached = arm.parent / (arm.name + ".reached")
    reached.unlink(missing_ok=True)
    arm.write_text(phase)
    c.get_collection(SCALED).scale(shards=shards, wait=False)
    until(reached.exists, 60, f"the change reaching {phase!r}")


def test_kill_9_in_each_phase_of_a_resharding_ends_in_the_new_layout(server: Killable) -> None:
    arm, addr = server.arm, server.address
    with Client(addr, timeout=60) as c:
        c.create_collection(SCALED, DIM, "euclidean", shards=2, replicas=2)
        acked = put_rows(c, 0, 3000)

        # 1. Copying, 2 -> 4: writes during the pause are dual-written where copied; a
        # target replica is killed, then the coordinator (the restart resumes the copy).
        pause(c, arm, "copied-step", 4)
        acked |= put_rows(c, 10_000, 300)
        target = next(r for r in c.describe(SCALED)["replica_states"]
                      if r["shard"] == 3 and r["replica"] == 0)
        os.kill(target["pid"], signal.SIGKILL)
        server.kill_coordinator()
    with Client(addr, timeout=60) as c:
        check(c, acked, 4)
        acked |= put_rows(c, 20_000, 100)

        # 2. Switched, 4 -> 3: the whole server dies; the restart cleans up, then serves.
        pause(c, arm, "switched", 3)
    server.server.kill()
    server.start()
    with Client(addr, timeout=60) as c:
        check(c, acked, 3)
        assert c.describe(SCALED)["layout_version"] == 3
        assert not (server.data / "collections" / SCALED / "shard-0003").exists()
        c.drop_collection(SCALED)


# --- a snapshot restore -----------------------------------------------------------------

RESTORE_ROWS = 40_000


def _count(c: Client, name: str) -> int | None:
    """Rows served in `name`; -1 while it is being restored, None while it does not exist."""
    try:
        return c.get_collection(name).count()
    except FailedPrecondition:
        return -1
    except NotFound:
        return None


def test_kill_9_during_restore_leaves_no_partial_collection(
    server: Killable, tmp_path: Path
) -> None:
    data, addr = server.data, server.address
    with Client(addr, timeout=60) as c:
        src = c.create_collection("src", DIM, "euclidean", shards=2)
        rng = np.random.default_rng(0)
        for start in range(0, RESTORE_ROWS, 2000):
            n = min(2000, RESTORE_ROWS - start)
            src.upsert([f"id-{i}" for i in range(start, start + n)],
                       rng.standard_normal((n, DIM)).astype(np.float32))
        archive = tmp_path / "src.snapshot"
        c.create_snapshot("src", archive)
        c.drop_collection("src")

    outcome: dict[str, Any] = {}

    def restore() -> None:
        with Client(addr, timeout=120) as rc:
            try:
                rc.restore_snapshot(archive, "dst", shards=3)
                outcome["ok"] = True
            except Exception as exc:
                outcome["error"] = exc

    thread = threading.Thread(target=restore, daemon=True)
    thread.start()
    seen: int | None = None
    with Client(addr, timeout=10) as c:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "ok" not in outcome:
            seen = _count(c, "dst")
            if seen is not None and (seen == -1 or 0 < seen < RESTORE_ROWS):
                break
            time.sleep(0.01)  # polling as fast as it may: the kill must land part way
    assert "ok" not in outcome, "the restore finished before the kill could land"
    assert seen is not None and (seen == -1 or 0 < seen < RESTORE_ROWS), seen
    work = [p.name for p in (data / "snapshots").glob("restore-*")]
    assert work, "the restore's work directory is there when the kill lands"
    server.server.kill()
    thread.join(60)
    assert "ok" not in outcome  # the client's RestoreSnapshot failed

    server.start()
    with Client(addr, timeout=60) as c:
        after = _count(c, "dst")
        assert after in (None, RESTORE_ROWS), f"partial collection: {after} of {RESTORE_ROWS}"
        names = [col["name"] for col in c.list_collections()]
        assert ("dst" in names) == (after == RESTORE_ROWS)
        snapshots = data / "snapshots"
        left = sorted(p.name for p in snapshots.iterdir()) if snapshots.exists() else []
        assert not [n for n in left if n.startswith(("create-", "restore-"))], left
        if after is None:
            assert not (data / "collections" / "dst").exists()
        else:
            c.drop_collection("dst")


# --- a clean restart --------------------------------------------------------------------


TUNE_KEYS = ("search_ef", "recall_estimate", "recall_queries", "tuned_rows", "tuned_unix")


def tuned_collection(client: Client) -> None:
    """A collection the recall tuner will tune: 3,000 clustered rows, 2 shards, a small graph."""
    dim = 48
    centers = np.random.default_rng(7).standard_normal((20, dim)).astype(np.float32) * 0.6
    rng = np.random.default_rng(2)
    base = (centers[rng.integers(0, 20, 3000)] + rng.standard_normal((3000, dim))).astype(
        np.float32
    )
    col = client.create_collection(
        "tuned", dim=dim, metric="euclidean", shards=2, m=6, ef_construction=20
    )
    col.upsert([f"r{i}" for i in range(len(base))], base, batch_size=1000)


def test_restart_serves_same_collections_and_results(server: Killable) -> None:
    """`shardvec up` stopped (SIGTERM) and started again on the same data directory serves the
    same collections and results (the module's server: the earlier tests dropped theirs).

    It also keeps the recall tuner's work: the breadth, the recall measured and when it was
    tuned are the same from the first Describe after the restart (a tuner starting from
    nothing shows the default breadth and no estimate until its first tune), and three tuner
    rounds later it has not tuned again. That no tune follows while the rows stay as they were
    is the tuner's rule, tested in the unit tier (tests/unit/test_recall_tuner.py); the tune
    itself and a retune for a new target are tests/ray/test_recall_tuner_cluster.py."""
    rng = np.random.default_rng(4)
    vecs = rng.standard_normal((1500, 32)).astype(np.float32)
    queries = rng.standard_normal((20, 32)).astype(np.float32)
    with Client(server.address, timeout=120) as client:
        tuned_collection(client)  # tuned in the background while the rest is loaded
        col = client.create_collection("keep", dim=32, metric="euclidean", shards=3,
                                       replicas=2)
        col.upsert([f"v{i}" for i in range(1500)], vecs, [{"i": i} for i in range(1500)])
        col.delete([f"v{i}" for i in range(0, 1500, 10)])
        client.create_collection("other", dim=4, metric="dot")
        text = client.create_collection("texts", dim=0, embedding="minilm")
        text.upsert_documents(["d1", "d2"], ["dogs are loyal pets", "tax on savings"])
        before = col.search_ids(queries, k=10)
        before_exact = col.search_ids(queries, k=10, exact=True)
        before_count = col.count(where={"i": {"$lt": 700}})
        nodes = {r["node_id"] for r in client.describe("keep")["replica_states"]}
        assert nodes and all(default_lock_path(n).exists() for n in nodes)
        until(lambda: client.describe("tuned")["tuned_rows"] == 3000, timeout=120,
              what="the first tune")  # fmt: skip
        tuned = client.describe("tuned")
    assert server.server.stop() == 0
    # the embedded Ray's nodes are gone for good, and so are their search-lock files
    assert not any(default_lock_path(n).exists() for n in nodes)
    srv = server.start()
    with Client(server.address) as client:
        kept = client.describe("tuned")  # the first Describe after the restart
        assert {k: kept[k] for k in TUNE_KEYS} == {k: tuned[k] for k in TUNE_KEYS}
        started = time.monotonic()
        names = sorted(c["name"] for c in client.list_collections())
        assert names == ["keep", "other", "texts", "tuned"]
        # The embedder was warm before the server said it served: the first text query
        # after a restart does not wait for the model to load.
        until(lambda: "embedder minilm warm in" in srv.log.read_text(), 30, "warm log line")
        log = srv.log.read_text()
        assert log.index("embedder minilm warm in") < log.index("coordinator serving on")
        hit = client.get_collection("texts").search_texts("faithful companion animals", k=1)
        assert hit[0][0].id == "d1" and hit[0][0].document == "dogs are loyal pets"
        col = client.get_collection("keep")
        assert col.metric == "euclidean" and col.dim == 32
        assert col.count() == 1350
        assert col.count(where={"i": {"$lt": 700}}) == before_count
        after = col.search_ids(queries, k=10)
        assert after[0] == before[0]
        np.testing.assert_allclose(np.array(after[1]), np.array(before[1]), rtol=1e-5)
        assert col.search_ids(queries, k=10, exact=True)[0] == before_exact[0]
        # writes carry on after the restart with fresh sequence numbers
        col.upsert(["new"], vecs[:1])
        assert col.count() == 1351

        def untouched_for_three_rounds() -> bool:
            assert client.describe("tuned")["tuned_unix"] == tuned["tuned_unix"]  # no retune
            return time.monotonic() - started > 3 * TUNER_ROUND_S

        until(untouched_for_three_rounds, timeout=60, poll=1.0,
              what="three tuner rounds with no tune")  # fmt: skip
    assert srv.stop() == 0
