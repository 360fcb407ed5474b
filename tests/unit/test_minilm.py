"""The built-in embedding function: all-MiniLM-L6-v2 in NumPy reproduces the vectors that
sentence-transformers made for the bundled sample and the shared data set.

Skipped when the text extra or the model weights are not installed (`make text`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.errors import FailedPrecondition
from shardvec.contract.limits import MAX_EMBED_TOKENS
from shardvec.coordinator.embedding import minilm

SAMPLE = Path(__file__).resolve().parents[2] / "cluster" / "sample"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "pypi-minilm-100k"


@pytest.fixture(scope="module")
def model() -> minilm.MiniLM:
    try:
        return minilm.shared_model()
    except FailedPrecondition as exc:
        pytest.skip(f"text support not installed: {exc.message}")


def _unit(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)  # type: ignore[no-any-return]


def test_the_sample_texts_give_the_sample_vectors(model: minilm.MiniLM) -> None:
    """Sample texts embed to their stored vectors (float16 on disk). Every 16th of the 4000
    rows (250 texts of every length the sample has), to keep the tier fast; `shardvec bench
    embed` embeds all 4000."""
    with (SAMPLE / "metadata.jsonl").open(encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][::16]
    stored = _unit(np.load(SAMPLE / "vectors.npy"))[::16]
    got = model.embed(texts)
    assert got.shape == (len(texts), minilm.DIM) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * stored).sum(axis=1)
    print(f"sample: mean cosine {cos.mean():.6f}, min {cos.min():.6f} over {len(texts)} texts")
    assert cos.mean() >= 0.99
    assert cos.min() >= 0.99, (int(cos.argmin()), texts[int(cos.argmin())])


def test_order_and_batching_do_not_change_a_vector(model: minilm.MiniLM) -> None:
    # Lengths 3 to 62 pieces: batched together, the short ones are padded to the longest.
    texts = ["a", "vector search on Ray", "x " * 60, "Une bibliothèque pour les cartes", "δ"]
    alone = np.stack([model.embed([t])[0] for t in texts])
    together = model.embed(texts)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert model.embed([]).shape == (0, minilm.DIM)


def test_texts_are_cut_at_256_word_pieces(model: minilm.MiniLM) -> None:
    """As sentence-transformers' max_seq_length: what follows the 256th piece is ignored."""
    long = " ".join(f"word{i}" for i in range(2000))
    assert model.count_tokens([long]) == [MAX_EMBED_TOKENS]
    tails = model.embed([long, long + " and a completely different ending about cooking"])
    np.testing.assert_allclose(tails[0], tails[1], atol=1e-6)
    # Only the head of a long text is tokenized, and it gives the same pieces as the whole.
    text = "Parsers, lexers & CO2-neutral  schedulers; naïve 東京 tokens! " * 400
    whole = model.tokenizer.encode(text).ids
    assert model.tokenizer.encode(model._head(text)).ids == whole
    assert len(model._head(text)) < len(text) // 10
    short = model.embed(["word0 word1", "word0 word1 word2"])
    assert float(short[0] @ short[1]) < 0.999  # below the cut, every piece counts


@pytest.mark.skipif(not (SHARED / "query_texts.jsonl").exists(), reason="shared data absent")
def test_text_query_recall_against_the_shared_ground_truth(model: minilm.MiniLM) -> None:
    """Every 4th of the 1000 query texts (250), embedded here, finds the ground truth's top 10
    among the stored base vectors (exact search): recall@10 >= 0.95 (1.0 measured on these
    250), and they match the stored query vectors. A quarter keeps the tier fast."""
    with (SHARED / "query_texts.jsonl").open(encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][::4]
    queries = model.embed(texts)
    stored = _unit(np.load(SHARED / "queries.npy"))[::4]
    cos = (queries * stored).sum(axis=1)
    base = _unit(np.load(SHARED / "base.npy"))
    gt = np.load(SHARED / "gt_cosine_top100.npy")[::4, :10]
    scores = queries @ base.T
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    recall = float(np.mean([len(set(t) & set(g)) / 10 for t, g in zip(top, gt, strict=True)]))
    print(f"shared: recall@10 {recall:.4f}; query cosine mean {cos.mean():.6f} min {cos.min():.6f}")
    assert cos.min() >= 0.99
    assert recall >= 0.95


def test_missing_weights_are_a_precise_failed_precondition(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SHARDVEC_MINILM_DIR", str(tmp_path))
    with pytest.raises(FailedPrecondition, match=r"model\.safetensors is missing"):
        minilm.model_dir()
