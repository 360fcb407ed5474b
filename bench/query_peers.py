"""Peers a user might pick instead of shardvec, on the query benchmark's data: Chroma
(embedded and as a server), Milvus Lite, Qdrant local mode, and pgvector in a PostgreSQL.

Run by `shardvec bench query` as a script in a separate interpreter (`--peers-python`, e.g. a
venv with `pip install chromadb "pymilvus[milvus_lite]" qdrant-client "psycopg[binary]" numpy`),
so their dependencies never touch the project's environment. It imports nothing of shardvec (that
interpreter has none), so it keeps its own recall and script entry. Needs only NumPy and the
peers; a peer that is not installed, not given (pgvector without --pg-dsn) or fails is reported
as such, never estimated.

For each peer: build with M=16, ef_construction=200 (where it has them), cosine; sweep the
search breadth for batch QPS (1000-query requests; pgvector: 500 queries pipelined on one
connection) and recall@k; then one client sending single queries for --seconds at the smallest
breadth reaching --target. Peers behind a network protocol (Chroma server, pgvector) are also
driven by --clients concurrent clients (threads, one connection each) for --seconds. pgvector
also runs filtered queries on the data set's metadata (--meta: `popular`, `year >= 2024`,
`month = '2026-10'`), with and without `hnsw.iterative_scan = relaxed_order`, scored against
exact filtered ground truth computed here in NumPy.

Chroma server: `chroma run` from this interpreter's bin/ on a free loopback port, started and
stopped here. pgvector: --pg-dsn (or $SHARDVEC_PG_DSN) names a PostgreSQL with the `vector`
extension available; a table is created, indexed with
`USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 200)`, and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
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
SingleSearch = Callable[[np.ndarray], list[int]]  # one query -> ids, on one client's connection
# Filtered queries on the data set's metadata (base_texts.jsonl): SQL condition, row predicate.
FILTERS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "popular": ("popular", lambda row: bool(row["popular"])),
    "year_ge_2024": ("year >= 2024", lambda row: int(row["year"]) >= 2024),
    "month_2026_10": ("month = '2026-10'", lambda row: row.get("month") == "2026-10"),
}


def recall(found: list[list[int]], gt: np.ndarray, k: int) -> float:
    hits = sum(len(set(f[:k]) & set(gt[j, :k].tolist())) for j, f in enumerate(found))
    return hits / (len(found) * k)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def exact_topk(base: np.ndarray, queries: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k row ids among `rows` by inner product (cosine on normalised rows)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    sub = base[rows]
    for s in range(0, len(queries), 128):
        scores = queries[s : s + 128] @ sub.T
        out[s : s + 128] = rows[np.argsort(-scores, axis=1, kind="stable")[:, :k]]
    return out


def load_meta(path: Path, n: int) -> list[dict[str, Any]]:
    """The first n lines of a JSONL metadata file (line i describes base row i)."""
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if len(rows) == n:
                break
            rows.append(json.loads(line))
    if len(rows) < n:
        raise ValueError(f"{path} has {len(rows)} rows, the base {n}")
    return rows


def redact(dsn: str) -> str:
    """A DSN without its password (URL or key=value form)."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Peer:
    name = ""
    dist = ""
    batch = BATCH  # queries per search request
    batch_label = ""  # how a batch is sent, when not as one request of `batch` queries
    networked = False  # a server: also measured with --clients concurrent clients

    def __init__(self, workdir: Path, dim: int, k: int, args: Any = None) -> None:
        self.workdir, self.dim, self.k, self.args = workdir, dim, k, args

    def build(self, base: np.ndarray) -> None:
        raise NotImplementedError

    def search(self, queries: np.ndarray, ef: int | None) -> list[list[int]]:
        raise NotImplementedError

    def efs(self) -> list[int | None]:
        return list(EFS)

    def single_client(self, ef: int | None) -> SingleSearch | None:
        """A new client (its own connection) for one concurrent thread; None: not measured."""
        return None

    def version(self) -> str:
        return _version(self.dist)

    def close(self) -> None:
        """Stop what build started (a server, connections, a table)."""


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

    def reopen(self) -> None:
        from chromadb.api.client import SharedSystemClient

        path = self.workdir / "chroma"
        SharedSystemClient.clear_system_cache()
        import chromadb

        self.client = chromadb.PersistentClient(path=str(path))
        self.col = self.client.get_collection("bench")

    def search(self, queries: np.ndarray, ef: int | None) -> list[list[int]]:
        if ef is not None and ef != self.ef:
            self.col.modify(configuration={"hnsw": {"ef_search": ef}})
            self.ef = ef
            self.reopen()  # chromadb 1.5.9: modify() does not reach an index already loaded
        res = self.col.query(query_embeddings=queries, n_results=self.k, include=[])
        return [[int(i) for i in row] for row in res["ids"]]


