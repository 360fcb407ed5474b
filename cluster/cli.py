"""The `shardvec` command line: bring a cluster up, manage collections, load and query."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import numpy as np

from shardvec.cluster.alias_commands import alias, reembed
from shardvec.cluster.client import DEFAULT_ADDRESS, Client
from shardvec.cluster.data_commands import export, import_
from shardvec.cluster.hints import fail
from shardvec.cluster.ops_commands import rebalance, recall, scale, snapshot
from shardvec.cluster.row_commands import add, count, delete, get, update
from shardvec.contract.errors import ShardvecError
from shardvec.contract.limits import DEFAULT_SCRUB_ROWS_PER_S, DEFAULT_SWEEP_ROWS_PER_S
from shardvec.coordinator.config import CoordinatorSettings

PLUGIN_GROUP = "shardvec.cli"
SERVER_HELP = "Address of the shardvec server (host:port)."


class _Context:
    def __init__(self, server: str, api_key: str | None) -> None:
        self.server = server
        self.api_key = api_key

    def client(self) -> Client:
        return Client(self.server, api_key=self.api_key)


LIMITS = {
    name: CoordinatorSettings.__dataclass_fields__[name].default
    for name in (
        "max_message_bytes",
        "max_upsert_rows",
        "max_query_rows",
        "max_k",
        "max_ef",
        "max_search_hits",
        "max_scroll_rows",
        "max_metadata_bytes",
        "max_document_bytes",
        "read_only_max_texts",
        "read_only_texts_per_s",
    )
}


def _parse_limits(items: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in LIMITS or not value.isdigit():
            raise click.BadParameter(
                f"{item!r}: expected NAME=N with NAME one of {', '.join(LIMITS)}",
                param_hint="--limit",
            )
        out[name] = int(value)
    return out




@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shardvec", prog_name="shardvec")
@click.option(
    "--server",
    envvar="SHARDVEC_SERVER",
    default=DEFAULT_ADDRESS,
    show_default=True,
    help=SERVER_HELP + " Env: SHARDVEC_SERVER.",
)
@click.option(
    "--api-key",
    envvar="SHARDVEC_API_KEY",
    default=None,
    help="API key sent as x-api-key metadata. Env: SHARDVEC_API_KEY.",
)
@click.pass_context
def cli(ctx: click.Context, server: str, api_key: str | None) -> None:
    """shardvec: a distributed, sharded vector search cluster on Ray."""
    ctx.obj = _Context(server, api_key)


@cli.command()
@click.option(
    "--address",
    default=None,
    help="Ray cluster to attach to ('auto' for this node's). Default: embedded Ray.",
)
@click.option(
    "--data-dir",
    envvar="SHARDVEC_DATA_DIR",
    default="./data",
    show_default=True,
    help="Where collections and shard data live. Env: SHARDVEC_DATA_DIR.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Public gRPC bind host.")
@click.option("--port", default=50051, show_default=True, type=int, help="Public gRPC port.")
@click.option(
    "--api-key",
    "server_api_key",
    envvar="SHARDVEC_API_KEY",
    default="",
    help="Require this key from clients (x-api-key). Env: SHARDVEC_API_KEY.",
)
@click.option(
    "--read-only-key",
    envvar="SHARDVEC_READ_ONLY_KEY",
    default="",
    help="A second key that may search, get and count but not write.",
)
@click.option("--tls-cert", default="", help="PEM certificate: serve TLS on the public port.")
@click.option("--tls-key", default="", help="PEM private key for --tls-cert.")
@click.option(
    "--search-threads",
    default=0,
    show_default=True,
    type=int,
    help="hnswlib threads of a replica's batch search (0: its node's CPUs; the replicas of "
    "a node take turns on large batches).",
)
@click.option("--num-cpus", default=None, type=int, help="CPUs of an embedded Ray.")
@click.option("--embedders-per-node", default=1, show_default=True, type=int,
              help="Embedder actors per Ray node (collections with an embedding).")
@click.option("--max-embedders", default=8, show_default=True, type=int,
              help="Embedder actors in all, however many nodes.")
@click.option(
    "--scrub-rows-per-s",
    default=DEFAULT_SCRUB_ROWS_PER_S,
    show_default=True,
    type=click.IntRange(min=0),
    help="Rows a second each replica's background scrub checks against their checksums "
    "(0: no scrub; the store is still checked when it opens and when rows are read).",
)
@click.option(
    "--sweep-rows-per-s",
    default=DEFAULT_SWEEP_ROWS_PER_S,
    show_default=True,
    type=click.IntRange(min=0),
    help="Expired rows a second each replica's background sweep removes for good (0: none; "
    "reads hide expired rows either way).",
)
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="NAME=N",
    help="Set a request limit (repeatable): "
    + ", ".join(f"{name} (default {default})" for name, default in LIMITS.items())
    + ". Past a limit: RESOURCE_EXHAUSTED (k, ef: INVALID_ARGUMENT).",
)
@click.option(
    "--max-metadata-bytes",
    default=LIMITS["max_metadata_bytes"],
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest metadata of one row, as compact JSON; a row past it: INVALID_ARGUMENT.",
)
@click.option(
    "--max-document-bytes",
    default=LIMITS["max_document_bytes"],
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest document of one row, UTF-8 bytes; a row past it: INVALID_ARGUMENT.",
)
@click.option(
    "--metrics-port",
    envvar="SHARDVEC_METRICS_PORT",
    default=0,
    show_default=True,
    type=int,
    help="Serve Prometheus /metrics on this port of --host (0: off; the deploy files use "
    "9464). Env: SHARDVEC_METRICS_PORT.",
)
@click.option(
    "--front-port",
    envvar="SHARDVEC_FRONT_PORT",
    default=-1,
    show_default=True,
    type=click.IntRange(min=-1, max=65535),
    help="A query front on every Ray node serving the whole API on this port (0: a free port "
    "each, for simulated nodes on one machine; -1: none, the coordinator alone; the deploy "
    "files use 50052). Env: SHARDVEC_FRONT_PORT.",
)
@click.option(
    "--front-metrics-port",
    envvar="SHARDVEC_FRONT_METRICS_PORT",
    default=-1,
    show_default=True,
    type=click.IntRange(min=-1, max=65535),
    help="Each front's Prometheus /metrics port (0: a free port each; -1: none; the deploy "
    "files use 9465). `shardvec fronts` lists where each front serves it. "
    "Env: SHARDVEC_FRONT_METRICS_PORT.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log lines at this level and above on stderr (INFO: replica state changes, layout "
    "changes and refusals, one line each; not requests).",
)
@click.option("--log-json", is_flag=True,
              help="Log JSON lines (Ray's LoggingConfig, with Ray's context fields) instead of "
              "plain text lines.")
@click.option(
    "--auto-rebalance/--no-auto-rebalance",
    default=True,
    show_default=True,
    help="Move replicas so every node holds about the same rows when a node joins or leaves.",
)
@click.option("-v", "--verbose", is_flag=True, help="Same as --log-level DEBUG.")
def up(
    address: str | None,
    data_dir: str,
    host: str,
    port: int,
    server_api_key: str,
    read_only_key: str,
    tls_cert: str,
    tls_key: str,
    search_threads: int,
    num_cpus: int | None,
    scrub_rows_per_s: int,
    sweep_rows_per_s: int,
    embedders_per_node: int,
    max_embedders: int,
    limits: tuple[str, ...],
    max_metadata_bytes: int,
    max_document_bytes: int,
    metrics_port: int,
    front_port: int,
    front_metrics_port: int,
    log_level: str,
    log_json: bool,
    auto_rebalance: bool,
    verbose: bool,
) -> None:
    """Bring a cluster up and serve until SIGINT or SIGTERM."""
    from shardvec.cluster.bringup import ShardvecCluster

    level = "DEBUG" if verbose else log_level.upper()
    settings: dict[str, Any] = {
        "data_dir": data_dir,
        "host": host,
        "port": port,
        "api_key": server_api_key,
        "read_only_key": read_only_key,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "search_threads": search_threads,
        "metrics_port": metrics_port,
        "front_port": front_port,
        "front_metrics_port": front_metrics_port,
        "scrub_rows_per_s": scrub_rows_per_s,
        "sweep_rows_per_s": sweep_rows_per_s,
        "embedders_per_node": embedders_per_node,
        "max_embedders": max_embedders,
        "max_metadata_bytes": max_metadata_bytes,
        "max_document_bytes": max_document_bytes,
        "auto_rebalance": auto_rebalance,
        **_parse_limits(limits),
    }
    try:
        cluster = ShardvecCluster(settings, ray_address=address, num_cpus=num_cpus,
                                  log_level=level, log_json=log_json)
    except ShardvecError as exc:
        fail(exc)
        return
    # Installed after Ray's own handlers (ray.init sets one for SIGTERM that just exits).
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"shardvec serving on {cluster.address} (data in {Path(data_dir).resolve()})")
    click.echo(_reopened(cluster.address, server_api_key, bool(tls_cert)))
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        click.echo("shardvec shutting down", err=True)
        cluster.stop()
        click.echo(f"shardvec stopped; the data stays in {Path(data_dir).resolve()}", err=True)


def _count(count: int | None) -> str:
    """A collection's row count as listed; None: it could not be counted now (a shard with no
    live replica; `shardvec status` names it)."""
    return "unknown" if count is None else str(count)


def _rows(count: int | None) -> str:
    return "rows not counted now" if count is None else f"{count:,} rows"


def _reopened(address: str, api_key: str, tls: bool) -> str:
    """`shardvec up`'s summary of the collections it serves, and what to run next."""
    nxt = "in another terminal: shardvec status, shardvec --help"
    if tls:
        return f"  {nxt}"
    try:
        with Client(address, api_key=api_key or None, timeout=30) as client:
            cols = client.list_collections()
    except ShardvecError as exc:
        return f"  (collections not listed: {exc.code.name}: {exc.message})\n  {nxt}"
    if not cols:
        return f"  no collections yet; {nxt}, shardvec demo"
    listed = ", ".join(
        f"{c['name']} ({_rows(c['count'])}, {c['shards']} shards x {c['replicas']})" for c in cols
    )
    return f"  serving {len(cols)} collection(s): {listed}\n  {nxt}"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def fronts(obj: _Context, as_json: bool) -> None:
    """The query fronts (one per node; `shardvec up --front-port`) and the coordinator."""
    from shardvec.v1 import vector_search_pb2 as pb

    try:
        with obj.client() as client:
            info = client.call("ClusterInfo", pb.ClusterInfoRequest())
    except ShardvecError as exc:
        fail(exc)
        return
    listed = [
        {"address": f.address, "node_id": f.node_id, "metrics_address": f.metrics_address}
        for f in info.fronts
    ]
    if as_json:
        click.echo(json.dumps({"coordinator": info.coordinator, "fronts": listed}, indent=2))
        return
    click.echo(f"coordinator {info.coordinator}")
    for f in listed:
        metrics = f" metrics {f['metrics_address']}" if f["metrics_address"] else ""
        click.echo(f"front {f['address']} node {f['node_id'][:12]}{metrics}")
    if not listed:
        click.echo("no query fronts (shardvec up --front-port)")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def status(obj: _Context, as_json: bool) -> None:
    """Collections, shards and replicas with state, node, process id and row count."""
    try:
        with obj.client() as client:
            cols = [client.describe(c["name"]) for c in client.list_collections()]
    except ShardvecError as exc:
        fail(exc)
        return
    if as_json:
        click.echo(json.dumps(cols, indent=2))
        return
    if not cols:
        click.echo("no collections")
    for c in cols:
        click.echo(
            f"{c['name']}: dim={c['dim']} metric={c['metric']} shards={c['shards']} "
            f"replicas={c['replicas']} count={_count(c['count'])} layout={c['layout_version']}"
            + (f" embedding={c['embedding']}" if c.get("embedding") else "")
            + f" text_tokenizer={c.get('text_tokenizer') or 'unicode61'}"
            + (f" ttl={c['ttl_seconds']:g}s" if c.get("ttl_seconds") else "")
        )
        recall = c.get("recall_estimate")
        click.echo(
            f"  recall@10 target={c.get('target_recall', 0.95):g} "
            + (f"measured={recall:.4f} search_ef={c['search_ef']} (tuned at "
               f"{c['tuned_rows']} rows)" if recall is not None else "not tuned yet")
        )
        ch = c.get("change")
        if ch:
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ch["started_unix"]))
            failed = ch["phase"] == "failed"
            click.echo(
                f"  change {'FAILED' if failed else 'in progress'}: {ch['kind']} -> "
                f"shards={ch['target_shards']} replicas={ch['target_replicas']} "
                f"phase={ch['phase']} rows copied {ch['rows_copied']} of about "
                f"{ch['rows_total']} since {started}"
                + (f" ({'error' if failed else 'retrying'}: {ch['error']})" if ch["error"] else "")
                + (f"; roll it back with `shardvec scale {c['name']} --abort`" if failed else "")
            )
        for r in c["replica_states"]:
            click.echo(
                f"  shard {r['shard']} replica {r['replica']}: {r['state']:<11} "
                f"rows={r['count']:<9} seq={r['applied_seq']:<7} pid={r['pid']:<7} "
                f"node={r['node_id'][:12]} addr={r['address']}"
            )
            if r.get("reason"):
                click.echo(
                    f"    DATA_LOSS {c['name']} shard {r['shard']} replica {r['replica']}: "
                    f"{r['reason']}"
                )


