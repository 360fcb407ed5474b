"""`shardvec demo`: a local cluster, the bundled sample of real embeddings, queries, recall."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client

SAMPLE_DIR = Path(__file__).parent / "sample"
DEMO_DOCUMENTS = [
    "A tiny library to read and write GPX tracks from hiking and cycling trips",
    "Command-line tool that renames photos by the date they were taken",
]
DEMO_QUERIES = ["parse gps tracks of my bike rides", "fast json parsing"]


def load_sample() -> tuple[np.ndarray, list[dict[str, object]], np.ndarray, list[str]]:
    """Vectors, metadata rows, query vectors and query texts of the bundled sample."""
    vectors = np.load(SAMPLE_DIR / "vectors.npy").astype(np.float32)
    with (SAMPLE_DIR / "metadata.jsonl").open(encoding="utf-8") as f:
        metas = [json.loads(line) for line in f]
    queries = np.load(SAMPLE_DIR / "queries.npy").astype(np.float32)
    with (SAMPLE_DIR / "queries.jsonl").open(encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    return vectors, metas, queries, texts


def run_demo(data_dir: str | None, shards: int, k: int = 10) -> float:
    """Run the demo and return the measured recall@k of HNSW against exact search."""
    vectors, metas, queries, texts = load_sample()
    with tempfile.TemporaryDirectory(prefix="shardvec-demo-") as tmp:
        settings = {"data_dir": data_dir or tmp, "port": 0}
        click.echo("starting a local cluster on embedded Ray ...")
        t0 = time.perf_counter()
        with ShardvecCluster(settings) as cluster:
            click.echo(f"shardvec serving on {cluster.address} ({time.perf_counter() - t0:.1f} s)")
            with Client(cluster.address) as client:
                if "pypi" in [c["name"] for c in client.list_collections()]:
                    client.drop_collection("pypi")
                # embedding "minilm": the cluster embeds documents and query texts with
                # all-MiniLM-L6-v2, the model the sample's vectors were made with.
                col = client.create_collection(
                    "pypi", dim=vectors.shape[1], metric="cosine", shards=shards,
                    embedding="minilm",
                )  # fmt: skip
                t0 = time.perf_counter()
                col.upsert(
                    [str(m["id"]) for m in metas],
                    vectors,
                    [{k_: v for k_, v in m.items() if k_ != "id"} for m in metas],
                )
                click.echo(
                    f"loaded {col.count()} PyPI package summaries into {shards} shards "
                    f"in {time.perf_counter() - t0:.1f} s"
                )
                # New rows as text only: the embedder actors make their vectors.
                t0 = time.perf_counter()
                col.upsert_documents(
                    [f"doc-{i}" for i in range(len(DEMO_DOCUMENTS))],
                    DEMO_DOCUMENTS,
                    [{"name": "(typed in the demo)", "text": d} for d in DEMO_DOCUMENTS],
                )
                click.echo(
                    f"embedded and upserted {len(DEMO_DOCUMENTS)} documents sent as text "
                    f"in {time.perf_counter() - t0:.2f} s"
                )
                for text in [*DEMO_QUERIES, *texts[:2]]:
                    click.echo(f"\nquery text: {text!r}")
                    t0 = time.perf_counter()
                    hits = col.search_texts(text, k=5)[0]
                    ms = (time.perf_counter() - t0) * 1000
                    for h in hits:
                        md = h.metadata or {}
                        name, doc = str(md.get("name", "")), str(md.get("text", ""))
                        click.echo(f"  {h.score:.3f}  {name:<28} {doc:.70}")
                    click.echo(f"  ({ms:.0f} ms, embedding included)")
                click.echo(f"\nfiltered (year >= 2024): {texts[0]!r}")
                filtered = col.search_texts(texts[0], k=3, where={"year": {"$gte": 2024}})
                for h in filtered[0]:
                    md = h.metadata or {}
                    click.echo(f"  {h.score:.3f}  {md.get('year')}  {md.get('name', '')!s:<28}")
                approx, _ = col.search_ids(queries, k=k)
                exact, _ = col.search_ids(queries, k=k, exact=True)
                recall = float(
                    np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact, strict=True)])
                )
                t0 = time.perf_counter()
                col.search_ids(queries, k=k)
                ms = (time.perf_counter() - t0) * 1000
                click.echo(
                    f"\nrecall@{k} of HNSW against exact search over {len(queries)} queries: "
                    f"{recall:.3f}  (batch of {len(queries)} in {ms:.1f} ms)"
                )
            click.echo("shutting down")
    return recall
