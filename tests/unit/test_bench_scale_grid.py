"""The scale benchmark's sweep grid and option parsing (no Ray)."""

from __future__ import annotations

import pytest

from shardvec.bench.bench_scale import (
    Point,
    ScaleConfig,
    parse_ints,
    sweep_points,
    synthetic_dataset,
)


def test_default_grid_is_one_factor_at_a_time() -> None:
    got = sweep_points(ScaleConfig())
    assert got == [
        Point(1, 1, 1), Point(2, 1, 1), Point(4, 1, 1), Point(8, 1, 1),  # shards
        Point(4, 2, 1),  # replicas on one node
        Point(4, 1, 2), Point(4, 2, 2),  # replicas on two nodes
        Point(4, 1, 4),  # nodes
    ]  # fmt: skip
    # grouped by node count, so points can share one cluster per node count
    assert [p.nodes for p in got] == sorted(p.nodes for p in got)


def test_full_grid_is_the_cross_product() -> None:
    got = sweep_points(ScaleConfig(shards=(1, 2), replicas=(1, 2), nodes=(1, 3), full=True))
    assert len(got) == 8 and len(set(got)) == 8
    assert {p.nodes for p in got} == {1, 3}


def test_real_cluster_grid_varies_shards_and_replicas_only() -> None:
    got = sweep_points(ScaleConfig(address="10.0.0.1:6379"))
    assert all(p.nodes == 0 for p in got)
    assert [(p.shards, p.replicas) for p in got] == [(1, 1), (2, 1), (4, 1), (8, 1), (4, 2)]
    assert got[-1].label == "S4 R2"


def test_parse_ints() -> None:
    assert parse_ints("1, 2,4") == (1, 2, 4)
    for bad in ("", "0,1", "a", "1,-2"):
        with pytest.raises(ValueError):
            parse_ints(bad)


def test_synthetic_data_is_seeded_and_exact() -> None:
    a = synthetic_dataset(500, 16, 20, seed=3)
    b = synthetic_dataset(500, 16, 20, seed=3)
    assert (a.base == b.base).all() and (a.gt == b.gt).all()
    assert a.base.shape == (500, 16) and a.queries.shape == (20, 16) and a.gt.shape == (20, 10)
    # the ground truth is the exact top-10 by cosine
    best = (a.queries @ a.base.T).argmax(axis=1)
    assert (a.gt[:, 0] == best).all()
