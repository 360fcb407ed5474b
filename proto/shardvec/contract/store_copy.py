"""The format of one shard replica's snapshot, as streamed to the coordinator and packed into
archives: the manifest, the files' names, and reading a copied store without an engine.

A shard snapshot is the replica's SQLite store copied as of one committed batch (`store.sqlite`)
and, when intact, its index checkpoint (`index.bin` with `manifest.json`). The coordinator and
the client read copies with `inspect_store_copy` and `iter_live_rows` (stdlib sqlite3, read
only) to verify and restore archives.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardvec.contract.errors import DataLoss

SHARD_SNAPSHOT_VERSION = 1
STORE_FILE = "store.sqlite"  # a replica's SQLite store: the truth
INDEX_FILE = "index.bin"  # its hnswlib checkpoint (derived)
MANIFEST_FILE = "manifest.json"  # what vouches for the checkpoint, written last
# Files a shard snapshot may hold, in the order they are streamed.
SNAPSHOT_FILES = (STORE_FILE, INDEX_FILE, MANIFEST_FILE)


@dataclass(frozen=True)
class StoreSummary:
    """What a copied store holds: its seq, live rows, tombstones and index settings."""

    seq: int
    rows: int
    tombstones: int
    settings: dict[str, Any]



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
) -> Generator[list[tuple[str, bytes, str | None, str | None, float | None]], None, None]:
    """The live rows of a copied store as (id, '<f4' vector bytes, metadata JSON or None,
    document or None, absolute expiry in unix seconds or None), in id order, `batch_rows` at
    a time (a store of the version before documents, or expiry, has no such column: None for
    every row)."""
    conn = _open_copy(path)
    last = ""
    try:
        cols = {r[1] for r in conn.execute("PRAGMA table_info(rows)").fetchall()}
        doc = "document" if "document" in cols else "NULL"
        exp = "expires_at" if "expires_at" in cols else "NULL"
        while True:
            rows = conn.execute(
                f"SELECT id, vector, metadata, {doc}, {exp} FROM rows WHERE deleted = 0 "
                "AND id > ? ORDER BY id LIMIT ?",
                (last, batch_rows),
            ).fetchall()
            if not rows:
                return
            if any(r[1] is None for r in rows):
                raise DataLoss(f"{path}: a live row in the store copy has no vector")
            yield [(str(r[0]), bytes(r[1]), r[2], r[3], r[4]) for r in rows]
            last = rows[-1][0]
    except sqlite3.DatabaseError as exc:
        raise DataLoss(f"{path}: reading rows from the store copy failed: {exc}") from exc
    finally:
        conn.close()
