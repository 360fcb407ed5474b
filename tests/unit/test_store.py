"""The SQLite store of one replica: atomic batches, tombstones, paging, corruption, settings."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.errors import DataLoss, FailedPrecondition
from shardvec.contract.settings import IndexSettings
from shardvec.shard.store import STORE_FILE, Store

SETTINGS = IndexSettings(dim=4, metric="cosine")


def _vec(i: int) -> bytes:
    return np.full(4, i, dtype="<f4").tobytes()


def _rows(ids: list[str], seq: int, first_slot: int = 0) -> list[tuple[str, int, int, bytes, str]]:
    return [(rid, first_slot + n, seq, _vec(n), f'{{"n":{n}}}') for n, rid in enumerate(ids)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path, SETTINGS)
    yield s
    s.close()


def test_new_store_is_empty(store: Store) -> None:
    assert store.applied_seq() == 0
    assert store.stats() == {"live_rows": 0, "tombstones": 0}
    assert store.changes_since(0, 10) == ([], 0)


def test_write_and_read_back(store: Store) -> None:
    store.write(1, upserts=_rows(["a", "b"], 1))
    assert store.applied_seq() == 1
    rows = store.get_rows(["b", "a", "zz"])
    assert set(rows) == {"a", "b"}
    assert rows["b"].slot == 1 and rows["b"].seq == 1
    assert np.frombuffer(rows["b"].vector or b"", dtype="<f4").tolist() == [1.0] * 4
    assert rows["b"].metadata == '{"n":1}'
    slim = store.get_rows(["a"], vectors=False, metadata=False)["a"]
    assert slim.vector is None and slim.metadata is None


def test_failing_batch_leaves_nothing(store: Store) -> None:
    store.write(1, upserts=_rows(["a"], 1))
    # The second row reuses live slot 0: the unique slot index rejects it mid-batch.
    bad = [("b", 5, 2, _vec(1), None), ("c", 0, 2, _vec(2), None)]
    with pytest.raises(sqlite3.IntegrityError):
        store.write(2, upserts=bad, tombstones=[("x", 2)])
    assert store.applied_seq() == 1
    assert set(store.get_rows(["a", "b", "c"])) == {"a"}
    assert store.seqs_of(["a", "b", "c", "x"]) == {"a": 1}
    assert store.stats() == {"live_rows": 1, "tombstones": 0}


def test_tombstones_hide_rows_and_free_slots(store: Store) -> None:
    store.write(1, upserts=_rows(["a", "b"], 1))
    store.write(2, tombstones=[("a", 2)])
    assert set(store.get_rows(["a", "b"])) == {"b"}
    assert store.stats() == {"live_rows": 1, "tombstones": 1}
    # The freed slot can be taken by a new id in the same or a later batch.
    store.write(3, upserts=[("c", 0, 3, _vec(7), None)])
    changes, applied = store.changes_since(1, 10)
    assert applied == 3
    assert [(c.id, c.seq, c.deleted, c.slot) for c in changes] == [
        ("a", 2, True, None),
        ("c", 3, False, 0),
    ]
    assert changes[0].vector is None and changes[0].metadata is None
    # Re-upserting a tombstoned id revives it.
    store.write(4, upserts=[("a", 2, 4, _vec(9), None)])
    assert set(store.get_rows(["a"])) == {"a"}


def test_changes_since_orders_and_pages_at_seq_boundaries(store: Store) -> None:
    store.write(1, upserts=_rows(["a", "b", "c"], 1))
    store.write(2, upserts=_rows(["d", "e"], 2, first_slot=3))
    store.write(3, upserts=_rows(["f"], 3, first_slot=5))
    changes, applied = store.changes_since(0, 100)
    assert [c.id for c in changes] == ["a", "b", "c", "d", "e", "f"]
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert applied == 3
    # A page of 4 would split seq 2: it ends after seq 1 instead.
    page, _ = store.changes_since(0, 4)
    assert [c.id for c in page] == ["a", "b", "c"]
    page, _ = store.changes_since(1, 4)
    assert [c.id for c in page] == ["d", "e", "f"]
    # One seq bigger than the limit comes whole, so paging always advances.
    page, _ = store.changes_since(0, 2)
    assert [c.id for c in page] == ["a", "b", "c"]
    assert store.changes_since(3, 10) == ([], 3)


def test_reopen_keeps_rows(tmp_path: Path) -> None:
    s = Store(tmp_path, SETTINGS)
    s.write(5, upserts=_rows(["a"], 5))
    s.close()
    s = Store(tmp_path, SETTINGS)
    assert s.applied_seq() == 5
    assert set(s.get_rows(["a"])) == {"a"}
    s.close()


def test_settings_mismatch_is_refused(tmp_path: Path) -> None:
    Store(tmp_path, SETTINGS).close()
    with pytest.raises(FailedPrecondition, match="dim"):
        Store(tmp_path, IndexSettings(dim=8, metric="cosine"))
    with pytest.raises(FailedPrecondition, match="metric"):
        Store(tmp_path, IndexSettings(dim=4, metric="dot"))
    with pytest.raises(FailedPrecondition, match="m:"):
        Store(tmp_path, IndexSettings(dim=4, metric="cosine", m=32))
    # ef is a search-time default: changing it is allowed and recorded.
    Store(tmp_path, IndexSettings(dim=4, metric="cosine", ef=100)).close()
    Store(tmp_path, SETTINGS).close()


def _filled(tmp_path: Path) -> Path:
    s = Store(tmp_path, SETTINGS)
    for seq in range(1, 21):
        ids = [f"{seq}-{i}" for i in range(50)]
        s.write(seq, upserts=_rows(ids, seq, first_slot=50 * seq))
    s.close()
    return tmp_path / STORE_FILE


@pytest.mark.parametrize(
    "damage", ["garbage_header", "garbage_middle", "truncate_half", "truncate_tiny"]
)
def test_corrupt_file_raises_data_loss(tmp_path: Path, damage: str) -> None:
    path = _filled(tmp_path)
    size = path.stat().st_size
    rng = np.random.default_rng(1)
    with open(path, "r+b") as f:
        if damage == "garbage_header":
            f.write(rng.bytes(512))
        elif damage == "garbage_middle":
            f.seek(size // 2)
            f.write(rng.bytes(8192))
        elif damage == "truncate_half":
            f.truncate(size // 2)
        else:
            f.truncate(50)
    with pytest.raises(DataLoss, match=str(path)):
        Store(tmp_path, SETTINGS)


def test_non_sqlite_file_raises_data_loss(tmp_path: Path) -> None:
    (tmp_path / STORE_FILE).write_bytes(b"this is not a database at all\n" * 100)
    with pytest.raises(DataLoss, match=STORE_FILE):
        Store(tmp_path, SETTINGS)


def test_store_of_another_collection_is_refused(tmp_path: Path) -> None:
    settings = IndexSettings(dim=4)
    Store(tmp_path, settings, owner="docs/shard-0/replica-0").close()
    with pytest.raises(FailedPrecondition, match="belongs to docs/shard-0/replica-0"):
        Store(tmp_path, settings, owner="other/shard-0/replica-0")
    Store(tmp_path, settings, owner="docs/shard-0/replica-0").close()  # its owner opens it
