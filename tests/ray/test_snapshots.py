"""Snapshots of a live collection: taken under a write loop, restored with another layout."""

from __future__ import annotations

import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client, verify_snapshot
from shardvec.contract.errors import AlreadyExists, DataLoss
from shardvec.coordinator.layout import Layout
from tests.ray.test_cli import run_here as _run

pytestmark = pytest.mark.ray

DIM = 16


class Writer(threading.Thread):
    """Upserts numbered single-row batches one after another, noting when each one started
    and when it was acknowledged; bounded in count and time."""

    def __init__(self, address: str, name: str, limit: int = 4000, seconds: float = 90) -> None:
        super().__init__(daemon=True)
        self.client = Client(address, timeout=60)
        self.col = self.client.get_collection(name)
        self.rng = np.random.default_rng(7)
        self.limit, self.until = limit, time.monotonic() + seconds
        self.stop = threading.Event()
        self.vectors: dict[str, np.ndarray] = {}
        self.started: list[float] = []
        self.acked: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(self.limit):
                if self.stop.is_set() or time.monotonic() > self.until:
                    break
                vec = self.rng.standard_normal((1, DIM)).astype(np.float32)
                self.vectors[f"w{i}"] = vec[0]
                self.started.append(time.monotonic())
                self.col.upsert([f"w{i}"], vec, [{"n": i}])
                self.acked.append(time.monotonic())
        except BaseException as exc:
            self.error = exc
        finally:
            self.client.close()

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.01)
        assert len(self.acked) >= n, self.error


def test_snapshot_under_writes_restores_exactly_the_acknowledged_rows(
    cluster: ShardvecCluster, client: Client, name: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    col = client.create_collection(name, DIM, "euclidean", shards=2, replicas=2)
    pre_ids = [f"p{i}" for i in range(600)]
    pre_vecs = rng.standard_normal((600, DIM)).astype(np.float32)
    col.upsert(pre_ids, pre_vecs, [{"n": -i, "tag": "pre"} for i in range(600)], batch_size=200)
    col.delete(pre_ids[:10])  # tombstones must not come back
    writer = Writer(cluster.address, name)
    writer.start()
    try:
        writer.wait_for(30)
        t_start = time.monotonic()
        out = tmp_path / "snap.tar"
        manifest = client.create_snapshot(name, out)
        t_end = time.monotonic()
        writer.wait_for(len(writer.started) + 20)  # writes carry on after it
    finally:
        writer.stop.set()
        writer.join(30)
    assert writer.error is None, writer.error
    n_written = len(writer.acked)
    acked_before = {f"w{i}" for i in range(n_written) if writer.acked[i] < t_start}
    # writes were in flight while the snapshot was taken
    spans = zip(writer.started[:n_written], writer.acked, strict=True)
    during = sum(1 for s, a in spans if s < t_end and a > t_start)
    started_before_end = {f"w{i}" for i, t in enumerate(writer.started) if t < t_end}
    assert len(acked_before) >= 30 and during >= 1, (len(acked_before), during)

    report = verify_snapshot(out)
    assert report["rows"] == manifest["rows"]
    assert report["shard_seqs"] == [s["seq"] for s in manifest["shards"]]

    client.drop_collection(name)
    new_name = f"{name}_restored"
    restored = client.restore_snapshot(out, new_name, shards=3, replicas=1)
    info = client.describe(new_name)
    assert (info["shards"], info["replicas"], info["dim"], info["metric"]) == (
        3, 1, DIM, "euclidean")

    live_pre = set(pre_ids[10:])
    written = [f"w{i}" for i in range(n_written)]
    candidates = sorted(live_pre | set(written) | set(pre_ids[:10]))
    got = {r.id: r for r in restored.get(candidates)}
    ids = set(got)
    assert ids >= live_pre | acked_before, "an acknowledged write is missing"
    assert ids <= live_pre | started_before_end, "a write after the snapshot is in it"
    assert restored.count() == len(ids) == manifest["rows"]
    # Per original shard, the restored writes are exactly a prefix of that shard's writes:
    # everything up to the shard's snapshot seq and nothing after it.
    parts = Layout.initial(2).partition(written)
    for shard, rows in enumerate(parts):
        seq_order = [written[i] for i in sorted(rows.tolist())]
        kept = [w in ids for w in seq_order]
        m = sum(kept)
        assert kept == [True] * m + [False] * (len(kept) - m), f"shard {shard}: not a prefix"
        pre_on_shard = sum(1 for i in Layout.initial(2).partition(pre_ids[10:])[shard])
        assert manifest["shards"][shard]["rows"] == pre_on_shard + m
    for rid, rec in got.items():
        if rid.startswith("p"):
            np.testing.assert_array_equal(rec.vector, pre_vecs[int(rid[1:])])
            assert rec.metadata == {"n": -int(rid[1:]), "tag": "pre"}
        else:
            np.testing.assert_array_equal(rec.vector, writer.vectors[rid])
            assert rec.metadata == {"n": int(rid[1:])}
    hits = restored.search_ids(pre_vecs[100:105], k=1, exact=True)[0]
    assert [h[0] for h in hits] == [f"p{i}" for i in range(100, 105)]
    with pytest.raises(AlreadyExists):
        client.restore_snapshot(out, new_name)
    client.drop_collection(new_name)


def _flip_byte(path: Path, member: str, offset: int) -> None:
    with tarfile.open(path) as tar:
        start = tar.getmember(member).offset_data
    with open(path, "r+b") as f:
        f.seek(start + offset)
        old = f.read(1)[0]
        f.seek(start + offset)
        f.write(bytes([old ^ 0x10]))


def test_cli_snapshot_and_a_flipped_byte(
    cluster: ShardvecCluster, client: Client, name: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(6)
    col = client.create_collection(name, 8, shards=2)
    col.upsert([f"r{i}" for i in range(300)], rng.standard_normal((300, 8)), None)
    out = tmp_path / "cli.tar"
    r = _run(cluster, "snapshot", "create", name, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"snapshot of {name}: 300 rows in 2 shards" in r.stdout
    r = _run(cluster, "snapshot", "verify", str(out))
    assert r.returncode == 0, r.stderr
    assert "ok: " in r.stdout and "300 rows in 2 shards" in r.stdout
    r = _run(cluster, "snapshot", "restore", str(out), "--as", f"{name}_a", "--shards", "1")
    assert r.returncode == 0, r.stderr
    assert f"restored {name}_a: 300 rows, 1 shards" in r.stdout
    client.drop_collection(f"{name}_a")

    _flip_byte(out, "shard-0001/store.sqlite", 4096 + 100)
    r = _run(cluster, "snapshot", "verify", str(out))
    assert r.returncode == 1
    assert "DATA_LOSS" in r.stderr and "shard-0001/store.sqlite fails its checksum" in r.stderr
    with pytest.raises(DataLoss, match=r"shard-0001/store.sqlite fails its checksum"):
        client.restore_snapshot(out, f"{name}_b")
    assert f"{name}_b" not in {c["name"] for c in client.list_collections()}
    r = _run(cluster, "snapshot", "restore", str(out), "--as", f"{name}_b")
    assert r.returncode == 1 and "DATA_LOSS" in r.stderr
    client.drop_collection(name)