@cli.command()
@click.argument("name")
@click.option(
    "--dim", default=0, type=int, help="Vector dimension (with --embedding: the model's)."
)
@click.option(
    "--metric",
    type=click.Choice(["cosine", "dot", "euclidean"]),
    default="cosine",
    show_default=True,
)
@click.option("--shards", default=1, show_default=True, type=int)
@click.option("--replicas", default=1, show_default=True, type=int)
@click.option("--m", default=0, type=int, help="HNSW M (0: default 16).")
@click.option("--ef-construction", default=0, type=int, help="HNSW ef_construction (0: 200).")
@click.option("--ef", default=0, type=int, help="Default search ef (0: the default).")
@click.option(
    "--embedding",
    type=click.Choice(["minilm"]),
    default=None,
    help="Embed documents and query texts in the cluster (minilm: all-MiniLM-L6-v2, 384-d).",
)
@click.option(
    "--text-tokenizer",
    type=click.Choice(["unicode61", "porter"]),
    default="unicode61",
    show_default=True,
    help="How keyword search cuts documents into terms (porter: with stemming).",
)
@click.option(
    "--target-recall", default=0.0, type=float,
    help="Recall@10 searches without --ef are tuned to hold, in (0, 1] (0: 0.95).",
)
@click.option(
    "--ttl", default=0.0, type=float,
    help="Seconds a row lives unless it is written with its own expiry (0: rows never expire).",
)
@click.pass_obj
def create(
    obj: _Context,
    name: str,
    dim: int,
    metric: str,
    shards: int,
    replicas: int,
    m: int,
    ef_construction: int,
    ef: int,
    embedding: str | None,
    text_tokenizer: str,
    target_recall: float,
    ttl: float,
) -> None:
    """Create a collection."""
    if not dim and not embedding:
        raise click.UsageError("give --dim, or --embedding for the model's dimension")
    try:
        with obj.client() as client:
            client.create_collection(
                name,
                dim,
                metric,
                shards,
                replicas,
                m=m,
                ef_construction=ef_construction,
                ef=ef,
                embedding=embedding or "",
                text_tokenizer=text_tokenizer,
                target_recall=target_recall,
                ttl_seconds=ttl,
            )
    except ShardvecError as exc:
        fail(exc)
    click.echo(f"created {name}")


