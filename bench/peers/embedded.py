"""Milvus Lite and Qdrant local mode: the embedded forms of two servers, in this process."""

from __future__ import annotations

import numpy as np

from .common import Peer


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
