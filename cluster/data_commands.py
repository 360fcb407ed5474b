"""Data commands of the `shardvec` CLI: `export` (cluster/export.py) and `import`, which
loads what `export` wrote.

Registered on the main group in cluster/cli.py; `obj` is its context (with `.client()`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import click

from shardvec.cluster.client import Client
from shardvec.cluster.export import export_collection
from shardvec.cluster.hints import fail
from shardvec.contract.errors import ShardvecError


class _HasClient(Protocol):
    def client(self) -> Client: ...




@click.command()
@click.argument("name")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help='JSON Lines to write, one {"id": ..., "metadata": {...}} per row.',
)
@click.option(
    "--vectors",
    "vectors_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the vectors as a .npy file, row i for line i of --out.",
)
@click.option("--where", default=None, help="Export only the rows matching this filter (JSON).")
@click.option("--page-size", default=1000, show_default=True, type=int, help="Rows per page.")
@click.pass_obj
def export(
    obj: _HasClient,
    name: str,
    out: Path,
    vectors_out: Path | None,
    where: str | None,
    page_size: int,
) -> None:
    """Export a collection's rows (ids, metadata, optionally vectors) with a progress bar.

    One scroll: every row alive for the whole export is written exactly once, even while
    writes arrive."""
    from tqdm import tqdm

    try:
        where_obj: Any = json.loads(where) if where else None
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"--where is not JSON: {exc}") from None
    try:
        with obj.client() as client:
            col = client.get_collection(name)
            total = col.count(where_obj)
            with tqdm(total=total, unit="row", desc=f"export {name}") as bar:
                rows = export_collection(
                    col, out, vectors_out, where_obj, page_size=page_size, progress=bar.update
                )
    except ShardvecError as exc:
        fail(exc)
    extra = f" and {vectors_out}" if vectors_out else ""
    click.echo(f"exported {rows} rows of {name} to {out}{extra}")


@click.command("import")
@click.argument("name")
@click.option(
    "--in",
    "in_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON Lines as `shardvec export` writes them: {"id": ..., "metadata": {...}} per row.',
)
@click.option(
    "--vectors",
    "vectors_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The .npy file of the export, row i for line i.",
)
@click.option("--batch", default=1000, show_default=True, type=int, help="Rows per request.")
@click.pass_obj
def import_(obj: _HasClient, name: str, in_path: Path, vectors_path: Path, batch: int) -> None:
    """Upsert the rows of an export (`shardvec export --out F.jsonl --vectors F.npy`) into a
    collection, with a progress bar."""
    import numpy as np
    from tqdm import tqdm

    vectors = np.load(vectors_path, mmap_mode="r")
    with in_path.open(encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    if len(lines) != len(vectors):
        raise click.UsageError(f"{len(lines)} rows in {in_path} for {len(vectors)} vectors")
    try:
        with obj.client() as client:
            col = client.get_collection(name)
            with tqdm(total=len(lines), unit="row", desc=f"import {name}") as bar:
                for start in range(0, len(lines), batch):
                    part = lines[start : start + batch]
                    docs = [x.get("document") or None for x in part]
                    col.upsert(
                        [str(x["id"]) for x in part],
                        np.asarray(vectors[start : start + len(part)], dtype=np.float32),
                        [x.get("metadata") or {} for x in part],
                        documents=docs if any(docs) else None,
                        batch_size=batch,
                    )
                    bar.update(len(part))
    except ShardvecError as exc:
        fail(exc)
    click.echo(f"imported {len(lines)} rows into {name}")
