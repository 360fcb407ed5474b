"""`shardvec up`: bring a cluster up on Ray and serve until SIGINT or SIGTERM, with its
settings and public limits as options (cluster/bringup.py does the work).

Registered on the main group in cluster/cli.py.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from shardvec.cluster.client import Client
from shardvec.cluster.hints import fail
from shardvec.contract.errors import ShardvecError
from shardvec.contract.limits import DEFAULT_SCRUB_ROWS_PER_S, DEFAULT_SWEEP_ROWS_PER_S
from shardvec.coordinator.config import CoordinatorSettings

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


@click.command()
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
    "--recall-tuner-cpu-share",
    default=CoordinatorSettings("-").recall_tuner_cpu_share,
    show_default=True,
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    help="The most of the wall time the recall tuner's measuring searches may take; a tune "
    "after a load takes about 1 / share times its searches' own time.",
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
    recall_tuner_cpu_share: float,
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
        "recall_tuner_cpu_share": recall_tuner_cpu_share,
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
