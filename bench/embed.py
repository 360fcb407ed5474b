"""Text in: embedding throughput and text-query latency.

Measured in one run, on the bundled sample's 4000 texts (PyPI summaries, 16 word pieces on
average):
1. the reference: all-MiniLM-L6-v2 (coordinator/embedding/minilm.py) in this one plain process, one
   BLAS thread, all 4000 texts; also their cosine to the sample's stored vectors (made by
   sentence-transformers), mean and minimum;
2. one embedder actor on Ray, and the pool of --actors embedder actors (EmbedderPool over
   RayEmbedder, the code the coordinator runs), fed --texts texts as one large call (cut
   into chunks sent to the actors in parallel) and as concurrent single-text calls
   (micro-batched);
3. end to end through a cluster: a collection with embedding "minilm", Search by one query
   text, --queries sequential calls: latency p50 / p99, against the same searches by vector.

Usage: shardvec bench embed [--texts 1000] [--actors 2] [--queries 100] [--out PATH]
(run with one BLAS thread a process: the command sets OMP/OPENBLAS/MKL_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import normalised
from shardvec.bench.results import write_results
from shardvec.cluster.bringup import ShardvecCluster, connect_ray
from shardvec.cluster.client import Client
from shardvec.cluster.demo import load_sample
from shardvec.coordinator.embedding.minilm import MiniLM
from shardvec.coordinator.embedding.pool import EmbedderPool, RayEmbedder


def sample() -> tuple[list[str], np.ndarray]:
    """The bundled sample's texts and their stored vectors, normalised."""
    vectors, metas, _, _ = load_sample()
    return [str(m["text"]) for m in metas], normalised(vectors)


def plain_process(texts: list[str], stored: np.ndarray) -> dict[str, Any]:
    model = MiniLM()
    model.embed(texts[:64])  # warm: first touches of the weights
    t0 = time.perf_counter()
    out = model.embed(texts)
    dt = time.perf_counter() - t0
    cos = (out * stored).sum(axis=1)
    single = []
    for text in texts[:100]:
        t1 = time.perf_counter()
        model.embed([text])
        single.append(time.perf_counter() - t1)
    return {
        "texts": len(texts),
        "texts_per_s": len(texts) / dt,
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "one_text_p50_ms": float(np.percentile(single, 50) * 1000),
        "tokens_mean": float(np.mean(model.count_tokens(texts))),
    }


async def pool_run(actors: int, texts: list[str]) -> dict[str, Any]:
    import ray

    node = ray.get_runtime_context().get_node_id()
    pool = EmbedderPool(
        lambda n: RayEmbedder(n, cpus=0, threads=1),
        lambda: [node],
        max_embedders=actors,
        per_node=actors,
    )
    try:
        await pool.embed("minilm", texts[:128], time.monotonic() + 300)  # start and warm
        t0 = time.perf_counter()
        await pool.embed("minilm", texts, time.monotonic() + 600)
        bulk = len(texts) / (time.perf_counter() - t0)
        few = texts[:400]
        t0 = time.perf_counter()
        await asyncio.gather(*(pool.embed("minilm", [t], time.monotonic() + 600) for t in few))
        concurrent = len(few) / (time.perf_counter() - t0)
    finally:
        pool.close()
    return {"actors": actors, "bulk_texts_per_s": bulk, "concurrent_single_texts_per_s": concurrent}


