"""Cluster state commands of the `shardvec` CLI: `status` (collections, shards, replicas,
layout changes) and `fronts` (the query fronts and the coordinator).

Registered on the main group in cluster/cli.py; `obj` is its context (with `.client()`).
"""

from __future__ import annotations

import json
import time
from typing import Protocol

import click

from shardvec.cluster.client import Client
from shardvec.cluster.hints import fail
from shardvec.contract.errors import ShardvecError


class _HasClient(Protocol):
    def client(self) -> Client: ...


def _count(count: int | None) -> str:
    """A collection's row count as listed; None: it could not be counted now (a shard with no
    live replica; `shardvec status` names it)."""
    return "unknown" if count is None else str(count)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def fronts(obj: _HasClient, as_json: bool) -> None:
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def status(obj: _HasClient, as_json: bool) -> None:
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
            + (" payload_on_disk" if c.get("payload_on_disk") else "")
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
