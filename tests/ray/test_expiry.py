"""Expiry on a running cluster with short real TTLs and polled waits: rows with a TTL vanish
from every read when it passes, and rows expiring later keep their absolute expiry through a
snapshot round trip, a reshard (2 -> 3 shards), new replicas built from a peer and replica
processes killed with kill -9 and restarted by Ray: each copy still hides them at the same
moment, and the sweep removes them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from shardvec.cluster.client import Client, Collection
from tests.waits import until

pytestmark = pytest.mark.ray

KEEP, LONG, SHORT = 150, 60, 40
LONG_S = 45.0  # seconds the "long" rows live: the operations below run inside it


def _counts(col: Collection, tries: int = 4) -> set[int]:
    """Counts of a few reads in a row (reads go round-robin over the replicas)."""
    return {col.count() for _ in range(tries)}


def test_expiry_through_snapshot_reshard_rebuild_and_restart(
    client: Client, name: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(28)
    vecs = rng.standard_normal((KEEP + LONG + SHORT, 8)).astype(np.float32)
    col = client.create_collection(name, dim=8, metric="euclidean", shards=2, ttl_seconds=0)
    keep = [f"k{i}" for i in range(KEEP)]
    long = [f"l{i}" for i in range(LONG)]
    short = [f"s{i}" for i in range(SHORT)]
    t0 = time.time()
    col.upsert(keep, vecs[:KEEP], [{"kind": "keep"}] * KEEP)
    col.upsert(long, vecs[KEEP : KEEP + LONG], [{"kind": "long"}] * LONG,
               documents=["later"] * LONG, expires_at=t0 + LONG_S)  # fmt: skip
    col.upsert(short, vecs[KEEP + LONG :], [{"kind": "short"}] * SHORT, ttl_seconds=2)
    assert col.count() == KEEP + LONG + SHORT
    # the short rows vanish from every read when their TTL passes
    until(lambda: col.count() == KEEP + LONG, 20, "short rows expired")
    assert col.get(short) == []
    hits = col.search_ids(vecs[KEEP + LONG :][:5], k=5, exact=True)[0]
    assert not {i for row in hits for i in row} & set(short)
    assert col.count(where={"kind": "short"}) == 0

    def long_rows_there(c: Collection) -> None:
        left = LONG_S - (time.time() - t0)
        assert left > 2, f"the operations took too long ({-left:.1f} s past the long TTL)"
        assert _counts(c) == {KEEP + LONG}
        assert len(c.get(long, include_vectors=False)) == LONG

    # a snapshot round trip keeps each row's absolute expiry
    snap = tmp_path / "snap.tar"
    client.create_snapshot(name, snap)
    restored = client.restore_snapshot(snap, f"{name}_r", shards=1)
    long_rows_there(restored)
    # a reshard copies the rows with their expiry; new replicas copy them from a peer
    col.scale(shards=3, timeout=120)
    col.scale(replicas=2, timeout=120)
    client.wait_live(name)
    long_rows_there(col)
    # replica processes killed and restarted by Ray reopen their stores with the expiries
    victims = [r for r in client.wait_live(name) if r["replica"] == 0]
    for v in victims:
        os.kill(int(v["pid"]), signal.SIGKILL)
    until(lambda: {r["pid"] for r in client.wait_live(name) if r["replica"] == 0}
          .isdisjoint({v["pid"] for v in victims}), 60, "killed replicas restarted")  # fmt: skip
    long_rows_there(col)
    # then the long rows expire everywhere, in the original and the restored collection
    until(lambda: _counts(col) == {KEEP} and _counts(restored) == {KEEP},
          LONG_S + 30, "long rows expired")  # fmt: skip
    assert col.get(long) == [] and restored.get(long) == []
    assert col.search_ids(vecs[:3], k=KEEP, exact=True)[0][0][0] == "k0"
    keyword = col.search_keywords(["later"], k=10)
    assert not keyword[0]
    # the sweep removes them from every replica: the described count is the live rows
    until(lambda: client.describe(name)["count"] == KEEP, 30, "count after the sweep")
    client.drop_collection(f"{name}_r")
    client.drop_collection(name)
