"""Collection commands of the `shardvec` CLI: `create`, `drop` and `load` (vectors,
metadata and documents from files).

Registered on the main group in cluster/cli.py; `obj` is its context (with `.client()`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import click
import numpy as np

from shardvec.cluster.client import Client
from shardvec.cluster.hints import fail
from shardvec.contract.errors import ShardvecError


class _HasClient(Protocol):
    def client(self) -> Client: ...


@click.command()
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
@click.option(
    "--payload-on-disk", is_flag=True, default=False,
    help="Keep the rows' metadata and documents only on disk (each replica's store), read "
    "from there for the hits that return them and for where_document, instead of in memory.",
)
@click.pass_obj
def create(
    obj: _HasClient,
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
    payload_on_disk: bool,
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
                payload_on_disk=payload_on_disk,
            )
    except ShardvecError as exc:
        fail(exc)
    click.echo(f"created {name}")


@click.command()
@click.argument("name")
@click.pass_obj
def drop(obj: _HasClient, name: str) -> None:
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


@click.command()
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
    obj: _HasClient,
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
