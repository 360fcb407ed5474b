"""Shared fixtures: the shared real data set (skipped when absent) and seeded data."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """$SHARDVEC_SHARED_DATA (the set or its parent), else ../shared/data/pypi-minilm-100k."""
    env = os.environ.get("SHARDVEC_SHARED_DATA")
    if env:
        path = Path(env)
        return path if (path / "base.npy").exists() else path / "pypi-minilm-100k"
    return REPO.parent / "shared" / "data" / "pypi-minilm-100k"


@dataclass
class SharedData:
    base: np.ndarray  # float32, normalised, (100000, 384)
    queries: np.ndarray  # float32, normalised, (1000, 384)
    gt: np.ndarray  # int32 (1000, 100) exact cosine top-100
    gt_year: np.ndarray  # filter year >= 2024
    gt_popular: np.ndarray  # filter popular == true
    meta: list[dict[str, object]]


def _normalised(path: Path) -> np.ndarray:
    arr = np.load(path).astype(np.float32)
    arr /= np.linalg.norm(arr, axis=1, keepdims=True)
    return arr


@pytest.fixture(scope="session")
def shared_data() -> SharedData:
    d = shared_data_dir()
    if not (d / "base.npy").exists():
        pytest.skip(f"shared data set not found at {d}")
    with (d / "base_texts.jsonl").open(encoding="utf-8") as f:
        meta = [json.loads(line) for line in f]
    return SharedData(
        base=_normalised(d / "base.npy"),
        queries=_normalised(d / "queries.npy"),
        gt=np.load(d / "gt_cosine_top100.npy"),
        gt_year=np.load(d / "gt_year_ge_2024_top100.npy"),
        gt_popular=np.load(d / "gt_popular_top100.npy"),
        meta=meta,
    )


def recall_at_k(found: list[list[str]], truth: np.ndarray, k: int) -> float:
    """Mean |found_j[:k] ∩ truth_j[:k]| / k with ids as strings of row numbers."""
    hits = [len(set(f[:k]) & {str(t) for t in truth[j, :k]}) for j, f in enumerate(found)]
    return float(np.mean(hits)) / k


# The cluster tier in two xdist groups of about equal time (each module starts its own servers
# or simulated nodes): those that kill -9 or damage a server's parts, and the others.
KILL_MODULES = {"test_kill_restarts", "test_crasher", "test_alias_kill", "test_self_repair"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist with `--dist loadgroup` (`make test`: three workers over every
    tier), three groups run side by side, each whole on one worker: the Ray tier, which shares
    one embedded cluster per package (tests/ray/conftest.py), and the cluster tier's two halves
    (KILL_MODULES and the rest), whose servers and multi-node clusters come one at a time
    within each half. Unit tests go to whichever worker is free: xdist hands them out once a
    group is done, so they fill in behind the groups.

    tryfirst: xdist turns the groups into node ids in its own hook of this name, which pluggy
    would otherwise call before this one, when the tests have no group yet."""
    for item in items:
        tier = item.path.parent.name
        if tier == "ray":
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif tier == "cluster":
            half = "kills" if item.path.stem in KILL_MODULES else "other"
            item.add_marker(pytest.mark.xdist_group(f"cluster-{half}"))


def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """On the xdist controller under `--dist loadgroup`: end the run when the tiers' groups did
    not reach the node ids a worker collected (pytest-xdist#1386, with pytest 9.2), so a run
    never silently spreads a tier over the workers, each setting up its fixtures again."""
    lost = [i for i in ids if i.startswith(("tests/ray/", "tests/cluster/")) and "@" not in i]
    config = getattr(node, "config", None)
    if lost and config is not None and config.getvalue("dist") == "loadgroup":
        pytest.exit(
            f"xdist --dist loadgroup lost the groups of {len(lost)} tests (first: {lost[0]}): "
            "this pytest and pytest-xdist do not work together (pytest-xdist#1386)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
