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

The `committed` table holds the decisions of atomic writes across shards
(coordinator/writes/atomic.py): one row (collection, shard, seq) per shard a batch touched, all
inserted in one synchronous=FULL transaction before any replica is told to commit. A staged
batch with no row is presumed aborted. Rows go once every replica a batch was staged on has
committed it (pruned in the next decision's transaction, costing no extra fsync).

The `layouts` table holds each collection's bucket -> shard layout (coordinator/layout.py)
once a resharding has changed it (absent: the contiguous slices of spec.shards), and
`changes` the one layout change in progress per collection (coordinator/changes/resharding.py), a
JSON state machine: every phase is written here before it takes effect. A switch writes the
new spec, the new layout and the change's next phase in one transaction.
The `replica_sets` table holds each shard's replica list after a replica change or a move
(coordinator/changes/replicas.py): the replica indices and the node each was placed on. A
shard without a row has replicas 0..spec.replicas-1, as every shard had before the table.

The `aliases` table holds each alias and the collection it names (coordinator/aliases.py); an
alias is written here (one synchronous=FULL statement) before it takes effect, so a coordinator
killed during a switch finds the alias naming the old collection or the new one, never none.
A collection named by an alias is not removed, and no alias takes a collection's name.

The `tuned` table holds the search breadth the recall tuner last set for each collection
(coordinator/queries/recall_tuner.py: a TunedBreadth as JSON, with the rows, layout version
and target it was measured at), so a restarted coordinator serves searches without `ef` at
the tuned breadth at once and tunes again only when the tuner's own rule finds it due.

Every SQLite or disk failure leaves here as a precise shardvec error
(shardvec.contract.sqlite_errors: a full disk is ResourceExhausted, corruption DataLoss,
busy/locked Unavailable), never INTERNAL with SQLite's raw message.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shardvec.contract.errors import AlreadyExists, FailedPrecondition, NotFound
from shardvec.contract.private_files import private_dir, private_file
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.sqlite_errors import map_storage_error
from shardvec.contract.types import TunedBreadth
from shardvec.coordinator.paths import registry_path

READY = "ready"
RESTORING = "restoring"
STATES = (READY, RESTORING)


class Registry:
    """Collections and per-shard seq reservations, committed with synchronous=FULL."""

    SEQ_BLOCK = 1024

    def __init__(self, data_dir: Path) -> None:
        path = self.path = registry_path(data_dir)
        self._lock = threading.Lock()
        with self._errors():
            private_dir(path.parent)
            private_file(path)  # 0600 before SQLite opens it: -wal/-shm take its mode
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._init()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise map_storage_error(exc, f"registry {self.path}") from exc

    def _init(self) -> None:
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
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS layouts (name TEXT PRIMARY KEY, layout TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS changes (name TEXT PRIMARY KEY, state TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS committed ("
            " name TEXT NOT NULL, shard INTEGER NOT NULL, seq INTEGER NOT NULL,"
            " PRIMARY KEY (name, shard, seq))"
        )
        # A shard's replica indices and preferred nodes (coordinator/changes/replicas.py);
        # no row: replicas 0..spec.replicas-1 placed anywhere, as before the table existed.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replica_sets ("
            " name TEXT NOT NULL, shard INTEGER NOT NULL, replicas TEXT NOT NULL,"
            " nodes TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (name, shard))"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS aliases (name TEXT PRIMARY KEY, collection TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tuned (name TEXT PRIMARY KEY, breadth TEXT NOT NULL)"
        )

    def add(self, spec: CollectionSpec, state: str = READY) -> None:
        if state not in STATES:
            raise ValueError(f"collection state must be one of {STATES}, got {state!r}")
        with self._lock, self._errors():
            alias = self._db.execute(
                "SELECT collection FROM aliases WHERE name = ?", (spec.name,)
            ).fetchone()
            if alias is not None:
                raise AlreadyExists(f"name: {spec.name!r} is an alias (of {alias[0]!r})")
            try:
                self._db.execute(
                    "INSERT INTO collections (name, spec, state, uid) VALUES (?, ?, ?, ?)",
                    (spec.name, spec.to_json(), state, secrets.token_hex(16)),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"collection {spec.name!r} already exists") from None

    def remove(self, name: str) -> None:
        with self._lock, self._errors():
            named = [r[0] for r in self._db.execute(
                "SELECT name FROM aliases WHERE collection = ? ORDER BY name", (name,)
            )]  # fmt: skip
            if named:
                raise FailedPrecondition(f"collection {name!r} is named by alias(es) {named}")
            cur = self._db.execute("DELETE FROM collections WHERE name = ?", (name,))
            self._db.execute("DELETE FROM seq_reserved WHERE name = ?", (name,))
            self._db.execute("DELETE FROM committed WHERE name = ?", (name,))
            self._db.execute("DELETE FROM layouts WHERE name = ?", (name,))
            self._db.execute("DELETE FROM changes WHERE name = ?", (name,))
            self._db.execute("DELETE FROM replica_sets WHERE name = ?", (name,))
            self._db.execute("DELETE FROM tuned WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise NotFound(f"collection {name!r} does not exist")

    def set_state(self, name: str, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"collection state must be one of {STATES}, got {state!r}")
        with self._lock, self._errors():
            cur = self._db.execute(
                "UPDATE collections SET state = ? WHERE name = ?", (state, name)
            )
            if cur.rowcount == 0:
                raise NotFound(f"collection {name!r} does not exist")

    def set_spec(self, spec: CollectionSpec) -> None:
        """Durably replace a collection's spec (an option changed that moves no data)."""
        with self._lock, self._errors():
            cur = self._db.execute(
                "UPDATE collections SET spec = ? WHERE name = ?", (spec.to_json(), spec.name)
            )
            if cur.rowcount == 0:
                raise NotFound(f"collection {spec.name!r} does not exist")

    def all(self) -> list[CollectionSpec]:
        return [spec for spec, _ in self.all_with_state()]

    def all_with_state(self) -> list[tuple[CollectionSpec, str]]:
        with self._lock, self._errors():
            rows = self._db.execute(
                "SELECT name, spec, state FROM collections ORDER BY name"
            ).fetchall()
        return [(CollectionSpec.from_json(name, spec), state) for name, spec, state in rows]

    def uid(self, name: str) -> bytes:
        """The 16-byte identity of collection `name` as created (a new one on every create)."""
        with self._lock, self._errors():
            row = self._db.execute("SELECT uid FROM collections WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"collection {name!r} does not exist")
        return bytes.fromhex(str(row[0]))

    def layout(self, name: str) -> str | None:
        """The layout JSON of `name` (None: never resharded, the slices of spec.shards)."""
        with self._lock, self._errors():
            row = self._db.execute("SELECT layout FROM layouts WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def change(self, name: str) -> str | None:
        """The JSON state of the layout change of `name` in progress, if any."""
        with self._lock, self._errors():
            row = self._db.execute("SELECT state FROM changes WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_change(self, name: str, state: str | None) -> None:
        """Record the change's new state (None: the change is over)."""
        with self._lock, self._errors():
            self._set_change(name, state)

    def _set_change(self, name: str, state: str | None) -> None:
        if state is None:
            self._db.execute("DELETE FROM changes WHERE name = ?", (name,))
        else:
            self._db.execute(
                "INSERT INTO changes (name, state) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET state = excluded.state",
                (name, state),
            )

    def switch_layout(
        self, spec: CollectionSpec, layout: str, change: str | None,
        forget_shards: Sequence[int] = (),
    ) -> None:
        """In one transaction: the collection's new spec and layout, the change's next state,
        and the seq reservations and decisions of shards that no longer exist forgotten."""
        name = spec.name
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "UPDATE collections SET spec = ? WHERE name = ?", (spec.to_json(), name)
                )
                self._db.execute(
                    "INSERT INTO layouts (name, layout) VALUES (?, ?)"
                    " ON CONFLICT(name) DO UPDATE SET layout = excluded.layout",
                    (name, layout),
                )
                self._set_change(name, change)
                for shard in forget_shards:
                    self._forget_shard(name, shard)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def forget_shard(self, name: str, shard: int) -> None:
        """Forget the seq reservation and decisions of shard `shard` of `name` (a shard about
        to be created afresh, or one removed)."""
        with self._lock, self._errors():
            self._forget_shard(name, shard)

    def _forget_shard(self, name: str, shard: int) -> None:
        self._db.execute("DELETE FROM seq_reserved WHERE name = ? AND shard = ?", (name, shard))
        self._db.execute("DELETE FROM committed WHERE name = ? AND shard = ?", (name, shard))
        self._db.execute("DELETE FROM replica_sets WHERE name = ? AND shard = ?", (name, shard))

    def reserved(self, name: str, shard: int) -> int:
        with self._lock, self._errors():
            row = self._db.execute(
                "SELECT reserved FROM seq_reserved WHERE name = ? AND shard = ?", (name, shard)
            ).fetchone()
        return int(row[0]) if row else 0

    def reserve(self, name: str, shard: int, upto: int) -> int:
        """Durably reserve sequence numbers up to at least `upto`; returns the new reservation."""
        new = upto + self.SEQ_BLOCK
        with self._lock, self._errors():
            self._db.execute(
                "INSERT INTO seq_reserved (name, shard, reserved) VALUES (?, ?, ?)"
                " ON CONFLICT(name, shard) DO UPDATE SET reserved = excluded.reserved",
                (name, shard, new),
            )
        return new

    def decide(
        self, name: str, parts: Mapping[int, int], forget: Sequence[tuple[int, int]] = ()
    ) -> None:
        """Durably record that the batch staged as seq `parts[shard]` on each shard commits;
        in the same transaction forget the (shard, seq) decisions in `forget`."""
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "DELETE FROM committed WHERE name = ? AND shard = ? AND seq = ?",
                    [(name, s, q) for s, q in forget],
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO committed (name, shard, seq) VALUES (?, ?, ?)",
                    [(name, s, q) for s, q in parts.items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def committed(self, name: str, shard: int, seq: int) -> bool:
        """Whether the batch staged as `seq` on `shard` was decided committed (and not yet
        forgotten); False means it aborted, or never reached a decision."""
        with self._lock, self._errors():
            row = self._db.execute(
                "SELECT 1 FROM committed WHERE name = ? AND shard = ? AND seq = ?",
                (name, shard, seq),
            ).fetchone()
        return row is not None

    def decisions(self, name: str) -> int:
        """How many commit decisions of `name` are kept (for tests and status)."""
        with self._lock, self._errors():
            row = self._db.execute(
                "SELECT COUNT(*) FROM committed WHERE name = ?", (name,)
            ).fetchone()
        return int(row[0])

    def replica_sets(self, name: str) -> dict[int, ReplicaList]:
        """The recorded replica list of each shard of `name` (shards with none are absent)."""
        with self._lock, self._errors():
            rows = self._db.execute(
                "SELECT shard, replicas, nodes FROM replica_sets WHERE name = ?", (name,)
            ).fetchall()
        return {
            int(shard): ReplicaList(
                [int(i) for i in json.loads(replicas)],
                {int(k): str(v) for k, v in json.loads(nodes).items()},
            )
            for shard, replicas, nodes in rows
        }

    def set_replica_sets(
        self, name: str, lists: Mapping[int, ReplicaList], spec: CollectionSpec | None = None
    ) -> None:
        """Durably record the replica lists of the shards in `lists` (and with `spec`, the
        collection's spec: its replica count), in one synchronous=FULL transaction."""
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if spec is not None:
                    cur = self._db.execute(
                        "UPDATE collections SET spec = ? WHERE name = ?", (spec.to_json(), name)
                    )
                    if cur.rowcount == 0:
                        raise NotFound(f"collection {name!r} does not exist")
                elif self._db.execute(
                    "SELECT 1 FROM collections WHERE name = ?", (name,)
                ).fetchone() is None:  # dropped while a change ran: record nothing for it
                    raise NotFound(f"collection {name!r} does not exist")
                self._db.executemany(
                    "INSERT INTO replica_sets (name, shard, replicas, nodes) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT(name, shard) DO UPDATE SET replicas = excluded.replicas,"
                    " nodes = excluded.nodes",
                    [
                        (name, shard, json.dumps(rl.replicas),
                         json.dumps({str(k): v for k, v in rl.nodes.items()}))
                        for shard, rl in lists.items()
                    ],
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def tuned(self, name: str) -> TunedBreadth | None:
        """The breadth the recall tuner last set for `name` (None: none, or a row this
        version cannot read, which only costs a tune)."""
        with self._lock, self._errors():
            row = self._db.execute("SELECT breadth FROM tuned WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        try:
            d = json.loads(row[0])
            return TunedBreadth(
                ef=int(d["ef"]), shards=int(d["shards"]), recall=float(d["recall"]),
                queries=int(d["queries"]), rows=int(d["rows"]),
                layout_version=int(d["layout_version"]), target=float(d["target"]),
                tuned_unix=float(d["tuned_unix"]),
            )  # fmt: skip
        except (ValueError, TypeError, KeyError):
            return None

    def set_tuned(self, name: str, tuned: TunedBreadth | None) -> None:
        """Durably record the breadth the tuner set for `name` (None: forget it); nothing
        for a collection no longer registered (dropped while it was tuned)."""
        with self._lock, self._errors():
            if tuned is None:
                self._db.execute("DELETE FROM tuned WHERE name = ?", (name,))
                return
            self._db.execute(
                "INSERT INTO tuned (name, breadth) SELECT ?, ? WHERE EXISTS"
                " (SELECT 1 FROM collections WHERE name = ?)"
                " ON CONFLICT(name) DO UPDATE SET breadth = excluded.breadth",
                (name, json.dumps(asdict(tuned), sort_keys=True), name),
            )

    def aliases(self) -> dict[str, str]:
        """Every alias and the collection it names."""
        with self._lock, self._errors():
            rows = self._db.execute("SELECT name, collection FROM aliases").fetchall()
        return {str(a): str(c) for a, c in rows}

    def set_alias(self, alias: str, collection: str) -> None:
        """Durably point `alias` at `collection` (created, or switched: one statement, so the
        row names the old collection or the new one, never none)."""
        with self._lock, self._errors():
            if self._db.execute(
                "SELECT 1 FROM collections WHERE name = ?", (collection,)
            ).fetchone() is None:
                raise NotFound(f"collection: {collection!r} does not exist")
            if self._db.execute(
                "SELECT 1 FROM collections WHERE name = ?", (alias,)
            ).fetchone() is not None:
                raise AlreadyExists(f"alias: {alias!r} is the name of a collection")
            self._db.execute(
                "INSERT INTO aliases (name, collection) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET collection = excluded.collection",
                (alias, collection),
            )

    def remove_alias(self, alias: str) -> None:
        with self._lock, self._errors():
            cur = self._db.execute("DELETE FROM aliases WHERE name = ?", (alias,))
            if cur.rowcount == 0:
                raise NotFound(f"alias: {alias!r} does not exist")

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class ReplicaList:
    """A shard's replicas: their indices, and the node each was placed on by a move or a
    replica change ("" or absent: any node), so a restart re-creates it there."""

    replicas: list[int]
    nodes: dict[int, str] = field(default_factory=dict)


class CollectionDecisions:
    """The commit decisions of one collection (coordinator/writes/atomic.py `Decisions`), kept in
    the registry. Decisions confirmed (committed on every replica staged) are forgotten in
    the transaction of the next decision, so forgetting costs no fsync of its own."""

    def __init__(self, registry: Registry, name: str) -> None:
        self.registry = registry
        self.name = name
        self._forget: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def decide(self, parts: Mapping[int, int]) -> None:
        with self._lock:
            forget, self._forget = self._forget, []
        try:
            self.registry.decide(self.name, parts, forget)
        except BaseException:
            with self._lock:
                self._forget.extend(forget)
            raise

    def confirm(self, parts: Mapping[int, int]) -> None:
        with self._lock:
            self._forget.extend(parts.items())

    def committed(self, shard: int, seq: int) -> bool:
        return self.registry.committed(self.name, shard, seq)
