"""The durable store's schema, and what opening a store does to it (shard/store.py).

`prepare` creates the tables of a new store, or brings a store of an earlier version up to
this one: the document, bucket, crc and expires_at columns are added when missing (ALTER TABLE
... ADD COLUMN, each idempotent; buckets and checksums are filled for existing rows), and the
full-text index over the documents is built (shard/bm25.py; `kv.fts` names its tokenizer).
Then the kv table's settings, format version and owner are written for a new store, or checked
against the ones asked for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from pathlib import Path

from shardvec.contract.errors import DataLoss, FailedPrecondition
from shardvec.contract.settings import IndexSettings
from shardvec.shard.bm25 import ensure_fts
from shardvec.shard.store_rows import json_object, row_checksum

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Settings that shape the stored data and the graph; `ef` is a search-time default and may change.
STRUCTURAL_SETTINGS = ("dim", "metric", "m", "ef_construction")

SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    id TEXT PRIMARY KEY,
    slot INTEGER,
    seq INTEGER NOT NULL,
    vector BLOB,
    metadata TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    bucket INTEGER,
    crc INTEGER,
    document TEXT,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS rows_seq ON rows(seq);
CREATE UNIQUE INDEX IF NOT EXISTS rows_slot ON rows(slot) WHERE slot IS NOT NULL;
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS staged (
    seq INTEGER PRIMARY KEY,
    ids TEXT NOT NULL,
    vectors BLOB,
    metadata TEXT NOT NULL,
    deletes TEXT NOT NULL,
    documents TEXT,
    updates TEXT,
    expires TEXT
);
"""
# The scroll order's index (shard/store.py's docstring); created after the bucket migration.
SCROLL_INDEX = "CREATE INDEX IF NOT EXISTS rows_scroll ON rows(bucket, id) WHERE deleted = 0"
SET_KV = (
    "INSERT INTO kv (key, value) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)


def prepare(db: sqlite3.Connection, path: Path, owner: str, settings: IndexSettings) -> None:
    """Bring the store open on `db` to this version's schema, then record (a new store) or
    check (an existing one) its settings and owner."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    migrate_columns(db, path)
    migrate_buckets(db, path)
    migrate_checksums(db, path)
    migrate_fts(db, path, settings.text_tokenizer)
    stored = get_kv(db, "settings")
    if stored is None:
        init_new(db, path, owner, settings)
    else:
        check_existing(db, path, owner, settings, stored)


def get_kv(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def rollback(db: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already (it does after
    SQLITE_FULL), so the error that caused it is the one raised."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def migrate_columns(db: sqlite3.Connection, path: Path) -> None:
    """Add the columns later versions introduced to a store that lacks them."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(rows)").fetchall()}
    if "document" not in cols:
        db.execute("ALTER TABLE rows ADD COLUMN document TEXT")
        log.info("store %s: added the document column", path)
    if "expires_at" not in cols:
        db.execute("ALTER TABLE rows ADD COLUMN expires_at REAL")
        log.info("store %s: added the expires_at column", path)
    staged = {r[1] for r in db.execute("PRAGMA table_info(staged)").fetchall()}
    for col in ("documents", "updates", "expires"):
        if col not in staged:
            db.execute(f"ALTER TABLE staged ADD COLUMN {col} TEXT")
            log.info("store %s: added the staged %s column", path, col)


def migrate_buckets(db: sqlite3.Connection, path: Path) -> None:
    """Give a store of the previous version its bucket column, filled, and the scroll
    index. The column and its values come in one transaction, so a store that has the
    column has every value; running it again changes nothing."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(rows)")}
    if "bucket" not in columns:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("ALTER TABLE rows ADD COLUMN bucket INTEGER")
            db.execute("UPDATE rows SET bucket = sv_bucket(id)")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        log.info("store %s: added the bucket column for scrolling", path)
    db.execute(SCROLL_INDEX)


def migrate_checksums(db: sqlite3.Connection, path: Path) -> None:
    """Give a store of the previous version its `crc` column and fill it for live rows
    (idempotent: `kv.checksums` is set once every live row has one)."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(rows)")}
    if "crc" not in cols:
        db.execute("ALTER TABLE rows ADD COLUMN crc INTEGER")
    if get_kv(db, "checksums") == "1":
        return
    filled = 0
    while True:
        rows = db.execute(
            "SELECT id, vector, metadata, document FROM rows "
            "WHERE deleted = 0 AND crc IS NULL LIMIT 5000"
        ).fetchall()
        if not rows:
            break
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "UPDATE rows SET crc = ? WHERE id = ?",
            [(row_checksum(v, m, d), rid) for rid, v, m, d in rows],
        )
        db.execute("COMMIT")
        filled += len(rows)
    db.execute(SET_KV, ("checksums", "1"))
    if filled:
        log.warning("%s: computed row checksums for %d existing rows", path, filled)


def migrate_fts(db: sqlite3.Connection, path: Path, tokenizer: str) -> None:
    """Build the full-text index (shard/bm25.py) over the live rows' documents when
    the store has none, or one of another tokenizer; recorded in kv.fts with it, in one
    transaction, so opening again changes nothing."""
    stored = get_kv(db, "fts")
    if stored == tokenizer:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        ensure_fts(db, tokenizer, stored)
        db.execute(SET_KV, ("fts", tokenizer))
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise
    log.info("store %s: built the full-text index (%s)", path, tokenizer)


def init_new(db: sqlite3.Connection, path: Path, owner: str, settings: IndexSettings) -> None:
    if db.execute("SELECT 1 FROM rows LIMIT 1").fetchone() is not None:
        raise DataLoss(f"store {path} holds rows but no settings")
    db.execute("BEGIN IMMEDIATE")
    db.execute(SET_KV, ("settings", settings_json(settings)))
    db.execute(SET_KV, ("format_version", str(FORMAT_VERSION)))
    db.execute(SET_KV, ("applied_seq", "0"))
    if owner:
        db.execute(SET_KV, ("owner", owner))
    db.execute("COMMIT")


def check_existing(
    db: sqlite3.Connection, path: Path, owner: str, settings: IndexSettings, stored: str
) -> None:
    version = get_kv(db, "format_version")
    if version != str(FORMAT_VERSION):
        raise FailedPrecondition(
            f"store {path} has format version {version}, expected {FORMAT_VERSION}"
        )
    old = json_object(stored, f"store {path} holds unreadable settings")
    stored_owner = get_kv(db, "owner")
    if owner and stored_owner and stored_owner != owner:
        raise FailedPrecondition(
            f"store {path} belongs to {stored_owner}, not {owner}: refusing to open it"
        )
    if owner and stored_owner is None:
        db.execute(SET_KV, ("owner", owner))
    new = settings.to_dict()
    diff = [k for k in STRUCTURAL_SETTINGS if old.get(k) != new[k]]
    if diff:
        detail = ", ".join(f"{k}: stored {old.get(k)!r}, requested {new[k]!r}" for k in diff)
        raise FailedPrecondition(
            f"store {path} was created with other settings ({detail})"
        )
    if old != new:
        db.execute(SET_KV, ("settings", settings_json(settings)))


def settings_json(settings: IndexSettings) -> str:
    return json.dumps(settings.to_dict(), sort_keys=True, separators=(",", ":"))
