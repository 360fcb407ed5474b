"""The `shardvec` CLI against a running cluster, as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.cli import cli

pytestmark = pytest.mark.ray

SHARDVEC = [sys.executable, "-m", "shardvec.cluster"]


def run(cluster: ShardvecCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHARDVEC_SERVER": cluster.address}
    return subprocess.run([*SHARDVEC, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def run_here(cluster: ShardvecCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`run` through the `shardvec` command group in this process (click's runner): the same
    code and output without a Python start per command, which costs seconds on a loaded
    2-core machine. This module and tests/ray/test_cli_scale.py run the real process."""
    res = CliRunner().invoke(cli, list(args), env={"SHARDVEC_SERVER": cluster.address})
    stderr = res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        stderr += "".join(traceback.format_exception(res.exception))
    return subprocess.CompletedProcess(list(args), res.exit_code, res.stdout, stderr)


def test_cli_create_load_query_status_drop(cluster: ShardvecCluster, name: str,
                                           tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((300, 8)).astype(np.float32)
    np.save(tmp_path / "v.npy", vecs)
    np.save(tmp_path / "q.npy", vecs[:2])
    with (tmp_path / "m.jsonl").open("w") as f:
        for i in range(300):
            f.write(json.dumps({"key": f"k{i}", "year": 2000 + i % 30, "text": f"row {i}"}) + "\n")
    r = run(cluster, "create", name, "--dim", "8", "--shards", "3")
    assert r.returncode == 0, r.stderr
    r = run(cluster, "load", name, "--vectors", str(tmp_path / "v.npy"), "--metadata",
            str(tmp_path / "m.jsonl"), "--id-field", "key", "--batch", "64")
    assert r.returncode == 0, r.stderr
    assert "loaded 300 vectors" in r.stdout
    assert "300/300" in r.stderr  # the progress bar finished
    r = run(cluster, "query", name, "--vectors", str(tmp_path / "q.npy"), "-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row[0]["id"] for row in rows] == ["k0", "k1"]
    assert rows[0][0]["metadata"]["text"] == "row 0"
    r = run(cluster, "query", name, "--vectors", str(tmp_path / "q.npy"), "-k", "5", "--json",
            "--where", '{"year": {"$gte": 2020}}')
    assert r.returncode == 0, r.stderr
    for row in (json.loads(line) for line in r.stdout.splitlines()):
        assert len(row) == 5 and all(h["metadata"]["year"] >= 2020 for h in row)
    r = run(cluster, "status", "--json")
    assert r.returncode == 0, r.stderr
    status = {c["name"]: c for c in json.loads(r.stdout)}
    assert status[name]["count"] == 300
    assert len(status[name]["replica_states"]) == 3
    assert all(rep["state"] == "live" and rep["pid"] > 0 for rep in status[name]["replica_states"])
    r = run(cluster, "query", "no_such", "--vectors", str(tmp_path / "q.npy"))
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr
    r = run(cluster, "drop", name)
    assert r.returncode == 0, r.stderr
