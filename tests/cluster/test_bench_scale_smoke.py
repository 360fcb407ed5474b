"""`shardvec bench scale` at a tiny size: it runs end to end on simulated nodes and writes
a CSV, JSON and three PNG plots with sane figures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("qps_vs_shards.png", "latency_vs_concurrency.png", "recall_vs_qps.png")


@pytest.mark.timeout(420)
def test_bench_scale_smoke(tmp_path: Path) -> None:
    out = tmp_path / "scale"
    cmd = [
        sys.executable, "-m", "shardvec.bench", "scale",
        "--synthetic", "2000", "--dim", "32", "--queries", "100",
        "--shards", "1,2", "--replicas", "1", "--nodes", "1,2",
        "--seconds", "0.5", "--concurrency", "1,4", "--batch-repeats", "1",
        "--out", str(out),
    ]  # fmt: skip
    # A subprocess: its Ray clusters never meet a Ray this pytest process may hold.
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| S2 R1 N2 |" in proc.stdout  # the table is printed

    for name in PLOTS:
        png = (out / name).read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 5000, name
    report = json.loads((out / "scale.json").read_text())
    points = report["points"]
    # one factor at a time: shards 1, 2 on one node, then 2 shards on two nodes
    assert [(p["shards"], p["replicas"], p["nodes"]) for p in points] == [
        (1, 1, 1), (2, 1, 1), (2, 1, 2),
    ]  # fmt: skip
    for p in points:
        assert p["n"] == 2000 and p["dim"] == 32 and p["queries"] == 100
        assert p["nodes_used"] == min(p["nodes"], p["shards"] * p["replicas"])
        assert p["build_s"] > 0 and p["build_rows_per_s"] > 0
        assert p["batch_qps"] > 0 and p["batch_ms"] > 0
        assert 0.0 <= p["recall_at_10"] <= 1.0
        assert p["recall_at_10"] >= 0.9  # 2,000 rows at the default ef: near exact
        assert len(p["replica_rss_each_mib"]) == p["shards"] * p["replicas"]
        assert all(mib > 10 for mib in p["replica_rss_each_mib"])  # a live Python process
        assert p["coordinator_rss_mib"] > 10
        assert [lv["clients"] for lv in p["levels"]] == [1, 4]
        for lv in p["levels"]:
            assert lv["errors"] == 0
            assert lv["queries"] > 0 and lv["qps"] > 0
            assert 0 < lv["p50_ms"] <= lv["p99_ms"]
            assert lv["seconds"] >= 0.5
    with (out / "scale.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert {"shards", "batch_qps", "recall_at_10", "c4_qps", "c4_p99_ms"} <= set(rows[0])
    assert float(rows[2]["c4_p99_ms"]) >= float(rows[2]["c4_p50_ms"]) > 0
