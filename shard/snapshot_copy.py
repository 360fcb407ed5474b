"""A point-in-time copy of one replica's durable state, the shard's part of a snapshot.

The store is copied with SQLite's online backup API in one step, from its own read
transaction, so the copy is the store as of one committed batch while writers carry on: the
copy's `applied_seq` is the seq of the snapshot. The index checkpoint (index.bin and its
manifest.json) comes along when its manifest vouches for the copied bytes; it is derived data,
so a snapshot without it is still complete.

The format of what is streamed (manifest, file names, reading a copied store) is part of the
contract: `shardvec.contract.store_copy`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shardvec.contract.errors import DataLoss
from shardvec.contract.store_copy import (
    INDEX_FILE,
    MANIFEST_FILE,
    SHARD_SNAPSHOT_VERSION,
    STORE_FILE,
    StoreSummary,
    inspect_store_copy,
)
from shardvec.shard.checkpoint import Manifest

CHUNK_BYTES = 1 << 20
_CHECKPOINT_TRIES = 3


@dataclass(frozen=True)
class SnapshotFile:
    name: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class ShardSnapshot:
    """The files of one replica's snapshot in `directory`, and what they hold."""

    directory: Path
    store: StoreSummary
    checkpoint_seq: int | None
    files: list[SnapshotFile] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        """The JSON manifest streamed ahead of the files (seq, counts, files with sha256)."""
        return {
            "version": SHARD_SNAPSHOT_VERSION,
            "seq": self.store.seq,
            "rows": self.store.rows,
            "tombstones": self.store.tombstones,
            "checkpoint_seq": self.checkpoint_seq,
            "settings": self.store.settings,
            "files": [f.to_json() for f in self.files],
        }

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The files' bytes in manifest order, in chunks that never span two files."""
        for f in self.files:
            with open(self.directory / f.name, "rb") as src:
                while data := src.read(size):
                    yield data


def take_snapshot(replica_dir: Path, dest: Path) -> ShardSnapshot:
    """Copy the replica's store (and its checkpoint, if intact) into the empty dir `dest`."""
    replica_dir, dest = Path(replica_dir), Path(dest)
    source = replica_dir / STORE_FILE
    if not source.exists():
        raise DataLoss(f"{replica_dir}: no store to snapshot")
    copy = dest / STORE_FILE
    try:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(str(copy), isolation_level=None)
            try:
                src.backup(dst)  # one step: every page under one read transaction
                dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise DataLoss(f"{replica_dir}: could not copy the store: {exc}") from exc
    summary = inspect_store_copy(copy)
    files = [_describe(copy)]
    checkpoint = _copy_checkpoint(replica_dir, dest)
    if checkpoint is not None:
        files += [_describe(dest / INDEX_FILE), _describe(dest / MANIFEST_FILE)]
    return ShardSnapshot(dest, summary, checkpoint.seq if checkpoint else None, files)


def _copy_checkpoint(replica_dir: Path, dest: Path) -> Manifest | None:
    """Copy index.bin with the manifest that vouches for it. A checkpoint written meanwhile
    replaces both files, so retry a few times; give up quietly (the index is derived)."""
    for _ in range(_CHECKPOINT_TRIES):
        try:
            text = (replica_dir / MANIFEST_FILE).read_text(encoding="utf-8")
            manifest = Manifest.from_json(json.loads(text))
            shutil.copyfile(replica_dir / INDEX_FILE, dest / INDEX_FILE)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            continue
        got = _describe(dest / INDEX_FILE)
        if got.size == manifest.index_size and got.sha256 == manifest.index_sha256:
            (dest / MANIFEST_FILE).write_text(text, encoding="utf-8")
            return manifest
    (dest / INDEX_FILE).unlink(missing_ok=True)
    return None


def _describe(path: Path) -> SnapshotFile:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
            size += len(chunk)
    return SnapshotFile(path.name, size, h.hexdigest())
