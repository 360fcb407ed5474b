"""Query fronts on three simulated Ray nodes (one Cluster shared by the module): every front
answers every RPC, reads go to the front's own node's replicas, a front that lost its layout
pushes still misses no row and returns no duplicate across a replica's kill -9, and the
clients of a lost node's front carry on. The node loss runs last: it ends the cluster."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import ray
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shardvec.cluster.bringup import ShardvecCluster, simulated_cluster
from shardvec.cluster.cli import cli
from shardvec.cluster.client import Client
from shardvec.coordinator.fronts.pool import FRONT_PREFIX
from shardvec.coordinator.replicas.ray_control import NAMESPACE
from shardvec.coordinator.replicas.shard_client import RemoteShard
from shardvec.v1 import vector_search_pb2 as pb
from tests.cluster.test_metrics import scrape, value
from tests.hooks.shardvec_test_observers import hooked_env
from tests.waits import until

pytestmark = pytest.mark.cluster

DIM = 16
N = 600


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    hold = tmp_path_factory.mktemp("hold") / "front-push"  # names a node: its front loses pushes
    armed = pytest.MonkeyPatch()
    hooked_env(armed, SHARDVEC_TEST_HOLD_FILE=str(hold))
    c = simulated_cluster(3)
    workers = list(c.worker_nodes)
    data = tmp_path_factory.mktemp("fronts")
    sv = ShardvecCluster(
        {
            "data_dir": str(data / "data"), "port": 0, "front_port": 0, "front_metrics_port": 0,
            "front_refresh_s": 1.0,
        },
        ray_address=c.address,
    )
    try:
        fronts = sv.wait_fronts(3, 180)
        assert len(fronts) == 3, fronts
        assert len({f["node_id"] for f in fronts}) == 3  # one on every node
        client = Client(sv.address, timeout=60)
        col = client.create_collection("fr", dim=DIM, shards=2, replicas=3)
        client.wait_live("fr", 180)
        rng = np.random.default_rng(16)
        vecs = rng.standard_normal((N, DIM)).astype(np.float32)
        col.upsert([str(i) for i in range(N)], vecs, [{"i": i} for i in range(N)])
        yield {
            "cluster": c, "workers": workers, "sv": sv, "fronts": fronts, "client": client,
            "vecs": vecs, "tmp": data, "hold": hold,
        }  # fmt: skip
        client.close()
    finally:
        sv.stop()
        ray.shutdown()
        c.shutdown()
        armed.undo()


def _ids(got: Any) -> list[list[str]]:
    return [[str(i) for i in row] for row in got]


def _front(node_id: str) -> Any:
    return ray.get_actor(FRONT_PREFIX + node_id, namespace=NAMESPACE)


def test_every_front_answers_every_rpc(env: dict[str, Any]) -> None:
    vecs, fronts, tmp = env["vecs"], env["fronts"], env["tmp"]
    want = _ids(env["client"].get_collection("fr").search_ids(vecs[:4], k=5, exact=True))
    for i, f in enumerate(fronts):
        with Client(f["address"], timeout=60, discover=False) as fc:
            info = fc.call("ClusterInfo", pb.ClusterInfoRequest())
            assert sorted(x.address for x in info.fronts) == sorted(x["address"] for x in fronts)
            assert info.served_by == f["address"] and info.coordinator == env["sv"].address
            channel = grpc.insecure_channel(f["address"])
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            channel.close()
            assert "fr" in [c["name"] for c in fc.list_collections()]
            col = fc.get_collection("fr")
            assert col.count() == N
            assert _ids(col.search_ids(vecs[:4], k=5, exact=True)) == want
            assert col.count(where={"i": {"$lt": 100}}) == 100
            got = col.get(["1", "2", "nope"])
            assert [r.id for r in got] == ["1", "2"] and got[0].metadata == {"i": 1}
            seen = [r.id for page in col.scroll_pages(page_size=250) for r in page.records]
            assert len(seen) == N and len(set(seen)) == N
            assert col.search_by_ids(["3"], k=2)[0][0].id != "3"
            # writes and collection changes, forwarded to the coordinator
            name = f"w{i}"
            wc = fc.create_collection(name, dim=DIM, shards=1, replicas=1)
            wc.upsert(["a", "b", "c"], vecs[:3], [{"n": 1}, {"n": 2}, {"n": 3}])
            assert wc.count() == 3  # read back through this front at once
            assert wc.update(["a"], [{"m": 9}])["updated"] == 1
            assert wc.delete(["b"]) == 1
            assert [r.id for r in wc.get(["a", "b", "c"])] == ["a", "c"]
            assert fc.describe(name)["count"] == 2
            if i == 0:  # snapshots through a front: out of one, into another
                fc.create_snapshot(name, tmp / "w0.tar")
                # the CLI through a front
                run = CliRunner().invoke(cli, ["--server", f["address"], "status", "--json"])
                assert run.exit_code == 0, run.output
                described = {c["name"]: c for c in json.loads(run.output)}
                assert described["fr"]["count"] == N
                assert len(described["fr"]["replica_states"]) == 6
                run = CliRunner().invoke(cli, ["--server", f["address"], "fronts", "--json"])
                assert run.exit_code == 0, run.output
                assert len(json.loads(run.output)["fronts"]) == 3
            fc.drop_collection(name)
            assert name not in [c["name"] for c in fc.list_collections()]
    with Client(fronts[1]["address"], timeout=60, discover=False) as fc:
        restored = fc.restore_snapshot(tmp / "w0.tar", "w0r")
        assert restored.count() == 2
        fc.drop_collection("w0r")


def test_every_front_serves_its_own_metrics(env: dict[str, Any]) -> None:
    """Each front's /metrics (listed by ClusterInfo) counts the calls that front served, and
    only those: the searches through one front move its counters, not the others'."""
    vecs = env["vecs"]
    info = env["client"].call("ClusterInfo", pb.ClusterInfoRequest())
    at = {f.address: f.metrics_address for f in info.fronts}
    assert len(at) == 3 and all(at.values()) and len(set(at.values())) == 3, at
    ports = {a: int(m.rsplit(":", 1)[1]) for a, m in at.items()}

    def searches(address: str) -> tuple[float, float]:
        _, samples = scrape(ports[address])
        return (
            value(samples, "shardvec_requests_total", method="Search", code="OK"),
            sum(value(samples, "shardvec_shard_search_seconds_count", collection="fr",
                      shard=s) for s in "01"),
        )  # fmt: skip

    before = {a: searches(a) for a in at}
    busy = env["fronts"][0]["address"]
    with Client(busy, timeout=60, discover=False) as fc:
        col = fc.get_collection("fr")
        for q in range(5):
            col.search_ids(vecs[q : q + 1], k=3)
    for a in at:
        (calls0, shard0), (calls1, shard1) = before[a], searches(a)
        if a == busy:
            assert calls1 - calls0 == 5 and shard1 - shard0 >= 10, (calls0, calls1, shard1)
        else:
            assert (calls1, shard1) == (calls0, shard0), a
    run = CliRunner().invoke(cli, ["--server", busy, "fronts"])
    assert run.exit_code == 0 and run.output.count(" metrics ") == 3, run.output