def cluster_latency(texts: list[str], vectors: np.ndarray, queries: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shardvec-bench-embed-") as tmp:
        cluster = ShardvecCluster({"data_dir": tmp, "port": 0})
        with cluster, Client(cluster.address) as client:
            col = client.create_collection("bench_text", dim=0, shards=2, embedding="minilm")
            col.upsert([str(i) for i in range(len(texts))], vectors, batch_size=1000)
            probes = texts[:queries]
            col.search_texts(probes[:5], k=10)  # embedder actor started
            by_text, by_vector = [], []
            for i, text in enumerate(probes):
                t0 = time.perf_counter()
                col.search_texts(text, k=10, include_metadata=False)
                by_text.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                col.search(vectors[i], k=10, include_metadata=False)
                by_vector.append(time.perf_counter() - t0)
            hits = col.search_texts(probes, k=1, include_metadata=False)
            self_found = float(np.mean([h[0].id == str(i) for i, h in enumerate(hits)]))
            beside = _beside_a_big_caller(cluster.address, texts, probes)
    return {
        "queries": queries,
        "text_query_p50_ms": float(np.percentile(by_text, 50) * 1000),
        "text_query_p99_ms": float(np.percentile(by_text, 99) * 1000),
        "vector_query_p50_ms": float(np.percentile(by_vector, 50) * 1000),
        "own_text_top1": self_found,
        **beside,
    }


def _beside_a_big_caller(address: str, texts: list[str], probes: list[str]) -> dict[str, Any]:
    """One-text queries while another client embeds 10,000 query texts (one Search), and
    right after another client abandoned such a Search at 3 s."""
    import contextlib
    import threading

    from shardvec.contract.errors import ShardvecError

    big = (texts * (10_000 // len(texts) + 1))[:10_000]
    done = threading.Event()

    def big_caller(timeout: float) -> None:
        with Client(address, timeout=timeout) as c, contextlib.suppress(ShardvecError):
            c.get_collection("bench_text").search_texts(big, k=1, include_metadata=False)
        done.set()

    with Client(address) as c:
        col = c.get_collection("bench_text")
        t = threading.Thread(target=big_caller, args=(30.0,))  # gives up at 30 s
        t.start()
        time.sleep(1.0)  # the big call is embedding
        during: list[float] = []
        while not done.is_set() and len(during) < 50:
            t0 = time.perf_counter()
            col.search_texts(probes[len(during) % len(probes)], k=10, include_metadata=False)
            during.append(time.perf_counter() - t0)
        big_running = not done.is_set()
        t.join()
        done.clear()
        t = threading.Thread(target=big_caller, args=(3.0,))
        t.start()
        t.join()  # abandoned at 3 s
        after: list[float] = []
        for text in probes[:10]:
            t0 = time.perf_counter()
            col.search_texts(text, k=10, include_metadata=False)
            after.append(time.perf_counter() - t0)
    return {
        "text_query_beside_10k_p50_ms": float(np.percentile(during, 50) * 1000),
        "text_query_beside_10k_max_ms": float(max(during) * 1000),
        "text_queries_beside_10k": len(during),
        "big_call_still_running_at_the_end": big_running,
        "first_text_query_after_abandoned_10k_ms": float(after[0] * 1000),
        "text_query_after_abandoned_10k_max_ms": float(max(after) * 1000),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shardvec bench embed", description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=1000, help="Texts per pool measurement.")
    ap.add_argument("--actors", type=int, default=2, help="Embedder actors of the pool.")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default bench/results/embed.json)")
    args = ap.parse_args(argv)
    texts, stored = sample()
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
        "blas_threads_per_process": 1,
    }
    result["plain_process"] = plain = plain_process(texts, stored)
    print(f"plain process: {plain['texts_per_s']:.0f} texts/s over {plain['texts']} texts; "
          f"cosine to stored mean {plain['cosine_mean']:.6f} min {plain['cosine_min']:.6f}")
    connect_ray(num_cpus=os.cpu_count())
    some = texts[: args.texts]
    result["pool"] = []
    for actors in sorted({1, args.actors}):
        row = asyncio.run(pool_run(actors, some))
        result["pool"].append(row)
        print(f"{actors} embedder actor(s): {row['bulk_texts_per_s']:.0f} texts/s bulk, "
              f"{row['concurrent_single_texts_per_s']:.0f} texts/s as concurrent single texts")
    import ray

    ray.shutdown()
    result["cluster"] = lat = cluster_latency(texts, stored, args.queries)
    print(f"text query p50 {lat['text_query_p50_ms']:.1f} ms (p99 "
          f"{lat['text_query_p99_ms']:.1f}); vector query p50 {lat['vector_query_p50_ms']:.1f} ms;"
          f" own text top-1 {lat['own_text_top1']:.3f}")
    print(f"one-text query beside another client's 10,000-text search: p50 "
          f"{lat['text_query_beside_10k_p50_ms']:.1f} ms, max "
          f"{lat['text_query_beside_10k_max_ms']:.1f} ms over {lat['text_queries_beside_10k']}; "
          f"first after one abandoned at 3 s: {lat['first_text_query_after_abandoned_10k_ms']:.1f}"
          f" ms (target < 2000)")
    print()
    print(f"{'what':<44} {'texts/s':>9}")
    print(f"{'model in one plain process (1 thread)':<44} {plain['texts_per_s']:>9.0f}")
    for row in result["pool"]:
        label = f"pool of {row['actors']} actor(s), one large call"
        print(f"{label:<44} {row['bulk_texts_per_s']:>9.0f}")
        label = f"pool of {row['actors']} actor(s), concurrent single texts"
        print(f"{label:<44} {row['concurrent_single_texts_per_s']:>9.0f}")
    write_results("embed", result, args.out)
    return 0