@cli.command()
@click.argument("name")
@click.pass_obj
def drop(obj: _Context, name: str) -> None:
    """Drop a collection and delete its data."""
    try:
        with obj.client() as client:
            client.drop_collection(name)
    except ShardvecError as exc:
        fail(exc)
    click.echo(f"dropped {name}")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@cli.command()
@click.argument("name")
@click.option(
    "--vectors",
    "vectors_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .npy file of shape (n, dim).",
)
@click.option(
    "--metadata",
    "metadata_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON Lines, one object per vector row; its `document` (else `text`) field is the "
    "row's document, stored beside the metadata (see --document-field).",
)
@click.option("--id-field", default=None, help="Metadata field holding the id (default: row).")
@click.option(
    "--document-field",
    default="document,text",
    show_default=True,
    help="Metadata fields read as the row's document, first present wins; `document` moves "
    "out of the metadata, another field stays in it too. '' : no documents.",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Load the valid rows and skip the ones the server rejects (each reported on stderr, "
    "with a count at the end); without it load stops at the first rejected row.",
)
@click.option("--batch", default=1000, show_default=True, type=int, help="Rows per request.")
@click.pass_obj
def load(
    obj: _Context,
    name: str,
    vectors_path: Path,
    metadata_path: Path | None,
    id_field: str | None,
    document_field: str,
    skip_invalid: bool,
    batch: int,
) -> None:
    """Upsert vectors (and metadata, documents) from files, with a progress bar."""
    from tqdm import tqdm

    from shardvec.cluster.loading import BatchLoader, split_documents

    vectors = np.load(vectors_path, mmap_mode="r")
    metas = read_jsonl(metadata_path) if metadata_path else None
    if metas is not None and len(metas) != len(vectors):
        raise click.UsageError(f"{len(metas)} metadata rows for {len(vectors)} vectors")
    if id_field is not None:
        if metas is None:
            raise click.UsageError("--id-field needs --metadata")
        ids = [str(m[id_field]) for m in metas]
    else:
        ids = [str(i) for i in range(len(vectors))]
    fields = [f for f in document_field.split(",") if f]
    docs = split_documents(metas, fields) if metas is not None and fields else None
    loader: BatchLoader | None = None
    try:
        with obj.client() as client:
            loader = BatchLoader(client.get_collection(name), skip_invalid)
            with tqdm(total=len(ids), unit="vec", desc=f"load {name}") as bar:
                for start in range(0, len(ids), batch):
                    stop = min(start + batch, len(ids))
                    loader.load(
                        start,
                        ids[start:stop],
                        np.asarray(vectors[start:stop], np.float32),
                        metas[start:stop] if metas else None,
                        docs[start:stop] if docs else None,
                    )
                    bar.update(stop - start)
    except ShardvecError as exc:
        for line in loader.report() if loader is not None else []:
            click.echo(line, err=True)
        fail(exc)
        return
    for line in loader.report():
        click.echo(line, err=True)
    if loader.rejected:
        click.echo(
            f"loaded {loader.loaded} vectors into {name}, skipped {len(loader.rejected)} "
            f"invalid rows"
        )
    else:
        click.echo(f"loaded {loader.loaded} vectors into {name}")


@cli.command()
@click.argument("name")
@click.option(
    "--vectors",
    "vectors_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .npy file of query vectors.",
)
@click.option(
    "--like",
    "like",
    multiple=True,
    metavar="ID",
    help="Instead of --vectors: search with the stored vector of this id (repeatable, one "
    "query each); the ids given are left out of the hits.",
)
@click.option(
    "--text",
    "texts",
    multiple=True,
    help="Instead of --vectors: a query text, embedded in the cluster (the collection needs "
    "--embedding); repeatable.",
)
@click.option("-k", "k", default=10, show_default=True, type=int, help="Hits per query.")
@click.option(
    "--where", default=None, help='Chroma-style filter, e.g. \'{"year": {"$gte": 2024}}\'.'
)
@click.option("--ef", default=0, type=int, help="Search breadth (0: collection default).")
@click.option("--exact", is_flag=True, help="Brute force instead of HNSW.")
@click.option(
    "--keywords",
    "keywords",
    multiple=True,
    help="A keyword query (BM25 over the documents; words, not query syntax), repeatable. "
    "Alone: keyword search; with --text or --vectors (one each): hybrid search.",
)
@click.option(
    "--fusion",
    type=click.Choice(["rrf", "weighted"]),
    default=None,
    help="Hybrid: reciprocal rank fusion (default) or weighted normalised scores.",
)
@click.option(
    "--alpha", default=None, type=float, help="--fusion weighted: the vector side's weight (0.5)."
)
@click.option("--rrf-k", default=0, type=int, help="--fusion rrf: the rank constant (0: 60).")
@click.option("--group-by", default=None, metavar="FIELD",
              help="The best --groups values of this metadata field, --group-size hits each.")
@click.option("--groups", default=None, type=int, help="--group-by: groups (10).")
@click.option("--group-size", default=None, type=int, help="--group-by: hits per group (3).")
@click.option("--diversity", default=None, type=float,
              help="MMR: k hits out of --candidates, 1 = by relevance, 0 = most varied.")
@click.option("--candidates", default=None, type=int, help="--diversity: candidates (4 k).")
@click.option("--json", "as_json", is_flag=True, help="One JSON list of hits per query row.")
@click.pass_obj
def query(
    obj: _Context,
    name: str,
    vectors_path: Path | None,
    like: tuple[str, ...],
    texts: tuple[str, ...],
    k: int,
    where: str | None,
    ef: int,
    exact: bool,
    keywords: tuple[str, ...],
    fusion: str | None,
    alpha: float | None,
    rrf_k: int,
    group_by: str | None,
    groups: int | None,
    group_size: int | None,
    diversity: float | None,
    candidates: int | None,
    as_json: bool,
) -> None:
    """Search a collection with query vectors from a .npy file, query texts, "more like"
    stored ids, keywords (BM25), or keywords fused with vectors or texts (hybrid); grouped by
    a metadata field (--group-by) or diversified (--diversity)."""
    shape = _shape_options(group_by, groups, group_size, diversity, candidates)
    if shape and (like or keywords):
        raise click.UsageError("--group-by and --diversity go with --vectors or --text")
    sources = sum((vectors_path is not None, bool(like), bool(texts)))
    if keywords and not like and sources <= 1:
        _query_keywords(obj, name, keywords, vectors_path, texts, k, where, fusion, alpha,
                        rrf_k, as_json)
        return
    if sources != 1:
        raise click.UsageError("give exactly one of --vectors, --text and --like (or --keywords)")
    try:
        where_obj = json.loads(where) if where else None
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"--where is not JSON: {exc}") from None
    try:
        with obj.client() as client:
            col = client.get_collection(name)
            if like:
                hits = col.search_by_ids(
                    list(like), k=k, where=where_obj, ef=ef or None, exact=exact
                )
            elif texts:
                hits = col.search_texts(
                    list(texts), k=k, where=where_obj, ef=ef or None, exact=exact,
                    include_documents=True, **shape,
                )
            else:
                queries = np.asarray(np.load(str(vectors_path)), dtype=np.float32)
                hits = col.search(
                    queries, k=k, where=where_obj, ef=ef or None, exact=exact,
                    include_documents=True, **shape,
                )
    except ShardvecError as exc:
        fail(exc)
        return
    for row, row_hits in enumerate(hits):
        if as_json:
            click.echo(
                json.dumps(
                    [
                        {
                            "id": h.id,
                            "score": h.score,
                            "metadata": h.metadata,
                            "document": h.document,
                            **({"group": h.group} if group_by else {}),
                        }
                        for h in row_hits
                    ]
                )
            )
            continue
        if like:
            click.echo(f"like {like[row]}:")
        else:
            click.echo(f"query {row}:" + (f" {texts[row]!r}" if texts else ""))
        for j, h in enumerate(row_hits):
            if group_by and (j == 0 or row_hits[j - 1].group != h.group):
                click.echo(f"  {group_by} = {json.dumps(h.group, ensure_ascii=False)}:")
            text = h.document or (h.metadata or {}).get("text", "")
            click.echo(f"  {h.score:8.4f}  {h.id:<12} {str(text)[:80]}")


