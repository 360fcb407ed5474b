"""`shardvec demo`: a local cluster, the bundled sample of real embeddings, queries, recall."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from cluster.bringup import ShardvecCluster
from cluster.client import Client

SAMPLE_DIR = Path(__file__).parent / "sample"


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
                col = client.create_collection(
                    "pypi", dim=vectors.shape[1], metric="cosine", shards=shards
                )
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
                for qi in range(3):
                    click.echo(f"\nquery: {texts[qi]!r}")
                    for h in col.search(queries[qi], k=5)[0]:
                        md = h.metadata or {}
                        name, text = str(md.get("name", "")), str(md.get("text", ""))
                        click.echo(f"  {h.score:.3f}  {name:<28} {text:.70}")
                click.echo(f"\nfiltered (year >= 2024): {texts[0]!r}")
                for h in col.search(queries[0], k=3, where={"year": {"$gte": 2024}})[0]:
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
