"""kill -9 of a real `shardvec up` server in the middle of a RestoreSnapshot ("Hardening":
failed or interrupted operations leave partial data).

A 40,000-row archive is restored while the test polls the new collection; as soon as it is
seen part way (rows being copied, or the restore's FAILED_PRECONDITION refusal) the whole
server is killed with SIGKILL and restarted on the same data directory. The collection is then
absent or complete, never partial, and no snapshot work directory remains.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.cluster.client import Client
from shardvec.cluster.process import ServerProcess, free_port
from shardvec.contract.errors import FailedPrecondition, NotFound

pytestmark = pytest.mark.cluster

ROWS = 40_000
DIM = 16


def _count(c: Client, name: str) -> int | None:
    """Rows served in `name`; -1 while it is being restored, None while it does not exist."""
    try:
        return c.get_collection(name).count()
    except FailedPrecondition:
        return -1
    except NotFound:
        return None


def test_kill_9_during_restore_leaves_no_partial_collection(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    server = ServerProcess(data, port, log_dir=tmp_path)
    try:
        with Client(f"127.0.0.1:{port}", timeout=60) as c:
            src = c.create_collection("src", DIM, "euclidean", shards=2)
            rng = np.random.default_rng(0)
            for start in range(0, ROWS, 2000):
                n = min(2000, ROWS - start)
                src.upsert([f"id-{i}" for i in range(start, start + n)],
                           rng.standard_normal((n, DIM)).astype(np.float32))
            archive = tmp_path / "src.snapshot"
            c.create_snapshot("src", archive)
            c.drop_collection("src")

        outcome: dict[str, Any] = {}

        def restore() -> None:
            with Client(f"127.0.0.1:{port}", timeout=120) as rc:
                try:
                    rc.restore_snapshot(archive, "dst", shards=3)
                    outcome["ok"] = True
                except Exception as exc:
                    outcome["error"] = exc

        thread = threading.Thread(target=restore, daemon=True)
        thread.start()
        seen: int | None = None
        with Client(f"127.0.0.1:{port}", timeout=10) as c:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and "ok" not in outcome:
                seen = _count(c, "dst")
                if seen is not None and (seen == -1 or 0 < seen < ROWS):
                    break
                time.sleep(0.01)
        assert "ok" not in outcome, "the restore finished before the kill could land"
        assert seen is not None and (seen == -1 or 0 < seen < ROWS), seen
        work = [p.name for p in (data / "snapshots").glob("restore-*")]
        assert work, "the restore's work directory is there when the kill lands"
        server.kill()
        thread.join(60)
        assert "ok" not in outcome  # the client's RestoreSnapshot failed

        server = ServerProcess(data, port, log_dir=tmp_path)
        with Client(f"127.0.0.1:{port}", timeout=60) as c:
            after = _count(c, "dst")
            assert after in (None, ROWS), f"partial collection served: {after} of {ROWS} rows"
            names = [col["name"] for col in c.list_collections()]
            assert ("dst" in names) == (after == ROWS)
        snapshots = data / "snapshots"
        left = sorted(p.name for p in snapshots.iterdir()) if snapshots.exists() else []
        assert not [n for n in left if n.startswith(("create-", "restore-"))], left
        if after is None:
            assert not (data / "collections" / "dst").exists()
    finally:
        server.stop()
