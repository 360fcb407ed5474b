"""Everyday row commands of the `shardvec` CLI: `add` (documents of a text collection), `get`,
`count`, `delete` and `update`, each one call of the Python client (cluster/client.py).

Registered on the main group in cluster/cli.py; `obj` is its context (with `.client()`).
Rows are JSON Lines in and out: `{"id": ..., "document": ..., "metadata": {...}}`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Protocol

import click

from shardvec.cluster.client import Client, Record
from shardvec.cluster.hints import fail
from shardvec.contract.errors import ShardvecError


class _HasClient(Protocol):
    def client(self) -> Client: ...




def _json_option(text: str | None, what: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=what) from None
    if not isinstance(value, dict):
        raise click.BadParameter("a JSON object", param_hint=what)
    return value


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise click.BadParameter(f"line {n}: not JSON: {exc}", param_hint="FILE") from None
            if not isinstance(row, dict) or "id" not in row:
                raise click.BadParameter(f'line {n}: an object with an "id"', param_hint="FILE")
            rows.append(row)
    return rows


def _record_json(r: Record, vectors: bool) -> str:
    out: dict[str, Any] = {"id": r.id, "metadata": r.metadata}
    if r.document is not None:
        out["document"] = r.document
    if r.expires_at:
        out["expires_at"] = r.expires_at  # as `shardvec export` writes it; none: never
    if vectors and r.vector is not None:
        out["vector"] = [float(x) for x in r.vector]
    return json.dumps(out, ensure_ascii=False)


@click.command()
@click.argument("name")
@click.option(
    "--documents",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON Lines, one {"id": ..., "document": "...", "metadata": {...}} per row '
    "(metadata optional). The collection embeds the documents (created with --embedding).",
)
@click.option("--batch", default=256, show_default=True, type=int, help="Rows per request.")
@click.option(
    "--ttl", default=None, type=float,
    help="Seconds the rows live (0: never expire; not given: the collection's default).",
)
@click.pass_obj
def add(obj: _HasClient, name: str, path: Path, batch: int, ttl: float | None) -> None:
    """Add (or replace) rows from their documents, with a progress bar."""
    from tqdm import tqdm

    rows = _read_rows(path)
    missing = next((r["id"] for r in rows if not isinstance(r.get("document"), str)), None)
    if missing is not None:
        raise click.BadParameter(f"row {missing!r} has no document", param_hint="--documents")
    try:
        with obj.client() as client, tqdm(total=len(rows), unit="row", desc=f"add {name}") as bar:
            col = client.get_collection(name)
            n = col.upsert_documents(
                [str(r["id"]) for r in rows],
                [r["document"] for r in rows],
                [r.get("metadata") for r in rows],
                batch_size=batch,
                progress=bar.update,
                ttl_seconds=ttl,
            )
    except ShardvecError as exc:
        fail(exc)
    click.echo(f"{name}: {n} rows added")


@click.command()
@click.argument("name")
@click.argument("ids", nargs=-1)
@click.option("--where", default=None, help="Rows matching this filter (JSON), without IDS.")
@click.option("--limit", default=10, show_default=True, type=int,
              help="With --where (or nothing): at most this many rows.")
@click.option("--vectors", is_flag=True, help="Include each row's vector.")
@click.pass_obj
def get(obj: _HasClient, name: str, ids: tuple[str, ...], where: str | None, limit: int,
        vectors: bool) -> None:  # fmt: skip
    """Print rows by id (or those matching --where) as JSON Lines: id, metadata, document,
    and expires_at (unix seconds) for a row that expires."""
    filter_ = _json_option(where, "--where")
    if ids and filter_ is not None:
        raise click.UsageError("give IDS or --where, not both")
    try:
        with obj.client() as client:
            col = client.get_collection(name)
            records = col.get(list(ids) or None, where=filter_, limit=0 if ids else limit,
                              include_vectors=vectors, include_documents=True)  # fmt: skip
    except ShardvecError as exc:
        fail(exc)
    for r in records:
        click.echo(_record_json(r, vectors))
    found = {r.id for r in records}
    for missing in (i for i in ids if i not in found):
        click.echo(f"not found: {missing}", err=True)


@click.command()
@click.argument("name")
@click.option("--where", default=None, help="Count only the rows matching this filter (JSON).")
@click.option("--by", "by", default=None, metavar="FIELD",
              help="Count by value of this metadata field instead: the most frequent values "
              "(each element of a list counts) with their exact counts.")
@click.option("--limit", default=10, show_default=True, type=int,
              help="With --by: how many values (at most 1000).")
@click.pass_obj
def count(obj: _HasClient, name: str, where: str | None, by: str | None, limit: int) -> None:
    """Print how many rows a collection holds (or match --where), or with --by the most
    frequent values of a metadata field among them."""
    if by is not None:
        _count_by(obj, name, by, where, limit)
        return
    try:
        with obj.client() as client:
            n = client.get_collection(name).count(where=_json_option(where, "--where"))
    except ShardvecError as exc:
        fail(exc)
    click.echo(n)


@click.command()
@click.argument("name")
@click.argument("ids", nargs=-1)
@click.option("--where", default=None, help="Delete the rows matching this filter (JSON).")
@click.pass_obj
def delete(obj: _HasClient, name: str, ids: tuple[str, ...], where: str | None) -> None:
    """Delete rows by id, or those matching --where (one atomic batch)."""
    filter_ = _json_option(where, "--where")
    if bool(ids) == (filter_ is not None):
        raise click.UsageError("give IDS or --where (exactly one)")
    try:
        with obj.client() as client:
            n = client.get_collection(name).delete(list(ids) or None, where=filter_)
    except ShardvecError as exc:
        fail(exc)
    click.echo(f"{name}: {n} rows deleted")


@click.command()
@click.argument("name")
@click.argument("id_")
@click.option("--metadata", default=None,
              help="A JSON object merged into the row's metadata (see --replace).")
@click.option("--replace", is_flag=True, help="Replace the metadata instead of merging it.")
@click.option("--document", default=None,
              help="The row's new document; a collection with an embedding re-embeds it.")
@click.pass_obj
def update(obj: _HasClient, name: str, id_: str, metadata: str | None, replace: bool,
           document: str | None) -> None:  # fmt: skip
    """Change one row's metadata and/or document in place (its vector follows its document in
    a collection with an embedding)."""
    meta = _json_option(metadata, "--metadata")
    if meta is None and document is None:
        raise click.UsageError("give --metadata and/or --document")
    try:
        with obj.client() as client:
            got = client.get_collection(name).update(
                [id_], [meta] if meta is not None else None,
                [document] if document is not None else None, replace_metadata=replace,
            )
    except ShardvecError as exc:
        fail(exc)
    if got["missing_ids"]:
        click.echo(f"error: NOT_FOUND: {id_!r} is not in {name}", err=True)
        sys.exit(1)
    click.echo(f"{name}: {id_} updated")


def _count_by(obj: _HasClient, name: str, field: str, where: str | None, limit: int) -> None:
    """`count --by`: one line per value, most frequent first: the count, then the value as
    JSON (the Facet call, cluster/client_collection.py)."""
    try:
        with obj.client() as client:
            values = client.get_collection(name).facet(
                field, where=_json_option(where, "--where"), limit=limit
            )
    except ShardvecError as exc:
        fail(exc)
        return
    for value, n in values:
        click.echo(f"{n:>10}  {json.dumps(value, ensure_ascii=False)}")