def _replica_reads(env: dict[str, Any]) -> dict[tuple[int, str], int]:
    """Per (shard, node): the reads that carried an epoch (a front's) the replica answered."""
    sv = env["sv"]
    reps = [r for c in sv.status() if c["name"] == "fr" for r in c["replica_states"]]

    async def figures() -> dict[tuple[int, str], int]:
        out = {}
        for r in reps:
            shard = RemoteShard("probe", r["address"], sv.settings["token"], stream=False)
            info = await shard.info(10)
            out[(r["shard"], r["node_id"])] = int(info.figures["epoch_reads"])
            await shard.close()
        return out

    return asyncio.run(figures())


def test_reads_prefer_the_fronts_own_node(env: dict[str, Any]) -> None:
    vecs = env["vecs"]
    for f in env["fronts"][:2]:
        before = _replica_reads(env)
        with Client(f["address"], timeout=60, discover=False) as fc:
            col = fc.get_collection("fr")
            for q in range(20):
                col.search_ids(vecs[q : q + 1], k=3)
            col.count()
        after = _replica_reads(env)
        grew = {key: after[key] - before.get(key, 0) for key in after}
        for (shard, node), n in grew.items():
            if node == f["node_id"]:
                assert n >= 21, (shard, grew)  # every search and the count: local
            else:
                assert n == 0, (shard, node, grew)


def test_a_lost_layout_push_loses_no_row_and_adds_no_duplicate(env: dict[str, Any]) -> None:
    sv, vecs, client = env["sv"], env["vecs"], env["client"]
    stale = next(f for f in env["fronts"] if f["node_id"] != sv.coordinator_node_id())
    handle = _front(stale["node_id"])
    env["hold"].write_text(stale["node_id"])  # its front refuses pushes: lost on the way
    try:
        pulls0 = ray.get(handle.stats.remote())["pulls"]
        reps = [r for c in sv.status() if c["name"] == "fr" for r in c["replica_states"]]
        victim = next(r for r in reps if r["node_id"] == stale["node_id"] and r["shard"] == 0)
        os.kill(int(victim["pid"]), signal.SIGKILL)  # the stale front's local replica
        col = client.get_collection("fr")
        extra = [f"x{i}" for i in range(200)]
        col.upsert(extra, vecs[:200], [{"i": -1}] * 200)  # acknowledged while it is down
        total = N + len(extra)
        with Client(stale["address"], timeout=60, discover=False) as fc:
            fcol = fc.get_collection("fr")
            end = time.monotonic() + 120
            rounds = 0
            while True:  # reads through the stale front, while the victim restarts and rejoins
                assert fcol.count() == total
                got = [r.id for r in fcol.get([*extra[:50], "0", "1"], include_vectors=False)]
                assert got == [*extra[:50], "0", "1"]
                ids = _ids(fcol.search_ids(vecs[:2], k=10, exact=True)[0])
                assert all(len(set(row)) == len(row) for row in ids)
                rounds += 1
                states = {
                    (r["shard"], r["replica"]): r["state"]
                    for c in sv.status() if c["name"] == "fr" for r in c["replica_states"]
                }  # fmt: skip
                if rounds >= 3 and all(s == "live" for s in states.values()):
                    break
                assert time.monotonic() < end, states
            # the victim is LIVE again: the stale front still reads everything, from it too
            assert fcol.count() == total
            seen = [r.id for page in fcol.scroll_pages(page_size=300) for r in page.records]
            assert len(seen) == total and len(set(seen)) == total
        stats = ray.get(handle.stats.remote())
        assert stats["refused"] > 0  # the pushes were lost ...
        assert stats["pulls"] > pulls0  # ... and the fence made the front pull instead
    finally:
        env["hold"].write_text("")


