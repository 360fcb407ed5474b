from __future__ import annotations

import numpy as np
import pytest

from shardvec.coordinator.queries.merge import merge_topk, merge_with_payloads
from shardvec.coordinator.queries.reads import per_shard_ef, per_shard_k


def _shard(ids: list[list[str]], scores: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(ids, dtype=object), np.array(scores, dtype=np.float32)


def test_merge_picks_global_best_higher_is_better() -> None:
    a = _shard([["a1", "a2", "a3"]], [[0.9, 0.5, 0.1]])
    b = _shard([["b1", "b2", "b3"]], [[0.8, 0.7, 0.6]])
    ids, scores, counts = merge_topk([a[0], b[0]], [a[1], b[1]], 4, higher_is_better=True)
    assert ids.tolist() == [["a1", "b1", "b2", "b3"]]
    np.testing.assert_allclose(scores, [[0.9, 0.8, 0.7, 0.6]], rtol=1e-6)
    assert counts.tolist() == [4]


def test_merge_lower_is_better_for_distances() -> None:
    a = _shard([["a1", "a2"]], [[0.1, 2.0]])
    b = _shard([["b1", "b2"]], [[0.5, 0.6]])
    ids, _scores, _ = merge_topk([a[0], b[0]], [a[1], b[1]], 3, higher_is_better=False)
    assert ids.tolist() == [["a1", "b1", "b2"]]


def test_padding_sorts_last_and_is_counted_out() -> None:
    a = _shard([["a1", ""]], [[0.3, np.nan]])
    b = _shard([["", ""]], [[np.nan, np.nan]])
    ids, scores, counts = merge_topk([a[0], b[0]], [a[1], b[1]], 3, higher_is_better=True)
    assert ids.tolist() == [["a1", "", ""]]
    assert counts.tolist() == [1]
    assert np.isnan(scores[0, 1:]).all()


def test_k_larger_than_all_candidates_pads() -> None:
    a = _shard([["a1"]], [[0.3]])
    ids, _scores, counts = merge_topk([a[0]], [a[1]], 5, higher_is_better=True)
    assert ids.shape == (1, 5) and counts.tolist() == [1]


def test_ties_are_deterministic_in_shard_order() -> None:
    a = _shard([["a1", "a2"]], [[0.5, 0.5]])
    b = _shard([["b1", "b2"]], [[0.5, 0.5]])
    first = merge_topk([a[0], b[0]], [a[1], b[1]], 4, higher_is_better=True)[0]
    assert first.tolist() == [["a1", "a2", "b1", "b2"]]


@pytest.mark.parametrize("higher", [True, False])
@pytest.mark.parametrize("shards", [1, 2, 5])
def test_merge_equals_global_sort_on_random_batches(higher: bool, shards: int) -> None:
    rng = np.random.default_rng(7)
    nq, k = 50, 10
    id_parts, score_parts = [], []
    for s in range(shards):
        sc = rng.random((nq, k)).astype(np.float32)
        sc = -np.sort(-sc, axis=1) if higher else np.sort(sc, axis=1)
        valid = rng.integers(0, k + 1, size=nq)
        ids = np.array([[f"s{s}-{q}-{j}" for j in range(k)] for q in range(nq)], dtype=object)
        for q in range(nq):
            sc[q, valid[q] :] = np.nan
            ids[q, valid[q] :] = ""
        id_parts.append(ids)
        score_parts.append(sc)
    ids, scores, counts = merge_topk(id_parts, score_parts, k, higher_is_better=higher)
    for q in range(nq):
        pairs = [
            (float(score_parts[s][q, j]), id_parts[s][q, j])
            for s in range(shards)
            for j in range(k)
            if id_parts[s][q, j]
        ]
        pairs.sort(key=lambda p: -p[0] if higher else p[0])
        want = pairs[:k]
        assert counts[q] == len(want)
        np.testing.assert_allclose(scores[q, : len(want)], [p[0] for p in want], rtol=1e-6)
        assert set(ids[q, : len(want)].tolist()) == {p[1] for p in want} or len(
            {p[0] for p in want}
        ) < len(want)


def test_per_shard_k() -> None:
    assert per_shard_k(10, 4, exact=False) == 9  # Binomial(10, 1/4) mean + 3.5 sd
    assert per_shard_k(10, 4, exact=False, filtered=True) == 10
    assert per_shard_k(100, 1, exact=False) == 100
    assert per_shard_k(100, 4, exact=True) == 100
    assert per_shard_k(100, 4, exact=False, filtered=True) == 100
    k4 = per_shard_k(100, 4, exact=False)
    assert 25 < k4 < 100
    assert per_shard_k(100, 8, exact=False) < k4


def test_per_shard_ef() -> None:
    # An explicit ef passes through unchanged as every shard's ef.
    assert per_shard_ef(50, 64, 9, 4, exact=False, filtered=False) == 50
    assert per_shard_ef(50, 64, 10, 4, exact=False, filtered=True) == 50
    # Default: narrower per shard, never below k', the shard's own default when unsharded.
    assert per_shard_ef(None, 64, 9, 4, exact=False, filtered=False) == 32
    assert per_shard_ef(None, 64, 10, 2, exact=False, filtered=False) == 46
    assert per_shard_ef(None, 64, 40, 4, exact=False, filtered=False) == 40
    assert per_shard_ef(None, 64, 10, 1, exact=False, filtered=False) == 0
    assert per_shard_ef(None, 64, 10, 4, exact=False, filtered=True) == 0
    assert per_shard_ef(None, 64, 10, 4, exact=True, filtered=False) == 0


def test_payloads_follow_their_hits() -> None:
    """Metadata texts and vectors returned with each shard's hits end up beside the same hits."""
    rng = np.random.default_rng(7)
    nq, shards, width, dim = 5, 3, 4, 3
    id_parts, score_parts, meta_parts, vec_parts = [], [], [], []
    for s in range(shards):
        ids = np.array([[f"s{s}q{q}h{h}" for h in range(width)] for q in range(nq)], dtype=object)
        id_parts.append(ids)
        score_parts.append(rng.random((nq, width)).astype(np.float32))
        meta_parts.append(np.array([[f"meta of {i}" for i in row] for row in ids], dtype=object))
        vec_parts.append(rng.random((nq, width, dim)).astype(np.float32))
    vec_of = {
        i: vec_parts[s][q, h]
        for s in range(shards)
        for q in range(nq)
        for h, i in enumerate(id_parts[s][q])
    }
    for k in (5, 20):
        ids, _scores, counts, (metas, vecs) = merge_with_payloads(
            id_parts, score_parts, k, higher_is_better=True, payloads=[meta_parts, vec_parts]
        )
        assert metas.shape == (nq, k) and vecs.shape == (nq, k, dim)
        for q in range(nq):
            for j in range(int(counts[q])):
                assert metas[q, j] == f"meta of {ids[q, j]}"
                np.testing.assert_array_equal(vecs[q, j], vec_of[ids[q, j]])
            assert all(m == "" for m in metas[q, int(counts[q]) :])
