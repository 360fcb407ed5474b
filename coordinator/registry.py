"""The coordinator's durable collection registry and sequence-number reservations (SQLite).

Sequence numbers are reserved in blocks: before a shard uses seq N the registry holds a
reservation >= N, so a restarted coordinator never hands out a number a replica already
applied, even when that replica is down at the time of the restart.

Each collection has a state: 'ready', or 'restoring' while RestoreSnapshot copies rows into
it. Each collection also gets a random uid when it is created, so a name dropped and created
again is a different collection to whoever kept its uid (scroll cursors). The row is written
'restoring' before any row is copied and flipped to 'ready' only when
every row is in, both committed with synchronous=FULL, so a coordinator that dies part way
finds the collection 'restoring' at its next start and drops it (CoordinatorRuntime.restore).
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from pathlib import Path

from shardvec.contract.errors import AlreadyExists, NotFound
from shardvec.contract.private_files import private_dir, private_file
from shardvec.contract.settings import CollectionSpec

from coordinator.paths import registry_path

READY = "ready"
RESTORING = "restoring"
STATES = (READY, RESTORING)


class Registry:
    """Collections and per-shard seq reservations, committed with synchronous=FULL."""

    SEQ_BLOCK = 1024

    def __init__(self, data_dir: Path) -> None:
        path = registry_path(data_dir)
        private_dir(path.parent)
        private_file(path)  # 0600 before SQLite opens it: -wal/-shm take its mode
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS collections (name TEXT PRIMARY KEY, spec TEXT NOT NULL,"
            " state TEXT NOT NULL DEFAULT 'ready')"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(collections)")}
        if "state" not in columns:  # a registry written before collections had a state
            self._db.execute(
                "ALTER TABLE collections ADD COLUMN state TEXT NOT NULL DEFAULT 'ready'"
            )
        if "uid" not in columns:  # a registry written before collections had a uid
            self._db.execute("ALTER TABLE collections ADD COLUMN uid TEXT")
        # Every collection has a uid, the identity of this incarnation of its name (scroll
        # cursors carry it); idempotent, and only rows of an older registry lack one.
        self._db.execute(
            "UPDATE collections SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seq_reserved ("
            " name TEXT NOT NULL, shard INTEGER NOT NULL, reserved INTEGER NOT NULL,"
            " PRIMARY KEY (name, shard))"
        )

    def add(self, spec: CollectionSpec, state: str = READY) -> None:
        if state not in STATES:
            raise ValueError(f"collection state must be one of {STATES}, got {state!r}")
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO collections (name, spec, state, uid) VALUES (?, ?, ?, ?)",
                    (spec.name, spec.to_json(), state, secrets.token_hex(16)),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"collection {spec.name!r} already exists") from None

    def remove(self, name: str) -> None:
        with self._lock:
            cur = self._db.execute("DELETE FROM collections WHERE name = ?", (name,))
            self._db.execute("DELETE FROM seq_reserved WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise NotFound(f"collection {name!r} does not exist")

    def set_state(self, name: str, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"collection state must be one of {STATES}, got {state!r}")
        with self._lock:
            cur = self._db.execute(
                "UPDATE collections SET state = ? WHERE name = ?", (state, name)
            )
            if cur.rowcount == 0:
                raise NotFound(f"collection {name!r} does not exist")

    def all(self) -> list[CollectionSpec]:
        return [spec for spec, _ in self.all_with_state()]

    def all_with_state(self) -> list[tuple[CollectionSpec, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, spec, state FROM collections ORDER BY name"
            ).fetchall()
        return [(CollectionSpec.from_json(name, spec), state) for name, spec, state in rows]

    def uid(self, name: str) -> bytes:
        """The 16-byte identity of collection `name` as created (a new one on every create)."""
        with self._lock:
            row = self._db.execute("SELECT uid FROM collections WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"collection {name!r} does not exist")
        return bytes.fromhex(str(row[0]))

    def reserved(self, name: str, shard: int) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT reserved FROM seq_reserved WHERE name = ? AND shard = ?", (name, shard)
            ).fetchone()
        return int(row[0]) if row else 0

    def reserve(self, name: str, shard: int, upto: int) -> int:
        """Durably reserve sequence numbers up to at least `upto`; returns the new reservation."""
        new = upto + self.SEQ_BLOCK
        with self._lock:
            self._db.execute(
                "INSERT INTO seq_reserved (name, shard, reserved) VALUES (?, ?, ?)"
                " ON CONFLICT(name, shard) DO UPDATE SET reserved = excluded.reserved",
                (name, shard, new),
            )
        return new

    def close(self) -> None:
        with self._lock:
            self._db.close()
