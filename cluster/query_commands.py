"""`shardvec query`: search a collection by vectors, texts, stored ids, keywords or hybrid,
grouped or diversified.

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
    obj: _HasClient,
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
    obj: _HasClient,
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
