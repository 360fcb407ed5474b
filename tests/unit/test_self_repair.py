"""Row checksums and self-repair without Ray: a flipped bit in a stored vector is caught at
open, by Get, by Changes and by the scrub; a store of the previous version gets its
checksums; a DAMAGED replica is quarantined and rebuilt from its live peer, and stays out
of service with its reason when it has none."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.errors import DataLoss
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.contract.store_copy import STORE_FILE
from shardvec.contract.types import ShardWrite
from shardvec.coordinator.replicas.replica_set import ReplicaSet, ReplicaState
from shardvec.coordinator.writes.atomic import AtomicWriter
from shardvec.shard.engine import ShardEngine
from shardvec.shard.scrub import Scrubber
from shardvec.shard.store_rows import row_checksum
from tests import inproc
from tests.inproc import LocalControl, wait_for

DIM = 8
SETTINGS = IndexSettings(dim=DIM, metric="euclidean")
SPEC = CollectionSpec("t", SETTINGS, 1, 2)


def fill(engine: ShardEngine, n: int = 300, seq: int = 1) -> np.ndarray:
    vecs = np.random.default_rng(seq).standard_normal((n, DIM)).astype(np.float32)
    inproc.write(engine, seq, [f"r{i}" for i in range(n)], vecs, [{"i": i} for i in range(n)])
    return vecs


def flip_bit(directory: Path, rid: str, bit: int = 3) -> None:
    """Bit rot: one bit of a stored vector changes, its checksum does not."""
    with sqlite3.connect(directory / STORE_FILE) as db:
        (blob,) = db.execute("SELECT vector FROM rows WHERE id = ?", (rid,)).fetchone()
        data = bytearray(blob)
        data[bit // 8] ^= 1 << (bit % 8)
        db.execute("UPDATE rows SET vector = ? WHERE id = ?", (bytes(data), rid))


def test_checksum_covers_vector_metadata_and_document() -> None:
    base = row_checksum(b"\x00" * 8, '{"a":1}')
    assert base == row_checksum(b"\x00" * 8, '{"a":1}', None)
    assert base != row_checksum(b"\x00\x00\x00\x00\x00\x00\x00\x01", '{"a":1}')
    assert base != row_checksum(b"\x00" * 8, '{"a":2}')
    assert base != row_checksum(b"\x00" * 8, '{"a":1}', "")
    assert row_checksum(b"ab", "c") != row_checksum(b"a", "bc")  # lengths are framed


def test_flipped_bit_is_caught_by_get_changes_open_and_scrub(tmp_path: Path) -> None:
    engine = ShardEngine(tmp_path, SETTINGS)
    fill(engine)
    engine.close()
    flip_bit(tmp_path, "r7")
    with pytest.raises(DataLoss, match="'r7' fails its checksum"):
        ShardEngine(tmp_path, SETTINGS)  # the open-time pass reads every live row

    # While serving: Get of the row, then every call, answers DataLoss.
    engine = ShardEngine(tmp_path / "b", SETTINGS)
    fill(engine)
    flip_bit(tmp_path / "b", "r9")
    assert engine.get(["r1"])[0] is not None  # another row is fine
    with pytest.raises(DataLoss, match="'r9'"):
        engine.get(["r9"], include_vectors=False)  # metadata only still checks the row
    assert engine.damage is not None
    with pytest.raises(DataLoss):
        engine.search(np.ones((1, DIM), np.float32), 3)
    engine.close()

    engine = ShardEngine(tmp_path / "c", SETTINGS)
    fill(engine)
    flip_bit(tmp_path / "c", "r11")
    with pytest.raises(DataLoss, match="'r11'"):
        engine.changes_since(0, 10_000)  # a peer never copies a damaged row
    engine.close()

    engine = ShardEngine(tmp_path / "d", SETTINGS)
    fill(engine)
    flip_bit(tmp_path / "d", "r200")
    scrub = Scrubber(engine, rows_per_s=5000)
    scrub.start()
    deadline = time.monotonic() + 10
    while scrub.found is None and time.monotonic() < deadline:
        time.sleep(0.05)
    scrub.stop()
    assert scrub.found is not None and "'r200'" in scrub.found
    assert engine.damage == scrub.found
    engine.close()


def test_scrub_keeps_its_rate_and_finds_nothing_on_a_sound_store(tmp_path: Path) -> None:
    engine = ShardEngine(tmp_path, SETTINGS)
    fill(engine, n=1000)
    scrub = Scrubber(engine, rows_per_s=1000)
    began = time.monotonic()
    scrub.start()
    time.sleep(0.6)
    inproc.write(engine, 2, ["w"], np.ones((1, DIM), np.float32))  # writes are not held up
    checked, elapsed = scrub.checked, time.monotonic() - began
    scrub.stop()
    assert scrub.found is None and engine.damage is None
    assert 0 < checked <= 1000 * elapsed + 200, (checked, elapsed)
    engine.close()


def test_store_of_the_previous_version_gets_checksums(tmp_path: Path) -> None:
    engine = ShardEngine(tmp_path, SETTINGS)
    vecs = fill(engine)
    engine.close()
    with sqlite3.connect(tmp_path / STORE_FILE) as db:  # as the previous version left it
        db.execute("ALTER TABLE rows DROP COLUMN crc")
        db.execute("DELETE FROM kv WHERE key = 'checksums'")
    for _ in range(2):  # idempotent
        engine = ShardEngine(tmp_path, SETTINGS)
        got = engine.get(["r5"])[0]
        assert got is not None and np.array_equal(got.vector, vecs[5])
        engine.close()
    flip_bit(tmp_path, "r5")
    with pytest.raises(DataLoss):
        ShardEngine(tmp_path, SETTINGS)


def test_store_file_gone_beside_a_checkpoint_is_data_loss(tmp_path: Path) -> None:
    engine = ShardEngine(tmp_path, SETTINGS)
    fill(engine)
    engine.checkpoint()
    engine.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / (STORE_FILE + suffix)).unlink(missing_ok=True)
    with pytest.raises(DataLoss, match="is gone"):
        ShardEngine(tmp_path, SETTINGS)


async def _set(tmp_path: Path, n: int) -> tuple[ReplicaSet, list[LocalControl]]:
    rs, controls, writer = await inproc.replica_set(tmp_path, SPEC, n)
    WRITERS[id(rs)] = writer
    return rs, controls


WRITERS: dict[int, AtomicWriter] = {}


async def _upsert(rs: ReplicaSet, n: int, start: int = 0) -> int:
    """One atomic write of rows r<start>..r<start+n-1> (coordinator/writes/atomic.py)."""
    vecs = np.random.default_rng(start + 1).standard_normal((n, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(start, start + n)]
    writes = {0: ShardWrite(ids=ids, vectors=vecs)}
    return (await WRITERS[id(rs)].apply(writes, time.monotonic() + 10))[0]


def test_damaged_replica_is_quarantined_and_rebuilt_from_its_peer(tmp_path: Path) -> None:
    async def main() -> None:
        rs, controls = await _set(tmp_path, 2)
        await _upsert(rs, 400)
        controls[1].kill()
        flip_bit(controls[1].directory, "r3")
        controls[1].restart()
        rs.mark_dead(rs.replicas[1])
        await wait_for(lambda: rs.replicas[1].state is ReplicaState.LIVE)
        assert rs.replicas[1].repairs == 1 and controls[1].repairs == 1
        assert controls[1].quarantined[0].is_dir()  # kept, not deleted
        engine = controls[1].engine
        assert engine is not None and engine.count() == 400
        assert engine.damage is None
        await rs.close()
        for c in controls:
            await c.close()

    asyncio.run(main())


def test_damaged_replica_without_a_peer_stays_out_with_its_reason(tmp_path: Path) -> None:
    async def main() -> None:
        rs, controls = await _set(tmp_path, 1)
        await _upsert(rs, 100)
        controls[0].kill()
        flip_bit(controls[0].directory, "r3")
        controls[0].restart()
        rs.mark_dead(rs.replicas[0])
        await wait_for(lambda: rs.replicas[0].state is ReplicaState.DAMAGED)
        await asyncio.sleep(0.5)
        status = rs.replicas[0].status()
        assert status.state == "damaged" and "'r3' fails its checksum" in status.reason
        assert controls[0].repairs == 0 and controls[0].quarantined == []
        assert (controls[0].directory / STORE_FILE).exists()  # left as it was, for a person
        await rs.close()

    asyncio.run(main())


def test_a_replica_damaged_while_serving_leaves_the_live_set_and_writes_go_on(
    tmp_path: Path,
) -> None:
    """A replica whose store fails a check while serving answers DataLoss to the next stage:
    it is taken out (not a refusal that aborts the batch), the write lands on its healthy
    peer, and the damaged one is quarantined and rebuilt with nothing staged, level."""

    async def main() -> None:
        rs, controls = await _set(tmp_path, 2)
        assert await _upsert(rs, 100) == 100
        engine = controls[1].engine
        assert engine is not None
        # a batch staged there and never resolved (its abort lost): gone with the quarantine
        engine.stage(50, inproc.rows(engine, ["stale"], np.zeros((1, DIM), dtype=np.float32)))
        engine.mark_damaged("row 'r3' fails its checksum")
        assert await _upsert(rs, 50, start=100) == 50  # acknowledged by the healthy replica
        assert rs.replicas[0].state is ReplicaState.LIVE
        await wait_for(lambda: rs.replicas[1].state is ReplicaState.LIVE, timeout=20)
        assert rs.replicas[1].repairs == 1 and controls[1].repairs == 1
        rebuilt = controls[1].engine
        assert rebuilt is not None and rebuilt is not engine
        assert rebuilt.count() == 150 and rebuilt.staged_seqs() == []
        assert rebuilt.get(["stale"])[0] is None
        assert rebuilt.applied_seq == rs.acked_seq
        assert await _upsert(rs, 10, start=150) == 10  # both replicas take writes again
        assert [c.engine.count() for c in controls if c.engine is not None] == [160, 160]
        await rs.close()
        for c in controls:
            await c.close()

    asyncio.run(main())


def test_a_shard_whose_every_replica_is_damaged_refuses_writes_with_data_loss(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        rs, controls = await _set(tmp_path, 1)
        await _upsert(rs, 20)
        assert controls[0].engine is not None
        controls[0].engine.mark_damaged("row 'r3' fails its checksum")
        with pytest.raises(DataLoss, match="fails its checksum"):
            await _upsert(rs, 5, start=20)
        await wait_for(lambda: rs.replicas[0].state is ReplicaState.DAMAGED)
        with pytest.raises(DataLoss, match="damaged"):  # out of the set: named as damaged
            await _upsert(rs, 5, start=20)
        await rs.close()
        for c in controls:
            await c.close()

    asyncio.run(main())
