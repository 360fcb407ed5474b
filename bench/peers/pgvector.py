"""pgvector in a PostgreSQL given by --pg-dsn: a table loaded with COPY, an HNSW index,
batches pipelined on one connection, concurrent clients, filtered queries on the metadata."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .common import MAX_PASS_S, Peer, SingleSearch, exact_topk, recall

# Filtered queries on the data set's metadata (base_texts.jsonl): SQL condition, row predicate.
FILTERS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "popular": ("popular", lambda row: bool(row["popular"])),
    "year_ge_2024": ("year >= 2024", lambda row: int(row["year"]) >= 2024),
    "month_2026_10": ("month = '2026-10'", lambda row: row.get("month") == "2026-10"),
}


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
