"""Every on-disk path of a coordinator's data directory is built here, from validated names only."""

from __future__ import annotations

from pathlib import Path

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.validation import validate_collection_name


def registry_path(data_dir: Path) -> Path:
    """The coordinator's collection registry (SQLite)."""
    return Path(data_dir) / "registry.sqlite"


def collection_dir(data_dir: Path, collection: str) -> Path:
    return Path(data_dir) / "collections" / validate_collection_name(collection)


def replica_dir(data_dir: Path, collection: str, shard: int, replica: int) -> Path:
    """Directory owned by one replica: its SQLite store, index checkpoint and manifest."""
    if shard < 0 or replica < 0:
        raise InvalidArgument(f"shard and replica must be >= 0, got {shard}, {replica}")
    return collection_dir(data_dir, collection) / f"shard-{shard:04d}" / f"replica-{replica:02d}"


def snapshot_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "snapshots"


def cursor_secret_path(data_dir: Path) -> Path:
    """The secret that seals scroll cursors (coordinator/queries/cursor.py)."""
    return Path(data_dir) / "cursor.key"


def quarantine_dir(data_dir: Path, collection: str, shard: int, replica: int, stamp: str) -> Path:
    """Where a damaged replica's directory is moved aside (kept for inspection, never read)."""
    replica_dir(data_dir, collection, shard, replica)  # validates the name and numbers
    name = f"{collection}-shard-{shard:04d}-replica-{replica:02d}-{stamp}"
    return Path(data_dir) / "quarantine" / name
