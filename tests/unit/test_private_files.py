"""Privileges on disk (security review, "Hardening" 4): stores and their -wal/-shm, the
registry, index checkpoints and manifests are 0600 and their directories 0700, under a
permissive umask (the explicit layer) and in full under the umask the coordinator and the
replicas set at start (contract/private_files.py). Real engines and files in tmp_path."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.private_files import private_dir, restrict_umask
from shardvec.contract.settings import IndexSettings
from shardvec.coordinator.paths import replica_dir, snapshot_dir
from shardvec.coordinator.registry import Registry
from shardvec.shard.engine import ShardEngine
from shardvec.shard.snapshot_copy import take_snapshot
from tests import inproc

SETTINGS = IndexSettings(dim=8)


@pytest.fixture()
def umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual permissive default
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _fill(directory: Path) -> ShardEngine:
    eng = ShardEngine(directory, SETTINGS, checkpoint_rows=10)
    vecs = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    for seq in range(1, 5):
        rows = slice((seq - 1) * 10, seq * 10)
        inproc.write(eng, seq, [f"r{i}" for i in range(40)][rows], vecs[rows], [{"i": seq}] * 10)
    eng.checkpoint()
    return eng


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): _mode(p) for p in [root, *sorted(root.rglob("*"))]}


def test_a_replicas_files_are_private_under_a_permissive_umask(tmp_path: Path, umask: None) -> None:
    eng = _fill(tmp_path / "replica")
    modes = _modes(tmp_path / "replica")
    names = set(modes)
    assert {
        "store.sqlite",
        "store.sqlite-wal",
        "store.sqlite-shm",
        "index.bin",
        "manifest.json",
    } <= names
    assert modes == {n: (0o700 if n == "." else 0o600) for n in names}
    eng.close()


def test_the_registry_is_private_under_a_permissive_umask(tmp_path: Path, umask: None) -> None:
    data = tmp_path / "data"
    reg = Registry(data)
    reg.reserve("c", 0, 10)
    modes = _modes(data)
    assert {"registry.sqlite", "registry.sqlite-wal", "registry.sqlite-shm"} <= set(modes)
    assert modes == {n: (0o700 if n == "." else 0o600) for n in modes}
    reg.close()


def test_everything_under_the_data_dir_is_private_under_the_server_umask(
    tmp_path: Path, umask: None
) -> None:
    data = private_dir(tmp_path / "data")
    restrict_umask()  # what Coordinator and ShardReplica do when they start
    reg = Registry(data)
    eng = _fill(replica_dir(data, "c", 0, 0))
    snapshot_dir(data).mkdir()
    work = Path(tempfile.mkdtemp(prefix="create-", dir=snapshot_dir(data)))
    snap = take_snapshot(eng.directory, work)
    assert json.dumps(snap.manifest())
    modes = _modes(data)
    assert len(modes) > 15
    bad = {n: oct(m) for n, m in modes.items() if m != (0o700 if (data / n).is_dir() else 0o600)}
    assert bad == {}
    eng.close()
    reg.close()


def test_an_existing_data_dir_is_made_private(tmp_path: Path, umask: None) -> None:
    d = tmp_path / "existing"
    d.mkdir(mode=0o755)
    private_dir(d)
    assert _mode(d) == 0o700
    nested = private_dir(tmp_path / "a" / "b")
    assert _mode(nested) == 0o700 and _mode(tmp_path / "a") == 0o700
