"""Alias commands of the `shardvec` CLI: `alias create|switch|delete|list` (coordinator/aliases.py)
and `reembed`, which fills a new collection and switches an alias to it (cluster/reembed.py).

Registered on the main group in cluster/cli.py; `obj` is its context (with `.client()`).
"""

from __future__ import annotations

import json
from typing import Protocol

import click

from shardvec.cluster.client import Client
from shardvec.cluster.hints import fail
from shardvec.contract.errors import ShardvecError
from shardvec.contract.limits import EMBEDDINGS


class _HasClient(Protocol):
    def client(self) -> Client: ...


@click.group()
def alias() -> None:
    """Aliases: second names of collections, accepted wherever a collection name is."""


@alias.command("create")
@click.argument("name")
@click.argument("collection")
@click.pass_obj
def create_alias(obj: _HasClient, name: str, collection: str) -> None:
    """Make NAME an alias of COLLECTION."""
    try:
        with obj.client() as client:
            client.create_alias(name, collection)
    except ShardvecError as exc:
        fail(exc)
    click.echo(f"alias {name} -> {collection}")


@alias.command("switch")
@click.argument("name")
@click.argument("collection")
@click.option("--embedding-changed", is_flag=True,
              help="COLLECTION holds the same rows embedded by another model: its dimension "
              "may differ (the metric may not).")  # fmt: skip
@click.pass_obj
def switch_alias(obj: _HasClient, name: str, collection: str, embedding_changed: bool) -> None:
    """Point alias NAME at COLLECTION (same dimension and metric) atomically."""
    try:
        with obj.client() as client:
            previous = client.switch_alias(name, collection, embedding_changed=embedding_changed)
    except ShardvecError as exc:
        fail(exc)
    click.echo(f"alias {name} -> {collection} (was {previous})")


@alias.command("delete")
@click.argument("name")
@click.pass_obj
def delete_alias(obj: _HasClient, name: str) -> None:
    """Remove alias NAME (its collection stays)."""
    try:
        with obj.client() as client:
            was = client.delete_alias(name)
    except ShardvecError as exc:
        fail(exc)
    click.echo(f"deleted alias {name} (of {was})")


@alias.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_aliases(obj: _HasClient, as_json: bool) -> None:
    """Every alias and the collection it names."""
    try:
        with obj.client() as client:
            names = client.list_aliases()
    except ShardvecError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(names, indent=2, sort_keys=True))
        return
    if not names:
        click.echo("no aliases")
    for name in sorted(names):
        click.echo(f"{name} -> {names[name]}")


@click.command()
@click.argument("name")
@click.option("--into", required=True, help="The new collection to fill (must not exist).")
@click.option("--embedding", default="minilm", show_default=True,
              type=click.Choice(sorted(EMBEDDINGS)),
              help="The embedding the cluster gives NEW (a Python function: Client.reembed).")
@click.option("--alias", "alias_name", default="",
              help="When NAME is a collection (not an alias): the alias to point at NEW "
              "(created, or switched); callers then use the alias.")
@click.option("--page-size", default=256, show_default=True, type=int, help="Rows per page.")
@click.pass_obj
def reembed(obj: _HasClient, name: str, into: str, embedding: str, alias_name: str,
            page_size: int) -> None:  # fmt: skip
    """Re-embed the documents behind alias NAME into a new collection, check its count, then
    switch NAME to it, with a progress bar."""
    from tqdm import tqdm

    from shardvec.cluster.reembed import reembed as run

    bar = tqdm(unit="row", desc=f"reembed {name} -> {into}")
    try:
        with obj.client() as client:
            done = run(
                client, name, into=into, embedding=embedding, alias=alias_name,
                page_size=page_size, progress=bar.update,
                total=lambda n: setattr(bar, "total", n),
            )  # fmt: skip
    except ShardvecError as exc:
        bar.close()
        fail(exc)
    bar.close()
    was = f" (was {done.previous})" if done.previous else ""
    click.echo(f"reembedded {done.rows} rows: alias {done.alias} -> {done.collection}{was}")
