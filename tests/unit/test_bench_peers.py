"""bench/peers/ runs in the peers' own interpreter, which has no shardvec: as the top-level
package `peers` (`python -m peers` from a folder holding a link to it, as `shardvec bench
query --peers` runs it), with NumPy alone it starts, reports each peer it cannot import as not
installed (never a crash) and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _numpy_only(tmp_path: Path) -> dict[str, str]:
    """An environment whose path adds NumPy and nothing else of site-packages (run with -S)."""
    site = tmp_path / "site"
    site.mkdir()
    numpy_dir = Path(np.__file__).parent
    for name in ("numpy", "numpy.libs"):  # numpy.libs: a wheel's bundled BLAS, where there is one
        if (numpy_dir.parent / name).exists():
            (site / name).symlink_to(numpy_dir.parent / name, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHARDVEC_PG_DSN")}
    return {**env, "PYTHONPATH": str(site)}


def test_peers_run_without_shardvec(tmp_path: Path) -> None:
    env = _numpy_only(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "peers").symlink_to(BENCH / "peers", target_is_directory=True)
    probe = [sys.executable, "-S", "-c", "import numpy, shardvec"]
    no_shardvec = subprocess.run(probe, cwd=run, env=env, capture_output=True, text=True)
    assert "No module named 'shardvec'" in no_shardvec.stderr  # the isolation holds

    rng = np.random.default_rng(5)
    base = rng.standard_normal((200, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[:10] + np.float32(0.01)
    gt = np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :10]
    for name, arr in (("base", base), ("queries", queries), ("gt", gt)):
        np.save(tmp_path / f"{name}.npy", arr)
    meta = tmp_path / "meta.jsonl"
    meta.write_text("".join(json.dumps({"year": 2024, "popular": i % 2 == 0}) + "\n"
                            for i in range(200)))  # fmt: skip
    out = tmp_path / "peers.json"
    cmd = [sys.executable, "-S", "-m", "peers", "--only", "milvus,qdrant,pgvector",
           "--base", str(tmp_path / "base.npy"), "--queries", str(tmp_path / "queries.npy"),
           "--gt", str(tmp_path / "gt.npy"), "--meta", str(meta), "--out", str(out),
           "--seconds", "0.2"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=run, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert list(result) == ["milvus", "qdrant", "pgvector"]
    assert result["milvus"]["name"] == "milvus lite"
    for entry in result.values():  # -S: none of the peers is importable
        assert entry["status"].startswith("not installed: No module named"), entry
        assert entry["version"].startswith("?")
