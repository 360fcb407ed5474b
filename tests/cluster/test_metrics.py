"""The coordinator's Prometheus endpoint: scraped before and after traffic, counters move.
The same `shardvec up --log-json` server also serves the operating log's JSON test (one
server start for both: they use distinct collections and the counters are read as deltas).
`kill_one_replica` is shared with the plain operating log test in test_self_repair.py."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shardvec.cluster.client import Client
from shardvec.contract.errors import NotFound
from tests.procs import ServerProcess, free_port
from tests.waits import until

pytestmark = pytest.mark.cluster

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return text, out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def kill_one_replica(srv: ServerProcess, name: str) -> str:
    """Create `name` (1 shard, 2 replicas) with a few rows, kill -9 replica 1; returns its name."""
    with Client(srv.address, timeout=60) as client:
        col = client.create_collection(name, 8, shards=1, replicas=2)
        vecs = np.random.default_rng(5).standard_normal((200, 8)).astype(np.float32)
        col.upsert([f"r{i}" for i in range(200)], vecs)
        states = client.wait_live(name, level=True)
        pid = next(int(s["pid"]) for s in states if s["replica"] == 1)
        os.kill(pid, signal.SIGKILL)
        col.upsert(["after"], vecs[:1])  # a write the dead replica catches up on
        client.wait_live(name, level=True, timeout=120)
    return f"{name}/shard-0/replica-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    tmp = tmp_path_factory.mktemp("metrics")
    mport = free_port()
    srv = ServerProcess(tmp / "data", free_port(), "--metrics-port", str(mport),
                        "--num-cpus", "2", "--log-json")
    try:
        yield srv, mport
    finally:
        assert srv.stop() == 0


def test_metrics_endpoint_counts_requests_and_shows_the_cluster(
    server: tuple[ServerProcess, int], tmp_path: Path
) -> None:
    server_process, mport = server
    with Client(server_process.address, timeout=60) as client:
        col = client.create_collection("m", 8, "euclidean", shards=2, replicas=2)
        _, before = scrape(mport)
        rng = np.random.default_rng(9)
        col.upsert([f"v{i}" for i in range(500)], rng.standard_normal((500, 8)), None,
                   batch_size=100)
        queries = rng.standard_normal((40, 8)).astype(np.float32)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda q: col.search_ids(q, k=5), queries))
        with pytest.raises(NotFound):
            client.get_collection("nope")
        deadline = time.monotonic() + 20  # gauges are re-read at most once a second
        while True:
            text, after = scrape(mport)
            rows = sum(value(after, "shardvec_rows", collection="m", shard=s) for s in "01")
            if rows == 500 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
    (tmp_path / "scrape.txt").write_text(text)
    # `shardvec up --log-json` logs JSON lines (Ray's LoggingConfig, also used by every worker)
    events = [json.loads(line) for line in server_process.log.read_text().splitlines()
              if line.startswith("{")]
    assert any(e["levelname"] == "INFO" and e["message"].startswith("coordinator up in")
               for e in events)
    ok_upserts = value(after, "shardvec_requests_total", method="Upsert", code="OK")
    assert ok_upserts - value(before, "shardvec_requests_total", method="Upsert", code="OK") == 5
    searches = value(after, "shardvec_request_seconds_count", method="Search")
    assert searches - value(before, "shardvec_request_seconds_count", method="Search") == 40
    assert value(after, "shardvec_requests_total", method="DescribeCollection",
                 code="NOT_FOUND") - value(before, "shardvec_requests_total",
                                           method="DescribeCollection", code="NOT_FOUND") == 1
    for shard in ("0", "1"):
        assert value(after, "shardvec_shard_search_seconds_count", collection="m",
                     shard=shard) > value(before, "shardvec_shard_search_seconds_count",
                                          collection="m", shard=shard)
    assert value(after, "shardvec_batch_size_count") >= 1
    assert value(after, "shardvec_batch_size_sum") - value(before, "shardvec_batch_size_sum") == 40
    assert rows == 500
    assert value(before, "shardvec_rows", collection="m", shard="0") == 0
    for shard in "01":
        for replica in "01":
            labels = {"collection": "m", "shard": shard, "replica": replica}
            assert value(after, "shardvec_replica_state", state="live", **labels) == 1
            assert value(after, "shardvec_replica_state", state="dead", **labels) == 0
            assert value(after, "shardvec_replica_applied_seq", **labels) >= 1
            assert value(after, "shardvec_replica_dirty_rows", **labels) > 0
    assert "# TYPE shardvec_checkpoint_age_seconds gauge" in text
    assert json.dumps(sorted({name for name, _ in after}))  # every series parsed


def test_log_json_gives_the_same_events_as_json_lines(server: tuple[ServerProcess, int]) -> None:
    """`--log-json`: the replica state changes of tests/cluster/test_self_repair.py's operating
    log test as JSON lines (here, on this module's `--log-json` server, one server fewer)."""
    srv, _ = server
    replica = kill_one_replica(srv, "logsjson")

    def events() -> list[dict[str, object]]:
        return [json.loads(ln) for ln in srv.log.read_text().splitlines() if ln.startswith("{")]

    until(lambda: any(e.get("replica") == replica and e.get("to") == "live"
                      for e in events()), timeout=30, what="the rejoin event as JSON")
    dead = [e for e in events() if e.get("replica") == replica and e.get("to") == "dead"]
    assert len(dead) == 1
    assert dead[0]["levelname"] == "INFO"
    assert str(dead[0]["message"]).startswith(f"replica {replica}: live -> dead (")
