"""The layout: bucket owners, routing and runs, against the contiguous slices it starts as."""

from __future__ import annotations

import numpy as np
import pytest

from shardvec.contract.buckets import NUM_BUCKETS, bucket_of, slice_of_bucket
from shardvec.coordinator.layout import Layout


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 1024])
def test_initial_layout_is_the_contiguous_slices(shards: int) -> None:
    layout = Layout.initial(shards)
    assert layout.shards == shards
    assert [layout.shard_of_bucket(b) for b in range(NUM_BUCKETS)] == [
        slice_of_bucket(b, shards) for b in range(NUM_BUCKETS)
    ]


def test_partition_routes_every_id_to_its_bucket_owner() -> None:
    owners = np.zeros(NUM_BUCKETS, dtype=np.int32)
    owners[::3] = 1
    owners[1::5] = 2
    layout = Layout(4, owners)
    ids = [f"id-{i}" for i in range(2000)]
    parts = layout.partition(ids)
    assert sum(len(p) for p in parts) == len(ids)
    for shard, rows in enumerate(parts):
        assert all(owners[bucket_of(ids[i])] == shard for i in rows.tolist())
        assert list(rows) == sorted(rows)  # input order within a shard


def test_run_end_and_json_round_trip() -> None:
    owners = np.zeros(NUM_BUCKETS, dtype=np.int32)
    owners[10:20] = 1
    layout = Layout(2, owners)
    assert (layout.run_end(0), layout.run_end(10), layout.run_end(20)) == (10, 20, NUM_BUCKETS)
    assert Layout.from_json(layout.to_json()) == layout
    assert list(layout.buckets_of(1)) == list(range(10, 20))


def test_a_layout_must_use_shards_0_to_s_minus_1() -> None:
    owners = np.zeros(NUM_BUCKETS, dtype=np.int32)
    owners[5] = 2  # shard 1 owns nothing
    with pytest.raises(ValueError):
        Layout(1, owners)
