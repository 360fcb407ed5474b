"""The scale benchmark's sweep grid and option parsing, through `shardvec bench scale --plan`
(nothing is run: no Ray, no data)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from shardvec.cluster.cli import cli


def _plan(*args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["bench", "scale", "--plan", "--synthetic", "100", *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_default_grid_is_one_factor_at_a_time() -> None:
    got = _plan()
    assert got == [
        "S1 R1 N1", "S2 R1 N1", "S4 R1 N1", "S8 R1 N1",  # shards
        "S4 R2 N1",  # replicas on one node
        "S4 R1 N2", "S4 R2 N2",  # replicas on two nodes
        "S4 R1 N4",  # nodes
    ]  # fmt: skip
    # grouped by node count, so points can share one cluster per node count
    nodes = [int(label.split(" N")[1]) for label in got]
    assert nodes == sorted(nodes)


def test_full_grid_is_the_cross_product() -> None:
    got = _plan("--shards", "1,2", "--replicas", "1,2", "--nodes", "1,3", "--full")
    assert len(got) == 8 and len(set(got)) == 8
    assert {label.split(" N")[1] for label in got} == {"1", "3"}


def test_real_cluster_grid_varies_shards_and_replicas_only() -> None:
    got = _plan("--address", "10.0.0.1:6379")
    assert got == ["S1 R1", "S2 R1", "S4 R1", "S8 R1", "S4 R2"]


@pytest.mark.parametrize("bad", ["", "0,1", "a", "1,-2"])
def test_bad_counts_are_usage_errors(bad: str) -> None:
    result = CliRunner().invoke(cli, ["bench", "scale", "--plan", "--shards", bad])
    assert result.exit_code == 2
    assert "expected" in result.output
