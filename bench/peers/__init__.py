"""Peers a user might pick instead of shardvec, on the query benchmark's data: Chroma
(embedded and as a server), Milvus Lite, Qdrant local mode, and pgvector in a PostgreSQL.

Run by `shardvec bench query` as `python -m peers` in a separate interpreter (`--peers-python`,
e.g. a venv with `pip install chromadb "pymilvus[milvus_lite]" qdrant-client "psycopg[binary]"
numpy`), so their dependencies never touch the project's environment. The working directory
is a scratch folder holding a link to this package and the data, never bench/ itself (its
keyword.py would shadow the standard library's `keyword` there). So this package imports
nothing of shardvec (that interpreter has none) and only itself relatively: it is the
top-level `peers` there and `shardvec.bench.peers` to mypy. It keeps its own recall and entry
(`__main__.py`). Needs only NumPy and the peers; a peer that is not installed, not given
(pgvector without --pg-dsn) or fails is reported as such, never estimated.

For each peer (measure.py): build with M=16, ef_construction=200 (where it has them), cosine;
sweep the search breadth for batch QPS (1000-query requests; pgvector: 500 queries pipelined on
one connection) and recall@k; then one client sending single queries for --seconds at the
smallest breadth reaching --target. Peers behind a network protocol (Chroma server, pgvector)
are also driven by --clients concurrent clients (threads, one connection each) for --seconds.
pgvector also runs filtered queries on the data set's metadata (--meta: `popular`,
`year >= 2024`, `month = '2026-10'`), with and without `hnsw.iterative_scan = relaxed_order`,
scored against exact filtered ground truth computed here in NumPy.

Chroma server (chroma.py): `chroma run` from this interpreter's bin/ on a free loopback port,
started and stopped here. pgvector (pgvector.py): --pg-dsn (or $SHARDVEC_PG_DSN) names a
PostgreSQL with the `vector` extension available; a table is created, indexed with
`USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 200)`, and dropped.
Milvus Lite and Qdrant local mode: embedded.py.
"""
