"""Every on-disk path shardvec uses is built here, from validated names only."""

from __future__ import annotations

import re
from pathlib import Path

from shard.errors import InvalidArgument

COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def validate_collection_name(name: object) -> str:
    """Return `name` if it is a legal collection name, else raise InvalidArgument.

    Names are `[A-Za-z0-9_-]{1,64}`, so a name can never escape the data directory.
    """
    if not isinstance(name, str) or COLLECTION_NAME.fullmatch(name) is None:
        raise InvalidArgument(f"collection name must match [A-Za-z0-9_-]{{1,64}}, got {name!r}")
    return name


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
