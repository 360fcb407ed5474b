"""One embedded Ray and one shardvec cluster for the Ray tier, stopped when the tier ends; each
module's collections dropped when the module ends."""

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


@pytest.fixture(scope="module", autouse=True)
def _drop_the_modules_collections(request: pytest.FixtureRequest) -> Iterator[None]:
    """Drop, when a module of the tier ends, every collection it made. Left behind, each kept
    its replicas running (idle, about 0.9 CPU-s a minute each) and the recall tuner tuning it,
    for the rest of the tier, beside the tests that came after."""
    mine = [i for i in request.session.items if getattr(i, "module", None) is request.module]
    if not any("cluster" in getattr(i, "fixturenames", ()) for i in mine):
        yield
        return
    cluster: ShardvecCluster = request.getfixturevalue("cluster")
    with Client(cluster.address, timeout=120) as c:
        before = {col["name"] for col in c.list_collections()}
        aliases = set(c.list_aliases())
    yield
    with Client(cluster.address, timeout=120) as c:
        for alias in sorted(set(c.list_aliases()) - aliases):  # first: an aliased one can't go
            c.delete_alias(alias)
        for name in sorted({col["name"] for col in c.list_collections()} - before):
            c.drop_collection(name)


@pytest.fixture()
def client(cluster: ShardvecCluster) -> Iterator[Client]:
    with Client(cluster.address, timeout=120) as c:
        yield c


@pytest.fixture()
def name() -> str:
    """A fresh collection name per test."""
    return f"t{next(_names)}"