class ChromaServer(Chroma):
    name, dist = "chroma server", "chromadb"
    networked = True

    def build(self, base: np.ndarray) -> None:
        self.start()
        conf = {"space": "cosine", "ef_construction": 200, "max_neighbors": 16, "ef_search": 64}
        self.col = self.client.create_collection("bench", configuration={"hnsw": conf})
        step = min(2000, int(self.client.get_max_batch_size()))  # JSON over HTTP: keep it small
        for s in range(0, len(base), step):
            rows = base[s : s + step]
            self.col.add(ids=[str(i) for i in range(s, s + len(rows))], embeddings=rows)
        self.ef = 64

    def reopen(self) -> None:
        self.close()  # the server keeps the loaded index: restart it on the same path
        self.start()
        self.col = self.client.get_collection("bench")

    def start(self) -> None:
        self.port = free_port()
        exe = Path(sys.executable).parent / "chroma"
        self.log = (self.workdir / "chroma-server.log").open("ab")
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        cmd = [str(exe), "run", "--path", str(self.workdir / "chroma-server"),
               "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client = self._client()
                self.client.heartbeat()
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.workdir / "chroma-server.log").read_text(errors="replace")
                    raise RuntimeError(f"chroma run did not come up: {tail[-500:]}") from None
                time.sleep(0.2)

    def _client(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        return chromadb.HttpClient(host="127.0.0.1", port=self.port,
                                   settings=Settings(anonymized_telemetry=False))  # fmt: skip

    def single_client(self, ef: int | None) -> SingleSearch | None:
        col = self._client().get_collection("bench")  # ef_search is the collection's, set

        def one(q: np.ndarray) -> list[int]:
            res = col.query(query_embeddings=q[None, :], n_results=self.k, include=[])
            return [int(i) for i in res["ids"][0]]

        return one

    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if getattr(self, "log", None) is not None:
            self.log.close()


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


def _vec(q: np.ndarray) -> str:
    return "[" + ",".join(map(str, q.tolist())) + "]"


class PgVector(Peer):
    name, dist = "pgvector", "psycopg"
    batch = 500
    batch_label = "500 queries pipelined on one connection"
    networked = True

    def build(self, base: np.ndarray) -> None:
        import psycopg

        self.psycopg = psycopg
        self.dsn = self.args.pg_dsn
        if not self.dsn:
            raise LookupError("no --pg-dsn (or $SHARDVEC_PG_DSN) given")
        self.table = f"shardvec_bench_{os.getpid()}"
        self.conn = self._connect()
        c = self.conn
        if c.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
            c.execute("CREATE EXTENSION IF NOT EXISTS vector")  # needs the right to create it
        row = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        self.ext_version = str(row[0]) if row else "?"
        self.server = str(c.execute("SHOW server_version").fetchone()[0]).split()[0]
        meta = self.args.meta_rows
        c.execute(f"DROP TABLE IF EXISTS {self.table}")
        c.execute(f"CREATE TABLE {self.table} (id bigint PRIMARY KEY, year int, popular boolean, "
                  f"month text, embedding vector({self.dim}))")  # fmt: skip
        t0 = time.perf_counter()
        with c.cursor() as cur, cur.copy(f"COPY {self.table} FROM STDIN") as copy:
            for i, v in enumerate(base):
                m = meta[i] if meta else None
                year = str(int(m["year"])) if m else "\\N"
                pop = ("t" if m["popular"] else "f") if m else "\\N"
                month = str(m["month"]) if m and m.get("month") else "\\N"
                copy.write(f"{i}\t{year}\t{pop}\t{month}\t{_vec(v)}\n")
        self.load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        c.execute("SET maintenance_work_mem = '1GB'")
        c.execute(f"CREATE INDEX ON {self.table} USING hnsw (embedding vector_cosine_ops) "
                  "WITH (m = 16, ef_construction = 200)")  # fmt: skip
        c.execute(f"ANALYZE {self.table}")
        self.index_s = time.perf_counter() - t0
        self.sql = f"SELECT id FROM {self.table} ORDER BY embedding <=> %s::vector LIMIT {self.k}"
        self.ef: int | None = None
        self.clients: list[Any] = []

    def _connect(self) -> Any:
        return self.psycopg.connect(self.dsn, autocommit=True)

    def version(self) -> str:
        return f"{getattr(self, 'ext_version', '?')} (PostgreSQL {getattr(self, 'server', '?')})"

    def _set_ef(self, conn: Any, ef: int | None) -> None:
        conn.execute(f"SET hnsw.ef_search = {int(ef or 40)}")

    def search(self, queries: np.ndarray, ef: int | None) -> list[list[int]]:
        if ef != self.ef:
            self._set_ef(self.conn, ef)
            self.ef = ef
        with self.conn.pipeline() as p:
            curs = [self.conn.execute(self.sql, (_vec(q),)) for q in queries]
            p.sync()
            return [[int(r[0]) for r in cur.fetchall()] for cur in curs]

    def single_client(self, ef: int | None) -> SingleSearch | None:
        conn = self._connect()
        self.clients.append(conn)
        self._set_ef(conn, ef)

        def one(q: np.ndarray) -> list[int]:
            return [int(r[0]) for r in conn.execute(self.sql, (_vec(q),)).fetchall()]

        return one

    def filtered(self, base: np.ndarray, queries: np.ndarray, ef: int | None) -> dict[str, Any]:
        """Each FILTER with hnsw.iterative_scan off and relaxed_order: one client, single
        queries, recall@k against exact filtered top-k from NumPy."""
        meta = self.args.meta_rows
        if not meta:
            return {"skipped": "no --meta"}
        conn = self._connect()
        self._set_ef(conn, ef)
        modes = ["off"]
        try:
            conn.execute("SET hnsw.iterative_scan = relaxed_order")
            conn.execute("SET hnsw.iterative_scan = off")
            modes.append("relaxed_order")
        except self.psycopg.Error:
            pass  # pgvector < 0.8
        out: dict[str, Any] = {}
        for key, (cond, pred) in FILTERS.items():
            rows = np.flatnonzero(np.array([pred(m) for m in meta]))
            gt = exact_topk(base, queries, rows, self.k)
            sql = (f"SELECT id FROM {self.table} WHERE {cond} "
                   f"ORDER BY embedding <=> %s::vector LIMIT {self.k}")  # fmt: skip
            for mode in modes:
                conn.execute(f"SET hnsw.iterative_scan = {mode}")
                plan = conn.execute("EXPLAIN " + sql, (_vec(queries[0]),)).fetchall()
                lat: list[float] = []
                found: list[list[int]] = []
                t_end = time.perf_counter() + MAX_PASS_S
                for q in queries:
                    t0 = time.perf_counter()
                    found.append([int(r[0]) for r in conn.execute(sql, (_vec(q),)).fetchall()])
                    lat.append(time.perf_counter() - t0)
                    if time.perf_counter() > t_end:
                        break
                pt: dict[str, Any] = {
                    "where": cond, "iterative_scan": mode, "ef": ef,
                    "rows_passing": len(rows), "queries": len(found),
                    "recall": recall(found, gt, self.k),
                    "short": sum(len(f) < min(self.k, len(rows)) for f in found),
                    "qps": len(lat) / sum(lat),
                    "p50_ms": float(np.percentile(lat, 50) * 1e3),
                    "p99_ms": float(np.percentile(lat, 99) * 1e3),
                    "plan": " / ".join(str(r[0]).strip() for r in plan[:2]),
                }  # fmt: skip
                out[f"{key}/{mode}"] = pt
                print(f"  {self.name} WHERE {cond} iterative_scan={mode} ef={ef} "
                      f"recall={pt['recall']:.4f} qps={pt['qps']:.0f} p50={pt['p50_ms']:.2f} ms "
                      f"short={pt['short']} plan: {pt['plan'][:60]}", file=sys.stderr, flush=True)
        conn.close()
        return out

    def close(self) -> None:
        for client in getattr(self, "clients", []):
            client.close()
        conn = getattr(self, "conn", None)
        if conn is None:
            return
        try:
            conn.execute(f"DROP TABLE IF EXISTS {self.table}")
        finally:
            conn.close()


PEERS: dict[str, type[Peer]] = {
    "chroma": Chroma,
    "chroma_server": ChromaServer,
    "milvus": MilvusLite,
    "qdrant": QdrantLocal,
    "pgvector": PgVector,
}


def concurrent(
    peer: Peer, ef: int | None, queries: np.ndarray, gt: np.ndarray, clients: int, seconds: float
) -> dict[str, Any] | None:
    """`clients` threads, each with its own client, sending single queries for `seconds`."""
    if not peer.networked:
        return None
    fns: list[SingleSearch] = []
    for _ in range(clients):  # connect before the clock starts
        fn = peer.single_client(ef)
        if fn is None:
            return None
        fns.append(fn)
    lat: list[list[float]] = [[] for _ in range(clients)]
    hits, errors = [0] * clients, [0] * clients
    start = threading.Barrier(clients + 1)
    stop = [0.0]

    def worker(t: int) -> None:
        fn, j = fns[t], t
        start.wait()
        while time.perf_counter() < stop[0]:
            q = j % len(queries)
            t0 = time.perf_counter()
            try:
                ids = fn(queries[q])
            except Exception:
                errors[t] += 1
            else:
                lat[t].append(time.perf_counter() - t0)
                hits[t] += len(set(ids[: peer.k]) & set(gt[q, : peer.k].tolist()))
            j += clients

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(clients)]
    for th in threads:
        th.start()
    stop[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    all_lat = [x for per in lat for x in per]
    calls = len(all_lat)
    return {
        "clients": clients, "calls": calls, "errors": sum(errors), "qps": calls / wall,
        "recall": sum(hits) / (calls * peer.k) if calls else 0.0,
        "p50_ms": float(np.percentile(all_lat, 50) * 1e3) if calls else float("nan"),
        "p99_ms": float(np.percentile(all_lat, 99) * 1e3) if calls else float("nan"),
    }  # fmt: skip


def measure(
    peer: Peer, base: np.ndarray, queries: np.ndarray, gt: np.ndarray, args: Any
) -> dict[str, Any]:
    k = args.k
    start = time.perf_counter()
    peer.build(base)
    out: dict[str, Any] = {"build_s": time.perf_counter() - start, "sweep": [],
                           "batch": peer.batch_label or f"{peer.batch}-query requests"}  # fmt: skip
    for attr in ("load_s", "index_s"):
        if hasattr(peer, attr):
            out[attr] = getattr(peer, attr)
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
        print(f"  {peer.name} single: p50={out['single']['p50_ms']:.2f} ms "
              f"p99={out['single']['p99_ms']:.2f} ms", file=sys.stderr, flush=True)
        out["concurrency"] = []
        for clients in [int(c) for c in args.clients.split(",") if c]:
            row = concurrent(peer, chosen["ef"], queries, gt, clients, args.seconds)
            if row is None:
                break
            out["concurrency"].append(row)
            print(f"  {peer.name} {clients} clients: qps={row['qps']:.0f} "
                  f"p50={row['p50_ms']:.2f} ms p99={row['p99_ms']:.2f} ms "
                  f"errors={row['errors']} recall={row['recall']:.4f}", file=sys.stderr, flush=True)
        if isinstance(peer, PgVector):
            out["filtered"] = peer.filtered(base, queries, chosen["ef"])
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
    p.add_argument("--clients", default="32", help="concurrent clients of the server peers")
    p.add_argument("--meta", type=Path, default=None,
                   help="JSONL, line i = base row i's metadata (year, popular): filtered queries")
    p.add_argument("--pg-dsn", default=os.environ.get("SHARDVEC_PG_DSN"),
                   help="PostgreSQL with pgvector (default $SHARDVEC_PG_DSN)")
    default_only = [key for key in PEERS if key != "pgvector"]
    p.add_argument("--only", default=None,
                   help="comma-separated: " + ",".join(PEERS) + " (default: all but pgvector, "
                   "and pgvector too when a DSN is given)")
    args = p.parse_args(argv)
    if args.only is None:
        args.only = ",".join(default_only + (["pgvector"] if args.pg_dsn else []))
    base, queries, gt = np.load(args.base), np.load(args.queries), np.load(args.gt)
    args.meta_rows = load_meta(args.meta, len(base)) if args.meta else None
    results: dict[str, Any] = {}
    for key in args.only.split(","):
        cls = PEERS[key]
        entry: dict[str, Any] = {"name": cls.name, "version": _version(cls.dist)}
        if key == "pgvector" and args.pg_dsn:
            entry["dsn"] = redact(args.pg_dsn)
        workdir = Path(tempfile.mkdtemp(prefix=f"shardvec-peer-{key}-"))
        peer = cls(workdir, int(base.shape[1]), args.k, args)
        try:
            entry.update(measure(peer, base, queries, gt, args))
            entry["status"] = "ok"
        except ImportError as exc:
            entry["status"] = f"not installed: {exc}"
        except LookupError as exc:
            entry["status"] = f"not given: {exc}"
        except Exception as exc:
            entry["status"] = f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            try:
                peer.close()
            except Exception:
                traceback.print_exc()
            entry["version"] = peer.version()
            shutil.rmtree(workdir, ignore_errors=True)
        results[key] = entry
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
