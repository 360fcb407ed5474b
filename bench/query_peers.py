"""Peers a user might pick instead of shardvec, on the query benchmark's data: Chroma
(embedded), Milvus Lite, Qdrant local mode.

Run by bench_query as a script in a separate interpreter (`--peers-python`, e.g. a venv with
`pip install chromadb "pymilvus[milvus_lite]" qdrant-client numpy`), so their dependencies
never touch the project's environment. Needs only NumPy and the peers; a peer that is not
installed or fails is reported as such, never estimated.

For each peer: build with M=16, ef_construction=200 (where it has them), cosine; sweep the
search breadth for batch QPS (1000-query requests) and recall@k; then one client sending
single queries for --seconds at the smallest breadth reaching --target.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 1000
MAX_PASS_S = 60.0
EFS = [16, 32, 48, 64, 100, 150, 200]
BatchSearch = Callable[[np.ndarray, int], list[list[int]]]


def recall(found: list[list[int]], gt: np.ndarray, k: int) -> float:
    hits = sum(len(set(f[:k]) & set(gt[j, :k].tolist())) for j, f in enumerate(found))
    return hits / (len(found) * k)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


class Peer:
    name = ""
    dist = ""
    batch = BATCH  # queries per search request

    def __init__(self, workdir: Path, dim: int, k: int) -> None:
        self.workdir, self.dim, self.k = workdir, dim, k

    def build(self, base: np.ndarray) -> None:
        raise NotImplementedError

    def search(self, queries: np.ndarray, ef: int | None) -> list[list[int]]:
        raise NotImplementedError

    def efs(self) -> list[int | None]:
        return list(EFS)


class Chroma(Peer):
    name, dist = "chroma (embedded)", "chromadb"

    def build(self, base: np.ndarray) -> None:
        import chromadb

        self.client = chromadb.PersistentClient(path=str(self.workdir / "chroma"))
        conf = {"space": "cosine", "ef_construction": 200, "max_neighbors": 16, "ef_search": 64}
        self.col = self.client.create_collection("bench", configuration={"hnsw": conf})
        step = min(5000, int(self.client.get_max_batch_size()))
        for s in range(0, len(base), step):
            rows = base[s : s + step]
            self.col.add(ids=[str(i) for i in range(s, s + len(rows))], embeddings=rows)
        self.ef = 64

    def search(self, queries: np.ndarray, ef: int | None) -> list[list[int]]:
        if ef is not None and ef != self.ef:
            self.col.modify(configuration={"hnsw": {"ef_search": ef}})
            self.ef = ef
        res = self.col.query(query_embeddings=queries, n_results=self.k, include=[])
        return [[int(i) for i in row] for row in res["ids"]]


class MilvusLite(Peer):
    name, dist = "milvus lite", "milvus-lite"

    def build(self, base: np.ndarray) -> None:
        from pymilvus import DataType, MilvusClient

        self.client = MilvusClient(str(self.workdir / "milvus.db"))
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=self.dim)
        index = self.client.prepare_index_params()
        index.add_index(
            field_name="v",
            index_type="HNSW",
            metric_type="COSINE",
            params={"M": 16, "efConstruction": 200},
        )
        self.client.create_collection("bench", schema=schema, index_params=index)
        for s in range(0, len(base), 5000):
            rows = base[s : s + 5000]
            self.client.insert(
                "bench", [{"id": s + j, "v": v} for j, v in enumerate(rows.tolist())]
            )
        self.client.flush("bench")
        self.client.load_collection("bench")

    def search(self, queries: np.ndarray, ef: int | None) -> list[list[int]]:
        params = {"metric_type": "COSINE", "params": {"ef": max(ef or 64, self.k)}}
        res = self.client.search(
            "bench", data=queries.tolist(), limit=self.k, search_params=params
        )
        return [[int(hit["id"]) for hit in row] for row in res]


class QdrantLocal(Peer):
    name, dist = "qdrant local mode", "qdrant-client"
    batch = 100  # exhaustive search in Python: smaller requests, so the time cap can stop it

    def build(self, base: np.ndarray) -> None:
        from qdrant_client import QdrantClient, models

        self.models = models
        # In memory: its on-disk local mode writes every point through SQLite (3,000 rows took
        # 14 s here), which would measure the writes, not the search.
        self.client = QdrantClient(location=":memory:")
        self.client.create_collection(
            "bench",
            vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
            hnsw_config=models.HnswConfigDiff(m=16, ef_construct=200),
        )
        for s in range(0, len(base), 5000):
            rows = base[s : s + 5000]
            self.client.upsert(
                "bench",
                points=models.Batch(ids=list(range(s, s + len(rows))), vectors=rows.tolist()),
            )

    def efs(self) -> list[int | None]:
        return [None]  # local mode searches exhaustively; there is no breadth to sweep

    def search(self, queries: np.ndarray, ef: int | None) -> list[list[int]]:
        m = self.models
        reqs = [m.QueryRequest(query=q.tolist(), limit=self.k) for q in queries]
        res = self.client.query_batch_points("bench", requests=reqs)
        return [[int(p.id) for p in r.points] for r in res]


PEERS: dict[str, type[Peer]] = {"chroma": Chroma, "milvus": MilvusLite, "qdrant": QdrantLocal}


def measure(
    peer: Peer, base: np.ndarray, queries: np.ndarray, gt: np.ndarray, args: Any
) -> dict[str, Any]:
    k = args.k
    start = time.perf_counter()
    peer.build(base)
    out: dict[str, Any] = {"build_s": time.perf_counter() - start, "sweep": []}
    chosen: dict[str, Any] | None = None
    for ef in peer.efs():
        best = 0.0
        for _ in range(2):  # the better of two passes, each capped at MAX_PASS_S
            t0 = time.perf_counter()
            found: list[list[int]] = []
            for s in range(0, len(queries), peer.batch):
                found.extend(peer.search(queries[s : s + peer.batch], ef))
                if time.perf_counter() - t0 > MAX_PASS_S:
                    break
            best = max(best, len(found) / (time.perf_counter() - t0))
        point = {"ef": ef, "recall": recall(found, gt, k), "qps": best, "queries": len(found)}
        out["sweep"].append(point)
        print(f"  {peer.name} ef={ef} recall={point['recall']:.4f} qps={point['qps']:.0f}",
              file=sys.stderr, flush=True)
        if point["recall"] >= args.target:
            chosen = point
            break
    out["at_target"] = chosen
    if chosen is not None:
        lat = []
        stop = time.perf_counter() + args.seconds
        j = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            peer.search(queries[j % len(queries) : j % len(queries) + 1], chosen["ef"])
            lat.append(time.perf_counter() - t0)
            j += 1
        out["single"] = {
            "calls": len(lat),
            "qps": len(lat) / sum(lat),
            "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, required=True, help="normalised float32 .npy")
    p.add_argument("--queries", type=Path, required=True, help="normalised float32 .npy")
    p.add_argument("--gt", type=Path, required=True, help="exact top-k row ids .npy")
    p.add_argument("--out", type=Path, required=True, help="JSON written here")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--only", default=",".join(PEERS), help="comma-separated: " + ",".join(PEERS))
    args = p.parse_args(argv)
    base, queries, gt = np.load(args.base), np.load(args.queries), np.load(args.gt)
    results: dict[str, Any] = {}
    for key in args.only.split(","):
        cls = PEERS[key]
        entry: dict[str, Any] = {"name": cls.name, "version": _version(cls.dist)}
        workdir = Path(tempfile.mkdtemp(prefix=f"shardvec-peer-{key}-"))
        try:
            peer = cls(workdir, int(base.shape[1]), args.k)
            entry.update(measure(peer, base, queries, gt, args))
            entry["status"] = "ok"
        except ImportError as exc:
            entry["status"] = f"not installed: {exc}"
        except Exception as exc:
            entry["status"] = f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        results[key] = entry
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
