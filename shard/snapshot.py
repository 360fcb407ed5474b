"""A point-in-time copy of one replica's durable state, the shard's part of a snapshot.

The store is copied with SQLite's online backup API in one step, from its own read
transaction, so the copy is the store as of one committed batch while writers carry on: the
copy's `applied_seq` is the seq of the snapshot. The index checkpoint (index.bin and its
manifest.json) comes along when its manifest vouches for the copied bytes; it is derived data,
so a snapshot without it is still complete.

Also here, because they know the store's schema: reading a copied store (`inspect_store_copy`,
`iter_live_rows`), used to verify and restore archives without opening an engine.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shard.errors import DataLoss
from shard.hnsw import INDEX_FILE, MANIFEST_FILE, Manifest
from shard.store import STORE_FILE

SHARD_SNAPSHOT_VERSION = 1
CHUNK_BYTES = 1 << 20
# Files a shard snapshot may hold, in the order they are streamed.
SNAPSHOT_FILES = (STORE_FILE, INDEX_FILE, MANIFEST_FILE)
_CHECKPOINT_TRIES = 3


@dataclass(frozen=True)
class SnapshotFile:
    name: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class StoreSummary:
    """What a copied store holds: its seq, live rows, tombstones and index settings."""

    seq: int
    rows: int
    tombstones: int
    settings: dict[str, Any]


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


def parse_shard_manifest(text: str) -> dict[str, Any]:
    """Check a streamed shard manifest; raises DataLoss when it is not one."""
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("version") != SHARD_SNAPSHOT_VERSION:
            raise ValueError(f"unknown shard snapshot version {raw.get('version')!r}")
        for key in ("seq", "rows", "tombstones"):
            if not is_count(raw[key]):
                raise ValueError(f"{key} is not a count")
        files = raw["files"]
        names = [f["name"] for f in files]
        if not names or names[0] != STORE_FILE or not set(names) <= set(SNAPSHOT_FILES):
            raise ValueError(f"unexpected files {names}")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate files {names}")
        for f in files:
            if not is_count(f["size"]) or not is_sha256(f["sha256"]):
                raise ValueError(f"bad size or checksum for {f['name']}")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataLoss(f"malformed shard snapshot manifest: {exc}") from exc
    return raw


def is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_sha256(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdef" for c in value)
    )


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


def _open_copy(path: Path) -> sqlite3.Connection:
    try:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        raise DataLoss(f"{path}: cannot open the store copy: {exc}") from exc


def inspect_store_copy(path: Path) -> StoreSummary:
    """Integrity-check a copied store and read its seq, row counts and settings."""
    conn = _open_copy(path)
    try:
        check = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        if check != ["ok"]:
            raise DataLoss(f"{path}: the store copy fails its integrity check: {check[:3]}")
        kv = dict(conn.execute("SELECT key, value FROM kv").fetchall())
        live, dead = conn.execute(
            "SELECT COALESCE(SUM(deleted = 0), 0), COALESCE(SUM(deleted = 1), 0) FROM rows"
        ).fetchone()
        settings = json.loads(kv["settings"])
        seq = int(kv["applied_seq"])
    except sqlite3.DatabaseError as exc:
        raise DataLoss(f"{path}: the store copy is not a readable store: {exc}") from exc
    except (KeyError, ValueError) as exc:
        raise DataLoss(f"{path}: the store copy lacks its seq or settings: {exc}") from exc
    finally:
        conn.close()
    if not isinstance(settings, dict):
        raise DataLoss(f"{path}: the store copy holds unreadable settings")
    return StoreSummary(seq, int(live), int(dead), settings)


def iter_live_rows(
    path: Path, batch_rows: int = 1000
) -> Generator[list[tuple[str, bytes, str | None]], None, None]:
    """The live rows of a copied store as (id, '<f4' vector bytes, metadata JSON or None),
    in id order, `batch_rows` at a time."""
    conn = _open_copy(path)
    last = ""
    try:
        while True:
            rows = conn.execute(
                "SELECT id, vector, metadata FROM rows WHERE deleted = 0 AND id > ? "
                "ORDER BY id LIMIT ?",
                (last, batch_rows),
            ).fetchall()
            if not rows:
                return
            if any(r[1] is None for r in rows):
                raise DataLoss(f"{path}: a live row in the store copy has no vector")
            yield [(str(r[0]), bytes(r[1]), r[2]) for r in rows]
            last = rows[-1][0]
    except sqlite3.DatabaseError as exc:
        raise DataLoss(f"{path}: reading rows from the store copy failed: {exc}") from exc
    finally:
        conn.close()
