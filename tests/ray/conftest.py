"""One embedded Ray and one shardvec cluster for the Ray tier, stopped when the tier ends."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client

_names = itertools.count()


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShardvecCluster]:
    data_dir: Path = tmp_path_factory.mktemp("cluster-data")
    with ShardvecCluster({"data_dir": str(data_dir), "port": 0}, num_cpus=2) as c:
        yield c


@pytest.fixture()
def client(cluster: ShardvecCluster) -> Iterator[Client]:
    with Client(cluster.address, timeout=120) as c:
        yield c


@pytest.fixture()
def name() -> str:
    """A fresh collection name per test."""
    return f"t{next(_names)}"
