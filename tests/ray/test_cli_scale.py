"""`shardvec scale NAME --shards N` shows the rows copied as they are copied, and says so
plainly when nothing changes.

Before, the bar read `0row [00:00, ?row/s, copying]` to the end: DescribeCollection's change
record got its row total and count only when a copy step ended (about 1,000 rows), and a
small collection's copy is one or two steps (coordinator/changes/resharding.py).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from tests.ray.test_cli import run

pytestmark = pytest.mark.ray

ROWS = 6000
DIM = 8


def test_scale_shows_the_rows_copied_and_nothing_to_change(
    cluster: ShardvecCluster, client: Client, name: str
) -> None:
    col = client.create_collection(name, DIM, shards=1)
    vecs = np.random.default_rng(9).standard_normal((ROWS, DIM)).astype(np.float32)
    col.upsert([f"r{i}" for i in range(ROWS)], vecs, batch_size=2000)

    r = run(cluster, "scale", name, "--shards", "3")
    assert r.returncode == 0, r.stderr
    summary = r.stdout.strip().splitlines()[-1]
    m = re.fullmatch(rf"{name}: shards=3 replicas=1 layout=\d+ count={ROWS}; (?:about )?"
                     r"([\d,]+) rows copied", summary)
    assert m, r.stdout
    copied = int(m.group(1).replace(",", ""))
    assert 0 < copied <= ROWS
    bars = re.findall(r"(\d+)/(\d+) \[", r.stderr.replace("\r", "\n"))
    assert bars, r.stderr[-2000:]
    last_n, last_total = (int(x) for x in bars[-1])
    assert last_n == last_total == copied  # the bar ends full, at the rows copied
    assert "0row [" not in r.stderr.replace("\r", "\n").splitlines()[-1]

    r = run(cluster, "scale", name, "--shards", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{name}: nothing to change, it has shards=3 replicas=1"
    assert col.count() == ROWS
