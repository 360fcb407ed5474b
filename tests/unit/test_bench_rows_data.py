"""The million-row benchmark's data: the seeded generator grows the same rows whatever the
size, its rows are unit blends of two real rows, the chunked exact top-k equals a plain
brute force, and a missing data set is a plain error naming --data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import shardvec.bench.datasets as datasets
from shardvec.bench.datasets import (
    MissingData,
    brute_force_topk,
    chunked_topk,
    filtered_topk,
    grow_rows,
    normalised,
    require_data,
)
from shardvec.cluster.cli import cli


def _real(n: int = 300, dim: int = 16) -> np.ndarray:
    return np.random.default_rng(5).standard_normal((n, dim)).astype(np.float32)


def test_grown_rows_do_not_depend_on_n(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "GROW_BLOCK", 250)  # several blocks at this size
    real = _real()
    big, small = grow_rows(real, 2_000), grow_rows(real, 1_111)
    assert np.array_equal(big[:1_111], small)
    assert np.array_equal(grow_rows(real, 2_000), big)  # seeded: the same every run
    assert not np.array_equal(grow_rows(real, 2_000, seed=1), big)
    assert np.array_equal(grow_rows(real, 100), normalised(real[:100]))


def test_each_grown_row_is_a_unit_blend_of_two_real_rows() -> None:
    real = _real(40, 64)  # fewer rows than dimensions: a row's blend coefficients are unique
    unit = normalised(real)
    grown = grow_rows(real, 400)
    assert np.allclose(np.linalg.norm(grown, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(grown[:40], unit)
    for row in grown[40:]:
        coef, *_ = np.linalg.lstsq(unit.T, row, rcond=None)
        parents = np.flatnonzero(np.abs(coef) > 1e-4)
        assert len(parents) == 2  # two distinct real rows
        w = coef[parents].max() / coef[parents].sum()
        assert 0.6 - 1e-4 <= w <= 0.9 + 1e-4


def test_chunked_topk_equals_brute_force() -> None:
    base = grow_rows(_real(), 3_000)
    queries = normalised(np.random.default_rng(9).standard_normal((25, 16)).astype(np.float32))
    ids, scores = chunked_topk(base, queries, 10, chunk=333)
    assert np.array_equal(ids, brute_force_topk(base, queries, 10))
    assert np.allclose(scores, np.take_along_axis(queries @ base.T, ids, axis=1), atol=1e-6)
    rows = np.arange(3, 3_000, 10, dtype=np.int64)
    f_ids, _ = chunked_topk(base, queries, 10, rows=rows, chunk=77)
    assert np.array_equal(f_ids, filtered_topk(base, queries, rows, 10))
    few, few_scores = chunked_topk(base, queries, 10, rows=rows[:4])
    assert (few[:, 4:] == -1).all() and np.isneginf(few_scores[:, 4:]).all()


def test_missing_data_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(MissingData, match="--data DIR"):
        require_data(tmp_path)
    result = CliRunner().invoke(cli, ["bench", "rows", "--data", str(tmp_path), "--n", "10"])
    assert result.exit_code == 2
    assert "--data DIR" in result.output and str(tmp_path) in result.output


def test_the_tuners_work_during_the_load_is_read_from_the_servers_log(tmp_path: Path) -> None:
    """`bench rows` reports the tunes the recall tuner made or abandoned while the rows were
    loading, read from the lines the server logged between the load's start and end."""
    from shardvec.bench.rows import tuner_during

    def at(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

    t0 = float(int(time.time()))
    log = tmp_path / "up.log"
    log.write_text("\n".join([
        f"{at(t0 - 60)} INFO recall tuner: rows at 1000 rows over 4 shards: per-shard ef 10, "
        "recall@10 0.99 on 200 queries (target 0.950)",  # before the load
        f"{at(t0 + 5)} INFO recall tuner: rows at 450000 rows over 4 shards: per-shard ef 96, "
        "recall@10 0.97 on 264 queries (target 0.950)",
        f"{at(t0 + 6)} INFO coordinator: something else",
        f"{at(t0 + 7)} INFO recall tuner: rows changed by more than 10.0 % while tuned; "
        "again later",
        f"{at(t0 + 9)} INFO recall tuner: rows: the load ended during a forced tune; tuned "
        "again on the still rows",
        f"{at(t0 + 90)} INFO recall tuner: rows at 1000000 rows over 4 shards: per-shard ef "
        "192, recall@10 0.99 on 264 queries (target 0.950)",  # after the load
        "a line without a time",
    ]) + "\n")  # fmt: skip
    got = tuner_during(log, t0, t0 + 10)
    assert got == {"tunes": [{"rows": 450000, "ef": 96}], "outrun": 1, "given_way": 1}