def test_a_front_that_lost_its_pushes_follows_a_resharding(env: dict[str, Any]) -> None:
    """2 -> 3 -> 2 shards (a growth, then a shrink that copies into shards being read) while
    reads go through a front whose pushes are dropped: the epoch fence makes it pull at every
    switch, so it misses no row and returns none twice."""
    sv, client = env["sv"], env["client"]
    stale = next(f for f in env["fronts"] if f["node_id"] != sv.coordinator_node_id())
    handle = _front(stale["node_id"])
    env["hold"].write_text(stale["node_id"])  # its front refuses pushes: lost on the way
    try:
        pulls0 = ray.get(handle.stats.remote())["pulls"]
        col = client.get_collection("fr")
        total = col.count()
        some = [str(i) for i in range(0, N, 7)]
        want = _ids(col.search_ids(env["vecs"][:2], k=10, exact=True)[0])
        low = {"i": {"$lt": 100}}  # the earlier test's extra rows (i = -1) count too
        want_low = col.count(where=low)
        pushed = next(f for f in env["fronts"] if f["node_id"] != stale["node_id"])
        with Client(stale["address"], timeout=60, discover=False) as fc, \
                Client(pushed["address"], timeout=60, discover=False) as pc:  # fmt: skip
            fcol = fc.get_collection("fr")
            pcol = pc.get_collection("fr")
            for shards in (3, 2):
                col.scale(shards=shards, wait=False)
                end = time.monotonic() + 120
                while True:
                    for front_col in (fcol, pcol):  # one that lost its pushes, one that gets them
                        n = front_col.count()
                        assert n == total, (n, ray.get(handle.stats.remote()))
                        assert front_col.count(where=low) == want_low
                        got = [r.id for r in front_col.get(some, include_vectors=False)]
                        assert got == some
                        ids = _ids(front_col.search_ids(env["vecs"][:2], k=10, exact=True)[0])
                        assert all(len(set(row)) == len(row) for row in ids)  # no duplicate
                        # exact: the same rows (the extra rows share vectors, so tie in order)
                        assert [set(r) for r in ids] == [set(r) for r in want]
                    info = client.describe("fr")
                    if info["change"] is None and info["shards"] == shards:
                        break
                    assert time.monotonic() < end, info["change"]
                assert fcol.count() == total
            seen = [r.id for page in fcol.scroll_pages(page_size=300) for r in page.records]
            assert len(seen) == total and len(set(seen)) == total
        assert ray.get(handle.stats.remote())["pulls"] > pulls0
    finally:
        env["hold"].write_text("")


def test_clients_of_a_lost_fronts_node_carry_on(env: dict[str, Any]) -> None:
    c, sv, vecs = env["cluster"], env["sv"], env["vecs"]
    keep = {ray.get_runtime_context().get_node_id(), sv.coordinator_node_id()}
    lost = next(w for w in env["workers"] if w.node_id not in keep)
    lost_front = next(f for f in env["fronts"] if f["node_id"] == lost.node_id)
    want = _ids(env["client"].get_collection("fr").search_ids(vecs[:2], k=5, exact=True))
    failures: list[BaseException] = []
    done = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal done
        # given the lost front's address: it learns the others and moves off it
        with Client(lost_front["address"], timeout=30) as rc:
            rcol = rc.get_collection("fr")
            while not stop.is_set():
                try:
                    assert _ids(rcol.search_ids(vecs[:2], k=5, exact=True)) == want
                    done += 1
                except BaseException as exc:  # recorded, asserted below
                    failures.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        until(lambda: done >= 3, what="reads through the front under way")
        before = done
        c.remove_node(lost, allow_graceful=False)
        until(lambda: done >= before + 6, what="reads after the front's node was lost")
    finally:
        stop.set()
        t.join(60)
    assert not failures, failures[:3]
    assert before > 0 and done > before + 5
    end = time.monotonic() + 60
    while any(f["node_id"] == lost.node_id for f in sv.fronts()):
        assert time.monotonic() < end, sv.fronts()  # the lost node's front leaves the list
        time.sleep(0.5)
