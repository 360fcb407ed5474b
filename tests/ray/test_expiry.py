"""Expiry on a running cluster. Every row's absolute expiry, read back through Get and Scroll,
is exactly the one written (a per-row expires_at, the collection's default, never) after a
snapshot round trip (restored to 1 shard), a reshard (2 -> 3 shards), new replicas built from
a peer (1 -> 2) and replica processes killed with kill -9 and restarted by Ray; after each,
every replica (reads go round-robin) counts the live rows. Real expiry runs once, at the end,
with a 1 s TTL on that cluster (3 shards, 2 replicas, replica 0 restarted) and on the restored
collection: the rows vanish from count, Get, Scroll, exact and HNSW search, keyword search
and a filtered count on every replica.

Not here: the sweep, which removes a row SWEEP_GRACE_S (10 s) after its expiry and shows it
only in the replicas' figures (this cluster serves no metrics): tests/unit/test_expiry.py runs
the Sweeper thread and tests/unit/test_expiry_service.py checks the figures exported; that
each copy hides a row at its expiry from its in-memory table is checked in the engines by
tests/unit/test_expiry_copies.py (snapshot, reshard, replica from a peer) and
tests/unit/test_expiry_service.py (restart)."""

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

KEEP, OWN, DEFAULT, SHORT = 100, 60, 40, 30
TTL_S = 7200.0  # the collection's default expiry
READS = 4  # reads of each kind in a row: round-robin, every replica of a 2-replica shard


def _expiries(col: Collection, ids: list[str]) -> dict[str, float]:
    """Each row's expiry by Get, the same on every read, and the same by Scroll."""
    got = [{r.id: r.expires_at for r in col.get(ids, include_vectors=False)}
           for _ in range(READS)]  # fmt: skip
    assert all(g == got[0] for g in got), "replicas disagree on an expiry"
    scrolled = {r.id: r.expires_at for r in col.scroll(page_size=70, include_metadata=False)}
    assert scrolled == got[0]
    return got[0]


def _counts(col: Collection, where: dict[str, str] | None = None) -> set[int]:
    return {col.count(where) for _ in range(READS)}


def test_expiry_through_snapshot_reshard_rebuild_and_restart(
    client: Client, name: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(28)
    vecs = rng.standard_normal((KEEP + OWN + DEFAULT + SHORT, 8)).astype(np.float32)
    col = client.create_collection(name, dim=8, metric="euclidean", shards=2, ttl_seconds=TTL_S)
    keep = [f"k{i}" for i in range(KEEP)]
    own = [f"o{i}" for i in range(OWN)]
    default = [f"d{i}" for i in range(DEFAULT)]
    ids = keep + own + default
    t0 = time.time()
    col.upsert(keep, vecs[:KEEP], [{"kind": "keep"}] * KEEP, ttl_seconds=0)  # never
    own_at = [t0 + 3600 + 7 * i for i in range(OWN)]  # one absolute time per row
    col.upsert(own, vecs[KEEP : KEEP + OWN], [{"kind": "own"}] * OWN, expires_at=own_at,
               batch_size=25)  # fmt: skip
    t1 = time.time()
    col.upsert(default, vecs[KEEP + OWN : KEEP + OWN + DEFAULT], [{"kind": "default"}] * DEFAULT)
    t2 = time.time()
    truth = _expiries(col, ids)
    assert [truth[i] for i in keep] == [0.0] * KEEP
    assert [truth[i] for i in own] == own_at
    assert all(t1 + TTL_S <= truth[i] <= t2 + TTL_S for i in default)
    assert len({truth[i] for i in default}) == 1  # one batch, one moment

    def unchanged(c: Collection) -> None:
        assert _expiries(c, ids) == truth
        assert _counts(c) == {len(ids)}

    # a snapshot round trip keeps each row's absolute expiry, and the collection's default
    snap = tmp_path / "snap.tar"
    client.create_snapshot(name, snap)
    restored = client.restore_snapshot(snap, f"{name}_r", shards=1)
    unchanged(restored)
    assert client.describe(f"{name}_r")["ttl_seconds"] == TTL_S
    # a reshard copies the rows with their expiry; new replicas copy them from a peer
    col.scale(shards=3, timeout=120)
    unchanged(col)
    col.scale(replicas=2, timeout=120)
    client.wait_live(name)
    unchanged(col)
    # replica processes killed and restarted by Ray reopen their stores with the expiries
    victims = [r for r in client.wait_live(name) if r["replica"] == 0]
    for v in victims:
        os.kill(int(v["pid"]), signal.SIGKILL)
    until(lambda: {r["pid"] for r in client.wait_live(name) if r["replica"] == 0}
          .isdisjoint({v["pid"] for v in victims}), 60, "killed replicas restarted")  # fmt: skip
    unchanged(col)

    # real expiry: rows with a 1 s TTL vanish from every read on every replica
    short = [f"s{i}" for i in range(SHORT)]
    sv = vecs[KEEP + OWN + DEFAULT :]
    for c in (col, restored):
        c.upsert(short, sv, [{"kind": "short"}] * SHORT, documents=["fleeting"] * SHORT,
                 ttl_seconds=1)  # fmt: skip
    assert len(col.get(short, include_vectors=False)) == SHORT
    for c in (col, restored):
        until(lambda c=c: _counts(c) == {len(ids)}, 20, "short rows expired")
        for _ in range(READS):
            assert c.get(short) == []
            assert not {r.id for r in c.scroll(page_size=100)} & set(short)
            assert c.count(where={"kind": "short"}) == 0
            for exact in (True, False):
                hits = c.search_ids(sv[:5], k=5, exact=exact)[0]
                assert not {i for row in hits for i in row} & set(short)
            assert not c.search_keywords(["fleeting"], k=10)[0]
        assert _expiries(c, ids) == truth  # the others are untouched
    client.drop_collection(f"{name}_r")
    client.drop_collection(name)
