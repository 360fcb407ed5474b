"""Every copy of a row carries its absolute expiry unchanged, over in-process replicas (no
Ray): a snapshot round trip (the restored rows and the collection default; a row expired
by then is left out), a reshard 2 -> 3 (bucket copies) and a new replica built from a peer
(catch-up), each read back from the engines that hold the rows."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import numpy as np

from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.coordinator.snapshots import create_archive, restore_archive
from tests.inproc import LocalControls, wait_change
from tests.requests import restore_chunks

DIM = 8
ROWS = 90


def _deadline() -> float:
    return time.monotonic() + 60


def _held(controls: LocalControls, name: str, replica: int = 0) -> dict[str, float]:
    """Every live row replica `replica` of each shard of `name` holds, with its expiry (0.0:
    never), read from the engines' slot tables."""
    out: dict[str, float] = {}
    for (col, _, r), control in controls.controls.items():
        engine = control.engine
        if col != name or r != replica or engine is None:
            continue
        slots = engine._slots
        for slot in np.flatnonzero(slots.alive).tolist():
            at = float(slots.expires[slot])
            out[str(slots.slot_to_id[slot])] = at if math.isfinite(at) else 0.0
    return out


def test_copies_keep_each_rows_absolute_expiry(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((ROWS + 1, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(ROWS)]
    now = time.time()
    want = {rid: (now + 1000 + i if i % 3 else 0.0) for i, rid in enumerate(ids)}

    async def main() -> None:
        controls = LocalControls(tmp_path)
        rt = CoordinatorRuntime(tmp_path, controls)
        col = await rt.create(CollectionSpec("src", IndexSettings(dim=DIM), shards=2,
                                             ttl_seconds=120))  # fmt: skip
        await col.upsert(ids, vecs[:ROWS], [], _deadline(), expires_at=list(want.values()))
        # a row whose expiry has passed (the coordinator's own upsert takes any time)
        await col.upsert(["old"], vecs[ROWS:], [], _deadline(), expires_at=[1.0])
        assert _held(controls, "src") == {**want, "old": 1.0}
        assert await col.count(None, _deadline()) == ROWS

        archive = b"".join([c async for c in create_archive(rt, "src", _deadline())])
        dst = await restore_archive(rt, restore_chunks(archive, "dst", shards=3), _deadline())
        assert dst.spec.ttl_seconds == 120 and dst.spec.shards == 3
        assert _held(controls, "dst") == want  # "old" had expired: left out

        await rt.scale("src", 3, None)
        await wait_change(rt, "src")
        assert len(rt.get("src").shard_sets) == 3
        held = _held(controls, "src")
        assert {k: v for k, v in held.items() if k != "old"} == want

        await rt.scale("src", None, 2)
        await wait_change(rt, "src")
        rebuilt = _held(controls, "src", replica=1)
        assert {k: v for k, v in rebuilt.items() if k != "old"} == want
        await rt.shutdown()

    asyncio.run(main())