def _shape_options(group_by: str | None, groups: int | None, group_size: int | None,
                   diversity: float | None, candidates: int | None) -> dict[str, Any]:  # fmt: skip
    """`query`'s group-by and diversity options as Collection.search arguments (the server
    checks them)."""
    given = {"group_by": group_by, "groups": groups, "group_size": group_size,
             "diversity": diversity, "candidates": candidates}  # fmt: skip
    return {key: value for key, value in given.items() if value is not None}


def _query_keywords(
    obj: _Context,
    name: str,
    keywords: tuple[str, ...],
    vectors_path: Path | None,
    texts: tuple[str, ...],
    k: int,
    where: str | None,
    fusion: str | None,
    alpha: float | None,
    rrf_k: int,
    as_json: bool,
) -> None:
    """`query --keywords`: keyword search, or hybrid with --text / --vectors."""
    try:
        where_obj = json.loads(where) if where else None
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"--where is not JSON: {exc}") from None
    try:
        with obj.client() as client:
            col = client.get_collection(name)
            queries = (
                np.asarray(np.load(str(vectors_path)), dtype=np.float32)
                if vectors_path is not None
                else None
            )
            hits = col.search_keywords(
                list(keywords), k=k, queries=queries, texts=list(texts) if texts else None,
                fusion=fusion or "", alpha=alpha, rrf_k=rrf_k, where=where_obj,
                include_documents=True,
            )
    except ShardvecError as exc:
        fail(exc)
        return
    for row, row_hits in enumerate(hits):
        if as_json:
            click.echo(json.dumps([
                {"id": h.id, "score": h.score, "metadata": h.metadata, "document": h.document}
                for h in row_hits
            ]))
            continue
        click.echo(f"query {row}: keywords {keywords[row]!r}"
                   + (f" text {texts[row]!r}" if texts else ""))
        for h in row_hits:
            text = h.document or (h.metadata or {}).get("text", "")
            click.echo(f"  {h.score:8.4f}  {h.id:<12} {str(text)[:80]}")


