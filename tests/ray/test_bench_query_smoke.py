"""`shardvec bench query` at tiny size against the session cluster: it runs end to end and
writes a JSON and a PNG whose numbers are sane."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from cluster.bringup import ShardvecCluster
from cluster.cli import cli
from tests.conftest import shared_data_dir


def _data(tmp_path: Path) -> Path:
    """The shared data set, or a small seeded stand-in with the same files when it is absent."""
    shared = shared_data_dir()
    if (shared / "base.npy").exists():
        return shared
    rng = np.random.default_rng(7)
    d = tmp_path / "data"
    d.mkdir()
    np.save(d / "base.npy", rng.standard_normal((3000, 32)).astype(np.float16))
    np.save(d / "queries.npy", rng.standard_normal((100, 32)).astype(np.float16))
    return d


def test_bench_query_smoke(cluster: ShardvecCluster, tmp_path: Path) -> None:
    out, png = tmp_path / "query.json", tmp_path / "query.png"
    args = [
        "bench", "query", "--data", str(_data(tmp_path)), "--n", "3000", "--queries", "100",
        "--seconds", "2", "--reps", "1", "--threads", "2", "--server", cluster.address,
        "--out", str(out), "--plot", str(png),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "(d) cluster, 32 clients" in result.output  # the table
    assert png.exists() and png.stat().st_size > 10_000
    r = json.loads(out.read_text())

    def sane(point: dict[str, float]) -> None:
        assert point["qps"] > 0 and math.isfinite(point["qps"])
        assert 0.0 <= point["recall"] <= 1.0

    sane(r["single"])
    sane(r["inprocess"]["default"])
    sane(r["cluster"]["default"])
    sane(r["cluster"]["at_target"])
    for series in (r["single"]["sweep"], r["inprocess"]["sweep"], r["cluster"]["sweep"]):
        assert len(series) >= 5
        for p in series:
            sane(p)
    # The cluster searches the same shards as the in-process ideal: same recall, give or take
    # graph construction order.
    assert abs(r["cluster"]["default"]["recall"] - r["inprocess"]["default"]["recall"]) < 0.05
    assert r["single"]["min_ef"] is not None and r["single"]["recall"] >= 0.95
    levels = {row["clients"]: row for row in r["cluster"]["concurrency"]}
    assert set(levels) == {1, 8, 32}
    for row in levels.values():
        assert row["errors"] == 0 and row["calls"] > 0 and row["qps"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert 0.0 <= row["recall"] <= 1.0
    names = {t["name"] for t in r["targets"]}
    assert "32 clients p99 ms" in names and all(isinstance(t["met"], bool) for t in r["targets"])
