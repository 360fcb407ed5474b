"""The durable store of one shard replica: SQLite in WAL mode, the source of truth.

One table holds every row a replica has seen, live or deleted:

    rows(id TEXT PRIMARY KEY, slot INTEGER, seq INTEGER NOT NULL, vector BLOB,
         metadata TEXT, deleted INTEGER NOT NULL, bucket INTEGER, crc INTEGER, document TEXT)

- `slot` is the row's hnswlib label while it is live, and NULL for a tombstone (a deleted row
  gives its slot back; a unique partial index keeps live slots distinct).
- `seq` is the batch sequence number that last wrote the row, so `changes_since` pages by it.
- `vector` holds the row's float32 values as upserted ('<f4' bytes), `metadata` compact JSON,
  `document` the row's text (NULL for none).
- `crc` is `row_checksum` of the row's vector, metadata and document (NULL for a tombstone),
  computed in SQL on every write (`sv_crc`) and checked when the store opens, by the scrub
  (shard/scrub.py), by `get_rows` and by `changes_since`: a row whose bytes changed on disk
  raises DataLoss naming it.
- An update (metadata or document changed, vector kept) rewrites the row under its own seq
  (and checksum), so `changes_since` carries the row's whole new state to a replica catching up.
- A delete keeps the row as a tombstone (deleted=1, vector and metadata NULL, seq set), so a
  replica catching up from a peer learns about the delete and never resurrects the row.
- `expires_at` is the row's absolute expiry in unix seconds (NULL: never), computed once by the
  coordinator when the write was accepted, so every replica, catch-up, snapshot and bucket
  copy carries the same value. An expired row is invisible to every read (the engine's "live
  now" mask, shard/slots.py `visible`; `get_rows`, `scroll_rows` with `now`); the sweep
  (`expire`) turns it into a tombstone under its own seq.
- `bucket` is the row's routing bucket (shardvec.contract.buckets, computed in SQL by the
  `sv_bucket` function on write); the partial index `rows_scroll(bucket, id) WHERE deleted = 0`
  serves `scroll`, which pages live rows in (bucket, id) order, the collection-wide scroll
  order.

Stores of earlier versions gain the document, bucket, crc and expires_at columns when opened
(shard/store_schema.py: ALTER TABLE ... ADD COLUMN, each idempotent; buckets and checksums are
filled for existing rows), and the full-text index over the documents (shard/bm25.py: an FTS5
table kept by triggers on `rows`, so every write below updates it in its own transaction;
`kv.fts` names its tokenizer).

A `staged` table holds the batches of atomic writes across shards that are staged and not
yet resolved (shard/engine.py `stage`, `resolve`): one row per seq with the ids, the packed
vectors, the metadata texts, the ids to tombstone, the documents and the updates of existing
rows (metadata merged or replaced, document replaced), invisible to every read. Committing one
moves it into `rows` in the same transaction that sets `applied_seq` and deletes it.

A small `kv` table holds `applied_seq`, the format version, the IndexSettings JSON and the
owner (collection/shard/replica), so a directory of another collection is refused. Every
write batch is one transaction, committed (synchronous=FULL) before the call returns. Nothing
on disk is pickled; a file that is not an intact SQLite database raises DataLoss.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.contract.buckets import bucket_of
from shardvec.contract.errors import DataLoss, ShardvecError
from shardvec.contract.private_files import private_dir, private_file
from shardvec.contract.settings import IndexSettings
from shardvec.contract.sqlite_errors import map_storage_error
from shardvec.contract.store_copy import STORE_FILE
from shardvec.shard.store_rows import (
    ScrollRow,
    StagedRows,
    StoredRow,
    decode_vector_rows,
)
from shardvec.shard.store_rows import (
    row_checksum as row_checksum,  # sv_crc; bench/checksum.py swaps it
)
from shardvec.shard.store_schema import SET_KV, get_kv, prepare, rollback

_UPSERT = (
    "INSERT INTO rows (id, slot, seq, vector, metadata, deleted, bucket, crc, document, "
    "expires_at) VALUES (?1, ?2, ?3, ?4, ?5, 0, sv_bucket(?1), sv_crc(?4, ?5, ?6), ?6, ?7) "
    "ON CONFLICT(id) DO UPDATE SET slot = excluded.slot, seq = excluded.seq, "
    "vector = excluded.vector, metadata = excluded.metadata, deleted = 0, "
    "bucket = excluded.bucket, crc = excluded.crc, document = excluded.document, "
    "expires_at = excluded.expires_at"
)
_TOMBSTONE = (
    "INSERT INTO rows (id, slot, seq, vector, metadata, deleted, bucket, crc, document) "
    "VALUES (?1, NULL, ?2, NULL, NULL, 1, sv_bucket(?1), NULL, NULL) "
    "ON CONFLICT(id) DO UPDATE SET slot = NULL, seq = excluded.seq, vector = NULL, "
    "metadata = NULL, deleted = 1, bucket = excluded.bucket, crc = NULL, document = NULL, "
    "expires_at = NULL"
)
# The sweep: an expired row becomes a tombstone under its own seq (module docstring).
_EXPIRE = (
    "UPDATE rows SET slot = NULL, vector = NULL, metadata = NULL, deleted = 1, crc = NULL, "
    "document = NULL WHERE id = ? AND deleted = 0 AND expires_at IS NOT NULL "
    "AND expires_at <= ?"
)
# Reads that judge expiry in SQL: the row is live at the bound time `now`.
_LIVE_AT = "(expires_at IS NULL OR expires_at > ?)"
# An update keeps the row's slot and vector: new seq, metadata, document (and checksum) and
# expiry (NULL: never).
_UPDATE = (
    "UPDATE rows SET seq = ?1, metadata = ?2, document = ?3, crc = sv_crc(vector, ?2, ?3), "
    "expires_at = ?5 WHERE id = ?4 AND deleted = 0"
)
# SQLite allows 32766 host parameters per statement; stay well below.
_IN_CHUNK = 900


def _in_chunks(
    conn: sqlite3.Connection, sql: str, keys: Sequence[Any], before: Sequence[Any] = ()
) -> Iterator[tuple[Any, ...]]:
    """The rows of `sql` for every key of `keys`, in statements of at most _IN_CHUNK keys
    (SQLite's bound-parameter limit): `{marks}` in `sql` stands for one chunk's placeholders,
    bound after `before`."""
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = list(keys[start : start + _IN_CHUNK])
        yield from conn.execute(sql.format(marks=",".join("?" * len(chunk))), (*before, *chunk))


class Store:
    """SQLite-backed rows of one replica. Thread-safe: writes go through one connection
    behind a lock; `get_rows` reads through a connection per thread."""

    def __init__(self, directory: Path, settings: IndexSettings, owner: str = "") -> None:
        self.path = Path(directory) / STORE_FILE
        self.owner = owner
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # Reads for get() and exact search use one connection per thread (WAL lets them run
        # beside a commit); writes and recovery scans use `_conn` behind `_lock`.
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        # Bumped before and after every write of `rows`: even when none is under way; what
        # was read at one even value holds until it changes (keyword search caches by it).
        self.generation = 0
        try:
            private_dir(self.path.parent)  # the replica's directory: store, index, manifest
            private_file(self.path)  # 0600 before SQLite opens it: -wal/-shm take its mode
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        except OSError as exc:
            raise DataLoss(f"cannot create store {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise DataLoss(f"cannot open store {self.path}: {exc}") from exc
        try:
            self._conn = conn
            self._open(settings)
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _open(self, settings: IndexSettings) -> None:
        try:
            check = [r[0] for r in self._db.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            raise DataLoss(f"store {self.path} is not an intact SQLite database: {exc}") from exc
        if check != ["ok"]:
            raise DataLoss(f"store {self.path} failed its integrity check: {'; '.join(check[:5])}")
        with self._errors():
            self._db.create_function("sv_bucket", 1, bucket_of, deterministic=True)
            self._db.create_function("sv_crc", 3, row_checksum, deterministic=True)
            prepare(self._db, self.path, self.owner, settings)  # shard/store_schema.py

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """This thread's reader inside one read transaction: every statement sees the same
        committed state (keyword search reads statistics, postings and ids this way)."""
        with self._reader() as db:
            db.execute("BEGIN")
            try:
                db.execute("SELECT 1 FROM kv LIMIT 1").fetchone()  # the snapshot starts here
                yield db
            finally:
                db.execute("COMMIT")

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ShardvecError(f"store {self.path} is closed")
        return self._conn

    def _rollback(self) -> None:
        rollback(self._db)

    @contextlib.contextmanager
    def _transaction(self, *, rows_change: bool) -> Iterator[sqlite3.Connection]:
        """One write transaction under the store's lock, all or nothing. With `rows_change`
        the generation is odd while rows may change (shard/bm25.py caches by it)."""
        with self._lock, self._errors():
            if rows_change:
                self.generation += 1
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            finally:
                if rows_change:
                    self.generation += 1

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return _db_errors(self.path)

    def _get_kv(self, key: str) -> str | None:
        return get_kv(self._db, key)

    # ------------------------------------------------------------------------------ reads

    def applied_seq(self) -> int:
        with self._lock, self._errors():
            return int(self._get_kv("applied_seq") or 0)

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                self._db  # noqa: B018 - raises when the store is closed
                conn = sqlite3.connect(
                    str(self.path), isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA query_only=1")
                self._readers.append(conn)
            self._local.conn = conn
        with self._errors():
            yield conn

    def get_rows(
        self,
        ids: Sequence[str],
        *,
        vectors: bool = True,
        metadata: bool = True,
        documents: bool = False,
        now: float | None = None,
    ) -> dict[str, StoredRow]:
        """Live rows among `ids`, keyed by id (missing and deleted ids are absent; with `now`,
        expired ones too)."""
        # A row read with its vector or metadata is read whole and checked against its crc.
        check = vectors or metadata or documents
        if check:
            cols = "id, slot, seq, vector, metadata, document, crc, expires_at"
        else:
            cols = "id, slot, seq, NULL, NULL, NULL, 0, expires_at"
        live = "deleted = 0" if now is None else f"deleted = 0 AND {_LIVE_AT}"
        out: dict[str, StoredRow] = {}
        unique = list(dict.fromkeys(ids))
        sql = f"SELECT {cols} FROM rows WHERE {live} AND id IN ({{marks}})"
        with self._reader() as db:
            for rid, slot, seq, vec, md, doc, crc, exp in _in_chunks(
                db, sql, unique, () if now is None else (now,)
            ):
                if check:
                    self.check_row(rid, vec, md, crc, doc)
                out[rid] = StoredRow(
                    rid,
                    slot,
                    seq,
                    vec if vectors else None,
                    md if metadata else None,
                    False,
                    doc if documents else None,
                    exp,
                )
        return out

    def vectors_at(self, slots: Sequence[int]) -> dict[int, tuple[str, bytes]]:
        """(id, '<f4' vector bytes) of the live rows at `slots`, keyed by slot (slots with no
        live row are absent); each row is checked against its checksum (DataLoss)."""
        out: dict[int, tuple[str, bytes]] = {}
        sql = "SELECT slot, id, vector, metadata, crc, document FROM rows WHERE slot IN ({marks})"
        with self._reader() as db:
            for slot, rid, vec, md, crc, doc in _in_chunks(db, sql, slots):
                self.check_row(rid, vec, md, crc, doc)
                out[int(slot)] = (rid, vec)
        return out

    def payloads_at(
        self, slots: Sequence[int], db: sqlite3.Connection | None = None
    ) -> dict[int, tuple[str, int, str | None, str | None]]:
        """(id, seq, metadata JSON, document) of the live rows at `slots`, keyed by slot, in
        one statement per 900 slots (through `db`, a snapshot's, when given); each row is
        checked against its checksum (DataLoss). shard/payloads.py judges which are the
        versions memory holds."""
        out: dict[int, tuple[str, int, str | None, str | None]] = {}
        sql = (
            "SELECT slot, id, seq, vector, metadata, crc, document FROM rows "
            "WHERE slot IN ({marks})"
        )
        with contextlib.nullcontext(db) if db is not None else self._reader() as conn:
            for slot, rid, seq, vec, md, crc, doc in _in_chunks(conn, sql, slots):
                self.check_row(rid, vec, md, crc, doc)
                out[int(slot)] = (rid, int(seq), md, doc)
        return out

    def documents_holding(
        self,
        needle: str,
        slots: Sequence[int] | None,
        db: sqlite3.Connection | None = None,
        hits_only: bool = False,
    ) -> list[tuple[Any, ...]]:
        """(slot, id, seq, 1 if its document holds `needle` else 0) of the live rows at
        `slots` (None: every live row), by SQL instr() (a row without a document holds only
        ""), through `db` when given; with `hits_only`, (slot,) of those holding it."""
        holds = "instr(COALESCE(document, ''), ?) > 0"
        if hits_only:
            test = f"SELECT slot FROM rows WHERE {holds} AND "
        else:
            test = f"SELECT slot, id, seq, {holds} FROM rows WHERE "
        out: list[tuple[Any, ...]] = []
        with contextlib.nullcontext(db) if db is not None else self._reader() as conn:
            if slots is None:
                return conn.execute(test + "deleted = 0", (needle,)).fetchall()
            out += _in_chunks(conn, test + "slot IN ({marks})", slots, (needle,))
        return out

    def scroll_rows(
        self,
        after: tuple[int, str],
        end_bucket: int,
        limit: int,
        *,
        vectors: bool,
        metadata: bool,
        documents: bool = False,
        now: float | None = None,
    ) -> list[ScrollRow]:
        """Up to `limit` live rows (not expired at `now`, when given) with (bucket, id) >
        `after` and bucket < `end_bucket`, in (bucket, id) order, read in one statement (each
        row is one committed version). `after` = (b, "") starts at bucket b: every id is
        non-empty."""
        data = [
            "vector" if vectors else "NULL",
            "metadata" if metadata else "NULL",
            "document" if documents else "NULL",
        ]
        cols = ", ".join(["bucket", "id", "slot", *data, "expires_at"])
        live = "" if now is None else f"AND {_LIVE_AT} "
        sql = (
            f"SELECT {cols} FROM rows WHERE deleted = 0 AND (bucket, id) > (?, ?) "
            f"AND bucket < ? {live}ORDER BY bucket, id LIMIT ?"
        )
        args: tuple[Any, ...] = (after[0], after[1], end_bucket)
        args += (limit,) if now is None else (now, limit)
        with self._reader() as db:
            rows = db.execute(sql, args).fetchall()
        return [ScrollRow(int(r[0]), *r[1:]) for r in rows]

    def check_row(
        self,
        rid: str,
        vector: bytes | None,
        metadata: str | None,
        crc: object,
        document: str | None,
    ) -> None:
        """DataLoss naming the row when its stored checksum does not match its bytes."""
        if crc is None or row_checksum(vector, metadata, document) != crc:
            raise DataLoss(
                f"store {self.path}: row {rid!r} fails its checksum (its stored bytes changed)"
            )

    def verify_rows(self, after_id: str, limit: int) -> tuple[int, str | None]:
        """Check the checksums of up to `limit` live rows with id > `after_id`, in id order,
        through this thread's reader (writers are not held up); returns (rows checked, last
        id, None at the end). A mismatch raises DataLoss naming the row."""
        with self._reader() as db:
            rows = db.execute(
                "SELECT id, vector, metadata, crc, document FROM rows WHERE deleted = 0 AND id > ? "
                "ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        for rid, vec, md, crc, doc in rows:
            self.check_row(rid, vec, md, crc, doc)
        return len(rows), (rows[-1][0] if len(rows) == limit else None)

    def seqs_of(self, ids: Sequence[str]) -> dict[str, int]:
        """The stored seq of each of `ids` that has a row (live or tombstone)."""
        out: dict[str, int] = {}
        unique = list(dict.fromkeys(ids))
        with self._lock, self._errors():
            sql = "SELECT id, seq FROM rows WHERE id IN ({marks})"
            out.update((rid, int(seq)) for rid, seq in _in_chunks(self._db, sql, unique))
        return out

    def live_index(
        self, chunk_rows: int = 20_000
    ) -> Iterator[list[tuple[str, int, int, str | None, str | None, int, float | None, bytes]]]:
        """All live rows as (id, slot, seq, metadata JSON, document, bucket, expires_at, vector
        blob), in slot order, chunked. Every row's checksum is checked (recovery reads every
        live row this way at open, and codes vectors from the blobs when it must)."""
        last = -1
        while True:
            with self._lock, self._errors():
                got = self._db.execute(
                    "SELECT id, slot, seq, metadata, document, bucket, expires_at, vector, crc "
                    "FROM rows WHERE deleted = 0 AND slot > ? ORDER BY slot LIMIT ?",
                    (last, chunk_rows),
                ).fetchall()
            if not got:
                return
            for rid, _, _, md, doc, _, _, vec, crc in got:
                self.check_row(rid, vec, md, crc, doc)
            yield got
            last = got[-1][1]

    def live_vectors(
        self, dim: int, after_seq: int = -1, chunk_rows: int = 10_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(slots, float32 vectors) of live rows with seq > after_seq, in slot order, chunked.
        Every row's checksum is checked."""
        last = -1
        while True:
            with self._lock, self._errors():
                rows = self._db.execute(
                    "SELECT slot, vector, id, metadata, crc, document FROM rows "
                    "WHERE deleted = 0 AND seq > ? AND slot > ? ORDER BY slot LIMIT ?",
                    (after_seq, last, chunk_rows),
                ).fetchall()
            if not rows:
                return
            for _, vec, rid, md, crc, doc in rows:
                self.check_row(rid, vec, md, crc, doc)
            vectors = decode_vector_rows([r[1] for r in rows], dim, f"store {self.path}")
            slots = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield slots, vectors
            last = rows[-1][0]

    def changes_since(self, seq: int, limit: int) -> tuple[list[StoredRow], int]:
        """Rows and tombstones with seq > `seq`, ascending (seq, id), plus applied_seq.

        Returns at most `limit` rows, except that the rows of one seq are never split: a page
        ends at a seq boundary, and a single seq with more than `limit` rows comes whole.
        Both reads run in one transaction, so the pair is a consistent snapshot.
        """
        cols = "id, slot, seq, vector, metadata, deleted, document, crc, expires_at"
        with self._lock, self._errors():
            self._db.execute("BEGIN")
            try:
                rows = self._db.execute(
                    f"SELECT {cols} FROM rows WHERE seq > ? ORDER BY seq, id LIMIT ?",
                    (seq, limit + 1),
                ).fetchall()
                if len(rows) > limit:
                    last = rows[limit][2]
                    rows = [r for r in rows[:limit] if r[2] != last]
                    if not rows:
                        rows = self._db.execute(
                            f"SELECT {cols} FROM rows WHERE seq = ? ORDER BY id", (last,)
                        ).fetchall()
                applied = int(self._get_kv("applied_seq") or 0)
            finally:
                self._db.execute("COMMIT")
        for r in rows:  # a peer copying from us must not copy a damaged row
            if not r[5]:
                self.check_row(r[0], r[3], r[4], r[7], r[6])
        return [
            StoredRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[8]) for r in rows
        ], applied

    def stats(self) -> dict[str, int]:
        with self._lock, self._errors():
            live, dead = self._db.execute(
                "SELECT COALESCE(SUM(deleted = 0), 0), COALESCE(SUM(deleted = 1), 0) FROM rows"
            ).fetchone()
        return {"live_rows": int(live), "tombstones": int(dead)}

    # ----------------------------------------------------------------------------- writes

    def write(
        self,
        seq: int | None,
        upserts: Iterable[tuple[Any, ...]] = (),
        tombstones: Iterable[tuple[str, int]] = (),
        updates: Iterable[tuple[int, str | None, str | None, str, float | None]] = (),
        unstage_upto: int | None = None,
    ) -> None:
        """One atomic batch: tombstones (id, seq) first, then upserts (id, slot, seq, vector,
        metadata JSON[, document[, expires_at]]), then updates of live rows (seq, metadata
        JSON, document, id, expires_at); expires_at is unix seconds or None (never);
        `applied_seq` set to `seq` unless it is None; staged batches with seq <= `unstage_upto`
        deleted (they are applied, or obsolete). All or nothing."""
        with self._transaction(rows_change=True) as db:
            db.executemany(_TOMBSTONE, tombstones)
            db.executemany(_UPSERT, ((*u, None, None)[:7] for u in upserts))
            db.executemany(_UPDATE, updates)
            if seq is not None:
                db.execute(SET_KV, ("applied_seq", str(int(seq))))
            if unstage_upto is not None:
                db.execute("DELETE FROM staged WHERE seq <= ?", (int(unstage_upto),))

    def expire(self, ids: Sequence[str], now: float) -> list[str]:
        """The sweep's write: each of `ids` still live with an expiry at or before `now`
        becomes a tombstone under its own seq (applied_seq unchanged), in one transaction;
        returns the ids it changed."""
        done: list[str] = []
        with self._transaction(rows_change=True) as db:
            for rid in ids:
                if db.execute(_EXPIRE, (rid, now)).rowcount:
                    done.append(rid)
        return done

    # ----------------------------------------------------------------------------- staging

    def stage(self, batch: StagedRows) -> None:
        """Keep `batch` durably (committed, synchronous=FULL) beside the rows, invisible to
        reads. Staged batches of lower seqs go in the same transaction: the coordinator stages
        a shard's next batch only once the last one is resolved, so one still here was
        aborted (its abort never arrived)."""
        with self._transaction(rows_change=False) as db:
            db.execute("DELETE FROM staged WHERE seq < ?", (batch.seq,))
            db.execute(
                "INSERT OR REPLACE INTO staged "
                "(seq, ids, vectors, metadata, deletes, documents, updates, expires) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (batch.seq, batch.ids_json, batch.vectors, batch.metadata_json,
                 batch.deletes_json, batch.documents_json, batch.updates_json,
                 batch.expires_json),
            )

    def staged(self) -> list[StagedRows]:
        """Every staged batch, ascending by seq."""
        with self._lock, self._errors():
            rows = self._db.execute(
                "SELECT seq, ids, vectors, metadata, deletes, documents, updates, expires "
                "FROM staged ORDER BY seq"
            ).fetchall()
        return [StagedRows(int(r[0]), *r[1:]) for r in rows]

    def unstage(self, seq: int) -> None:
        """Drop staged batch `seq` (aborted), durably; nothing when it is not there."""
        with self._lock, self._errors():
            self._db.execute("DELETE FROM staged WHERE seq = ?", (int(seq),))

    def close(self) -> None:
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            if self._conn is not None:
                self._conn.close()
                self._conn = None


@contextlib.contextmanager
def _db_errors(path: Path) -> Iterator[None]:
    """Turns SQLite and disk failures into shardvec errors naming the file
    (shardvec.contract.sqlite_errors): corruption is DataLoss, a full disk ResourceExhausted."""
    try:
        yield
    except sqlite3.IntegrityError:
        raise  # a broken invariant of the engine's (a slot reused), not a storage failure
    except (sqlite3.Error, OSError) as exc:
        raise map_storage_error(exc, f"store {path}") from exc
