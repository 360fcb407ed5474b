"""Data commands of the `shardvec` CLI: `export` (cluster/export.py) and `import`, which
loads what `export` wrote.

Registered on the main group in cluster/cli.py; `obj` is its context (with `.client()`).
"""

from __future__ import annotations

import json
import time
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
    help='JSON Lines to write, one {"id": ..., "metadata": {...}, "document": ...} per row '
    '("document" only where the row has one).',
)
@click.option(
    "--vectors",
    "vectors_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The .npy file of the vectors, row i for line i of --out (default: --out with the "
    "suffix .npy).",
)
@click.option("--no-vectors", is_flag=True,
              help="Leave the vectors out (an import into a collection with an embedding "
              "then embeds the documents again).")
@click.option("--where", default=None, help="Export only the rows matching this filter (JSON).")
@click.option("--page-size", default=1000, show_default=True, type=int, help="Rows per page.")
@click.pass_obj
def export(
    obj: _HasClient,
    name: str,
    out: Path,
    vectors_out: Path | None,
    no_vectors: bool,
    where: str | None,
    page_size: int,
) -> None:
    """Export a collection's rows, every field (id, metadata, document, vector), with a
    progress bar; `shardvec import` restores them.

    One scroll: every row alive for the whole export is written exactly once, even while
    writes arrive."""
    from tqdm import tqdm

    if no_vectors and vectors_out is not None:
        raise click.UsageError("give --vectors or --no-vectors, not both")
    if not no_vectors and vectors_out is None:
        vectors_out = out.with_suffix(".npy")
        if vectors_out == out:
            raise click.UsageError(f"--out {out} ends in .npy: name the vectors with --vectors")

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
    help='JSON Lines as `shardvec export` writes them: {"id": ..., "metadata": {...}, '
    '"document": ..., "expires_at": ...} per row (no expires_at: never expires).',
)
@click.option(
    "--vectors",
    "vectors_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The .npy file of the export, row i for line i (default: --in with the suffix .npy "
    "if it exists; without one, a collection with an embedding embeds the documents).",
)
@click.option("--batch", default=1000, show_default=True, type=int, help="Rows per request.")
@click.pass_obj
def import_(obj: _HasClient, name: str, in_path: Path, vectors_path: Path | None,
            batch: int) -> None:
    """Upsert the rows of an export (`shardvec export NAME --out F.jsonl`) into a collection,
    every field as exported, with a progress bar. A row keeps its absolute expiry
    ("expires_at"; a line without one never expires, whatever the collection's default), and
    a row whose expiry has passed is left out."""
    import numpy as np
    from tqdm import tqdm

    if vectors_path is None and in_path.with_suffix(".npy").is_file() \
            and in_path.with_suffix(".npy") != in_path:
        vectors_path = in_path.with_suffix(".npy")
    vectors = np.load(vectors_path, mmap_mode="r") if vectors_path is not None else None
    with in_path.open(encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    expiries = [_expiry(x) for x in lines]  # every line checked before any is written
    expired = 0
    if vectors is not None and len(lines) != len(vectors):
        raise click.UsageError(f"{len(lines)} rows in {in_path} for {len(vectors)} vectors")
    try:
        with obj.client() as client:
            col = client.get_collection(name)
            if vectors is None:
                if not col.embedding and col.embedding_function is None:
                    raise click.UsageError(
                        f"no vectors: give --vectors (no {in_path.with_suffix('.npy')}); "
                        f"{name} has no embedding to embed the documents with"
                    )
                if not all(x.get("document") for x in lines):
                    raise click.UsageError(
                        f"no vectors and a row of {in_path} without a document to embed"
                    )
            with tqdm(total=len(lines), unit="row", desc=f"import {name}") as bar:
                for start in range(0, len(lines), batch):
                    now = time.time()
                    stop = min(start + batch, len(lines))
                    keep = [i for i in range(start, stop)
                            if not expiries[i] or expiries[i] > now]  # fmt: skip
                    part = [lines[i] for i in keep]
                    expired += stop - start - len(part)
                    ids = [str(x["id"]) for x in part]
                    metas = [x.get("metadata") or {} for x in part]
                    docs = [x.get("document") or None for x in part]
                    expires = [expiries[i] for i in keep]
                    if not part:
                        pass
                    elif vectors is None:  # the cluster embeds the documents
                        col.upsert_documents(ids, [str(d) for d in docs], metas,
                                             batch_size=batch, expires_at=expires)
                    else:
                        col.upsert(
                            ids,
                            np.asarray(vectors[keep], dtype=np.float32),
                            metas,
                            documents=docs if any(docs) else None,
                            batch_size=batch,
                            expires_at=expires,
                        )
                    bar.update(stop - start)
    except ShardvecError as exc:
        fail(exc)
    how = f" with the vectors of {vectors_path}" if vectors_path else ", documents embedded"
    gone = f" ({expired} rows left out: expired)" if expired else ""
    click.echo(f"imported {len(lines) - expired} rows into {name}{how}{gone}")


def _expiry(line: dict[str, Any]) -> float:
    """A line's absolute expiry (unix seconds; 0.0: never, also for a line without one)."""
    value = line.get("expires_at") or 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise click.UsageError(f"row {line.get('id')!r}: expires_at is not a number: {value!r}")
    return float(value)
