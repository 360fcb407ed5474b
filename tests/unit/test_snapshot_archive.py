"""Shard snapshots and the archive format, without Ray: real engines and files in tmp_path."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.archive import open_archive, verify_snapshot, write_archive
from shardvec.contract.errors import DataLoss, InvalidArgument
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.contract.store_copy import iter_live_rows, parse_shard_manifest
from shardvec.shard.engine import ShardEngine
from shardvec.shard.snapshot_copy import take_snapshot
from tests import inproc

SETTINGS = IndexSettings(dim=8, metric="euclidean")


def _engine(directory: Path, n: int, seed: int) -> tuple[ShardEngine, np.ndarray]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, 8)).astype(np.float32)
    eng = ShardEngine(directory, SETTINGS, checkpoint_rows=50)
    ids = [f"s{seed}-{i}" for i in range(n)]
    for start in range(0, n, 20):
        inproc.write(eng, start // 20 + 1, ids[start : start + 20], vecs[start : start + 20],
                   [{"i": i} for i in range(start, min(start + 20, n))])
    inproc.delete(eng, n // 20 + 2, ids=ids[:3])
    return eng, vecs


def _archive(tmp_path: Path) -> tuple[Path, list[ShardEngine]]:
    engines, parts = [], []
    for shard in range(2):
        eng, _ = _engine(tmp_path / f"replica-{shard}", 70 + shard * 10, shard)
        engines.append(eng)
        dest = tmp_path / f"snap-{shard}"
        dest.mkdir()
        snap = take_snapshot(eng.directory, dest)
        man = parse_shard_manifest(json.dumps(snap.manifest()))
        parts.append((man, dest))
    path = tmp_path / "c.snapshot.tar"
    write_archive(path, CollectionSpec("c", SETTINGS, 2, 1), parts)
    return path, engines


def test_shard_snapshot_is_the_store_at_its_seq(tmp_path: Path) -> None:
    eng, vecs = _engine(tmp_path / "r", 70, 0)
    dest = tmp_path / "snap"
    dest.mkdir()
    snap = take_snapshot(eng.directory, dest)
    assert snap.store.seq == eng.applied_seq
    assert snap.store.rows == 67 and snap.store.tombstones == 3
    assert [f.name for f in snap.files] == ["store.sqlite", "index.bin", "manifest.json"]
    assert snap.checkpoint_seq is not None and snap.checkpoint_seq <= snap.store.seq
    inproc.write(eng, eng.applied_seq + 1, ["later"], vecs[:1])  # after the copy: not in it
    rows = [r for batch in iter_live_rows(dest / "store.sqlite", 16) for r in batch]
    assert len(rows) == 67 and "later" not in {r[0] for r in rows}
    by_id = {r[0]: r for r in rows}
    np.testing.assert_array_equal(np.frombuffer(by_id["s0-10"][1], "<f4"), vecs[10])
    assert json.loads(by_id["s0-10"][2]) == {"i": 10}
    eng.close()


def test_archive_verifies_and_extracts(tmp_path: Path) -> None:
    path, engines = _archive(tmp_path)
    report = verify_snapshot(path)
    assert report["collection"] == "c" and report["shards"] == 2
    assert report["rows"] == 67 + 77
    assert report["shard_seqs"] == [e.applied_seq for e in engines]
    work = tmp_path / "work"
    archive = open_archive(path, work)
    assert all(s.store_path is not None and s.store_path.is_relative_to(work)
               for s in archive.shards)
    for e in engines:
        e.close()


def _flip(path: Path, member: str, offset: int) -> None:
    with tarfile.open(path) as tar:
        start = tar.getmember(member).offset_data
    with open(path, "r+b") as f:
        f.seek(start + offset)
        b = f.read(1)
        f.seek(start + offset)
        f.write(bytes([b[0] ^ 0x01]))


@pytest.mark.parametrize(
    ("member", "offset", "needle"),
    [
        ("shard-0001/store.sqlite", 5000, "shard-0001/store.sqlite fails its checksum"),
        ("shard-0000/index.bin", 100, "shard-0000/index.bin fails its checksum"),
        ("manifest.json", 30, "manifest.json does not match its checksum"),
    ],
)
def test_a_flipped_byte_fails_verification(
    tmp_path: Path, member: str, offset: int, needle: str
) -> None:
    path, engines = _archive(tmp_path)
    _flip(path, member, offset)
    with pytest.raises(DataLoss, match=needle):
        verify_snapshot(path)
    for e in engines:
        e.close()


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    path, engines = _archive(tmp_path)
    data = path.read_bytes()
    short = tmp_path / "short.tar"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataLoss):
        verify_snapshot(short)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not an archive" * 100)
    with pytest.raises(InvalidArgument, match="not a shardvec snapshot"):
        verify_snapshot(junk)
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as tar:
        tar.add(__file__, arcname="hello.py")
    with pytest.raises(InvalidArgument, match="not a shardvec snapshot"):
        verify_snapshot(other)
    with pytest.raises(InvalidArgument, match="no such file"):
        verify_snapshot(tmp_path / "missing.tar")
    for e in engines:
        e.close()
