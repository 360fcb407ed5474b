"""`shardvec bench query` at tiny size against the session cluster: it runs end to end (1 and
4 shards, ids and metadata modes, filtered, exact, clients in 2 processes) and writes a JSON
and a PNG whose numbers are sane."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.cli import cli
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
    # A quarter second a timed run: every kind still makes calls (16 runs of 1 s took most of
    # the test's 20 s).
    out, png = tmp_path / "query.json", tmp_path / "query.png"
    args = [
        "bench", "query", "--data", str(_data(tmp_path)), "--n", "3000", "--queries", "100",
        "--seconds", "0.25", "--reps", "1", "--threads", "2", "--clients", "4",
        "--client-processes", "2", "--server", cluster.address, "--out", str(out),
        "--plot", str(png),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "(c) 1 shard(s), 4 clients metadata" in result.output  # the table
    assert png.exists() and png.stat().st_size > 10_000
    r = json.loads(out.read_text())

    def sane(point: dict[str, float]) -> None:
        assert point["qps"] > 0 and math.isfinite(point["qps"])
        assert 0.0 <= point["recall"] <= 1.0

    sane(r["single"])
    assert len(r["single"]["sweep"]) >= 5
    for p in r["single"]["sweep"]:
        sane(p)
    assert r["single"]["min_ef"] is not None and r["single"]["recall"] >= 0.95
    assert set(r["cluster"]) == set(r["inprocess"]) == {"1", "4"}
    for key, c in r["cluster"].items():
        ideal = r["inprocess"][key]
        sane(ideal)
        for mode in ("ids", "metadata"):
            sane(c["batch"][mode])
            sane(c["filtered"]["batch"][mode])
            # The cluster searches the same shards as the in-process ideal: same recall, give
            # or take graph construction order; ids and metadata modes return the same hits.
            assert abs(c["batch"][mode]["recall"] - ideal["recall"]) < 0.05
            for kind in ("single", "filtered_single", "exact_single", "concurrent"):
                row = c[kind][mode]
                assert row["errors"] == 0 and row["calls"] > 0 and row["qps"] > 0, (kind, row)
                assert 0 < row["p50_ms"] <= row["p99_ms"]
                assert 0.0 <= row["recall"] <= 1.0
            assert c["exact_single"][mode]["recall"] == 1.0
        assert c["batch"]["metadata"]["metadata_agrees"] == 1.0  # real metadata came back
        assert 0.05 < c["filtered"]["selectivity"] < 0.15
        assert c["filtered"]["batch"]["metadata"]["recall"] >= 0.9
        assert c["concurrent"]["metadata"]["processes"] == 2
    assert r["cluster"]["1"]["at_target"]["ef"] is not None
    names = {t["name"] for t in r["targets"]}
    assert "1 shard: 4 clients with metadata p99 ms" in names
    assert all(isinstance(t["met"], bool) for t in r["targets"])
