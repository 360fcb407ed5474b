"""`shardvec bench process-model` at tiny size: the three ways of serving the same shards run
end to end (the served ones as child processes of `python -m shardvec.bench`) and find
exactly the same neighbours."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from shardvec.cluster.cli import cli


def test_process_model_smoke(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "base.npy", rng.standard_normal((2000, 32)).astype(np.float32))
    np.save(data / "queries.npy", rng.standard_normal((30, 32)).astype(np.float32))
    out = tmp_path / "pm.json"
    argv = ["bench", "process-model", "--data", str(data), "--rows", "2000", "--queries", "30",
            "--clients", "1,4", "--seconds", "1", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    base = r["in_process"]
    assert 0.5 < base["recall"] <= 1.0 and base["p50_ms"] > 0
    for model in ("per_shard", "per_node"):
        for clients in ("1", "4"):
            run = r[model][clients]
            assert run["errors"] == 0 and run["calls"] >= 30
            assert run["qps"] > 0 and math.isfinite(run["p99_ms"])
            # the same engines searched with the same per-shard k' and ef: the same hits
            assert abs(run["recall"] - base["recall"]) < 1e-9
            assert run["cpu_ms_per_query_total"] > 0
