"""Make the labelled rare-token queries of the keyword benchmark (`shardvec bench keyword`):
bench/data/rare_token_queries.jsonl.

How they are made, from the shared set's texts (base_texts.jsonl, its first --rows rows: the
rows bench/keyword.py loads), seeded and repeatable:

1. Tokens are cut as FTS5's unicode61 tokenizer does (lowercase words of letters and digits).
2. A rare token is a word of 7 to 20 ASCII letters (no digits) in the texts of 1 to 3 of those rows:
   the exact names and rare terms embeddings blur.
3. For a sampled rare token, one row holding it is the source; the query names the token
   and paraphrases the rest of the source: the source's other words with every second one
   dropped, in order, and "for" / "that" / "with" dropped too ("a tool for X" stays close in
   meaning, not in wording).
4. The expected ids are every row (among the first --rows) holding the token: a good answer
   finds them all, so recall@10 = found / expected.

Each line: {"token", "query", "expected_ids", "source_id", "source_text", "rows"}.

    shardvec bench rare-tokens [--rows 20000] [--n 60] [--seed 18]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from shardvec.bench.datasets import default_data

OUT = Path(__file__).resolve().parent / "data" / "rare_token_queries.jsonl"
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_DROP = {"for", "that", "with", "a", "an", "the", "and", "of", "to", "in"}


def tokens(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def make(texts: list[str], n: int, seed: int) -> list[dict[str, object]]:
    where: dict[str, set[int]] = defaultdict(set)
    for i, text in enumerate(texts):
        for t in set(tokens(text)):
            where[t].add(i)
    rare = sorted(
        t for t, rows in where.items()
        if 1 <= len(rows) <= 3 and 7 <= len(t) <= 20 and t.isascii() and t.isalpha()
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    out: list[dict[str, object]] = []
    for t in rng.permutation(rare):
        rows = sorted(where[str(t)])
        source = rows[0]
        rest = [w for w in tokens(texts[source]) if w != t and w not in _DROP]
        paraphrase = rest[::2]
        if len(paraphrase) < 2:  # too little left to say what the row is about
            continue
        out.append({
            "token": str(t),
            "query": " ".join([str(t), *paraphrase]),
            "expected_ids": [str(r) for r in rows],
            "source_id": str(source),
            "source_text": texts[source],
            "rows": len(texts),
        })  # fmt: skip
        if len(out) == n:
            break
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="shardvec bench rare-tokens", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--data", type=Path, default=None, help="the shared set (default: ../shared)")
    p.add_argument("--rows", type=int, default=20_000, help="base rows the benchmark loads")
    p.add_argument("--n", type=int, default=60, help="queries to make")
    p.add_argument("--seed", type=int, default=18)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    data = args.data or default_data()
    with open(data / "base_texts.jsonl") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(args.rows), f, strict=False)]
    queries = make(texts, args.n, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    print(f"wrote {len(queries)} queries to {args.out}")
    return 0