@cli.command()
@click.option("--data-dir", default=None, help="Data directory (default: a temporary one).")
@click.option("--shards", default=2, show_default=True, type=int)
def demo(data_dir: str | None, shards: int) -> None:
    """Local cluster on embedded Ray: load the bundled sample, query it, measure recall."""
    from shardvec.cluster.demo import run_demo

    run_demo(data_dir, shards)


@cli.command()
@click.option(
    "--mode",
    type=click.Choice(["replica", "coordinator", "cluster", "front", "scale", "all"]),
    default="replica",
    show_default=True,
    help="What to kill -9: a random replica, the coordinator, or the whole cluster; scale: "
    "change the shard count up and down and kill a replica or the coordinator meanwhile.",
)
@click.option("--seconds", default=60.0, show_default=True, help="How long to keep killing.")
@click.option("--interval", default=3.0, show_default=True, help="Mean seconds between kills.")
@click.option("--shards", default=2, show_default=True)
@click.option("--replicas", default=2, show_default=True)
@click.option("--batch", default=20, show_default=True, help="Rows per upsert batch.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the figures as JSON here.",
)
def crasher(
    mode: str,
    seconds: float,
    interval: float,
    shards: int,
    replicas: int,
    batch: int,
    seed: int,
    json_out: Path | None,
) -> None:
    """Kill -9 parts of a live cluster under writes and reads; verify nothing was lost."""
    from shardvec.cluster.crasher import MODES, Crasher, format_report

    reports = []
    for m in MODES if mode == "all" else (mode,):
        click.echo(f"== crasher mode {m}: {seconds:.0f} s, a kill every ~{interval:.1f} s")
        rep = Crasher(
            m,
            seconds=seconds,
            interval=interval,
            shards=shards,
            replicas=replicas,
            batch=batch,
            seed=seed,
            log=click.echo,
        ).run()
        click.echo(format_report(rep))
        reports.append(rep)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps([r.to_dict() for r in reports], indent=2))
    if not all(r.ok for r in reports):
        click.echo("crasher: FAILED", err=True)
        sys.exit(1)
    click.echo("crasher: every acknowledged write survived")


cli.add_command(add)
cli.add_command(get)
cli.add_command(count)
cli.add_command(delete)
cli.add_command(update)
cli.add_command(snapshot)
cli.add_command(recall)
cli.add_command(scale)
cli.add_command(rebalance)
cli.add_command(export)
cli.add_command(import_)
cli.add_command(alias)
cli.add_command(reembed)


def _add_plugin_commands() -> None:
    """Commands other packages register under the `shardvec.cli` entry point group, such as
    `shardvec bench` (bench/cli.py): they depend on the CLI, the CLI never imports them."""
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            command = ep.load()
        except ImportError as exc:  # a plugin whose package is not installed here
            click.echo(f"shardvec: skipping command {ep.name!r}: {exc}", err=True)
            continue
        cli.add_command(command, ep.name)


_add_plugin_commands()


def main() -> None:
    cli(prog_name="shardvec")
