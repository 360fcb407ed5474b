"""Real Ray cluster: `ray start --head`, `ray job submit ... shardvec up`, query, `ray job stop`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from shardvec.cluster.client import Client
from shardvec.cluster.process import free_port
from shardvec.contract.errors import ShardvecError

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    # A one-machine Ray on loopback, with Ray's token authentication on.
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
    }


def _ray(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ray"), *args], env=_env(), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture()
def ray_head() -> Iterator[str]:
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's socket paths live in it
    for _attempt in range(2):  # a port picked free may be taken meanwhile: try once more
        ports = [free_port() for _ in range(6)]
        dash = ports[1]
        out = _ray("start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(ports[0]),
                   "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                   "--dashboard-agent-listen-port", str(ports[2]),
                   "--dashboard-agent-grpc-port", str(ports[3]),
                   "--metrics-export-port", str(ports[4]),
                   "--runtime-env-agent-port", str(ports[5]),
                   "--num-cpus", "2", "--temp-dir", temp, "--disable-usage-stats")
        if out.returncode == 0:
            break
        _kill_tree_of(temp)
    assert out.returncode == 0, out.stderr[-3000:]
    try:
        yield f"http://127.0.0.1:{dash}"
    finally:
        _kill_tree_of(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _kill_tree_of(temp: str) -> None:
    """Stop the Ray head living in `temp` only (`ray stop` would end every Ray here)."""
    victims: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if temp in " ".join(p.info["cmdline"] or ()):
                victims[p.pid] = p
                for child in p.children(recursive=True):
                    victims[child.pid] = child
        except psutil.Error:
            continue
    for p in victims.values():
        try:
            p.kill()
        except psutil.Error:
            continue


def _submit(dashboard: str, job_id: str, data: Path, port: int) -> None:
    deadline = time.monotonic() + 120
    while True:  # the job agent registers a few seconds after `ray start`
        out = _ray("job", "submit", "--address", dashboard, "--working-dir", ".", "--no-wait",
                   "--submission-id", job_id, "--", "shardvec", "up", "--address", "auto",
                   "--data-dir", str(data), "--port", str(port))
        if out.returncode == 0:
            return
        assert "No available agent" in out.stderr, out.stderr[-3000:]
        assert time.monotonic() < deadline, out.stderr[-3000:]
        time.sleep(0.5)


def _wait_serving(address: str, timeout: float = 180) -> Client:
    client = Client(address, timeout=30)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_collections()
            return client
        except ShardvecError:
            assert time.monotonic() < deadline, "the job never served"
            time.sleep(0.25)


def test_job_submit_serves_and_stops_cleanly(ray_head: str, tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    address = f"127.0.0.1:{port}"
    rng = np.random.default_rng(8)
    vecs = rng.standard_normal((400, 8)).astype(np.float32)
    _submit(ray_head, "shardvec-1", data, port)
    with _wait_serving(address) as client:
        col = client.create_collection("jobs", dim=8, shards=2)
        col.upsert([str(i) for i in range(400)], vecs, [{"i": i} for i in range(400)])
        before = col.search_ids(vecs[:5], k=5)
        assert [row[0] for row in before[0]] == ["0", "1", "2", "3", "4"]
    stop = _ray("job", "stop", "--address", ray_head, "shardvec-1")
    assert stop.returncode == 0, stop.stderr[-2000:]
    logs = _ray("job", "logs", "--address", ray_head, "shardvec-1").stdout
    assert "shardvec serving on" in logs and "shardvec stopped" in logs, logs[-2000:]
    # the data directory is intact: registry, and a checkpoint + store per replica
    assert (data / "registry.sqlite").exists()
    for s in (0, 1):
        replica = data / "collections" / "jobs" / f"shard-{s:04d}" / "replica-00"
        assert (replica / "store.sqlite").exists() and (replica / "manifest.json").exists()
    # and the next job serves the same data
    _submit(ray_head, "shardvec-2", data, port)
    with _wait_serving(address) as client:
        col = client.get_collection("jobs")
        assert col.count() == 400
        assert col.search_ids(vecs[:5], k=5)[0] == before[0]
    assert _ray("job", "stop", "--address", ray_head, "shardvec-2").returncode == 0
