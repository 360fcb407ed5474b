"""Operating commands of the `shardvec` CLI: `snapshot create|restore|verify` and `recall`.

Registered on the main group in cluster/cli.py; `obj` is its context (with `.client()`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import click
import numpy as np

from shardvec.cluster.client import Client, verify_snapshot
from shardvec.cluster.hints import fail
from shardvec.contract.errors import ShardvecError


class _HasClient(Protocol):
    def client(self) -> Client: ...




@click.group()
def snapshot() -> None:
    """Create, restore and verify point-in-time snapshots of collections."""


@snapshot.command("create")
@click.argument("name")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Archive to write (default: NAME-YYYYmmdd-HHMMSS.snapshot.tar).",
)
@click.pass_obj
def snapshot_create(obj: _HasClient, name: str, out: Path | None) -> None:
    """Snapshot a collection while writes continue: every shard at one sequence number."""
    out = out or Path(f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.snapshot.tar")
    try:
        with obj.client() as client:
            manifest = client.create_snapshot(name, out)
    except ShardvecError as exc:
        fail(exc)
    seqs = [s["seq"] for s in manifest["shards"]]
    click.echo(
        f"snapshot of {name}: {manifest['rows']} rows in {len(seqs)} shards "
        f"(shard seqs {seqs}) written to {out} ({out.stat().st_size} bytes)"
    )


@snapshot.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "as_name", default=None, help="Name of the new collection (default: the "
              "snapshot's).")
@click.option("--shards", default=0, type=int, help="Shard count (0: the snapshot's).")
@click.option("--replicas", default=0, type=int, help="Replicas per shard (0: the snapshot's).")
@click.pass_obj
def snapshot_restore(
    obj: _HasClient, file: Path, as_name: str | None, shards: int, replicas: int
) -> None:
    """Restore a snapshot archive into a new collection (rows re-routed for any shard count)."""
    try:
        with obj.client() as client:
            col = client.restore_snapshot(file, as_name, shards=shards, replicas=replicas)
            info = client.describe(col.name)
    except ShardvecError as exc:
        exists = exc.code.name == "ALREADY_EXISTS"
        fail(exc, "\nhint: restore it under another name with --as NEW." if exists else "")
    click.echo(
        f"restored {info['name']}: {info['count']} rows, {info['shards']} shards x "
        f"{info['replicas']} replicas"
    )


@snapshot.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def snapshot_verify(file: Path, as_json: bool) -> None:
    """Check an archive's checksums, seqs and row counts without a server."""
    try:
        report = verify_snapshot(file)
    except ShardvecError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"ok: {report['collection']} (dim {report['dim']}, {report['metric']}), "
        f"{report['rows']} rows in {report['shards']} shards, shard seqs {report['shard_seqs']}"
    )


@click.command()
@click.argument("name")
@click.option(
    "--queries",
    "queries_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .npy file of query vectors, shape (n, dim).",
)
@click.option("-k", "k", default=10, show_default=True, type=int, help="Hits per query.")
@click.option("--min", "min_recall", default=None, type=float,
              help="Exit 1 when recall@k is below this.")
@click.option("--where", default=None, help="Chroma-style filter applied to both searches.")
@click.option(
    "--expected",
    "expected_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Labelled answers instead of exact search: JSON Lines {"query": row, "ids": [...]}.',
)
@click.option("--ef", default=0, type=int,
              help="Force this search ef (0: the collection default; below k counts as k).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def recall(
    obj: _HasClient,
    name: str,
    queries_path: Path,
    k: int,
    min_recall: float | None,
    where: str | None,
    expected_path: Path | None,
    ef: int,
    as_json: bool,
) -> None:
    """Recall@k of the collection's approximate search against its exact search (or labels),
    with the worst queries and latency percentiles."""
    from shardvec.cluster.recall import measure_recall, read_expected

    queries = np.asarray(np.load(queries_path), dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None, :]
    try:
        where_obj: Any = json.loads(where) if where else None
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"--where is not JSON: {exc}") from None
    # hnswlib searches at breadth max(ef, k), and the server accepts ef >= k only.
    search_ef = max(ef, k) if ef else None
    try:
        expected = read_expected(expected_path, len(queries)) if expected_path else None
        with obj.client() as client:
            col = client.get_collection(name)
            report = measure_recall(
                col, queries, k, where=where_obj, ef=search_ef, expected=expected
            )
    except ShardvecError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    if min_recall is not None and report.recall < min_recall:
        click.echo(f"error: recall@{k} {report.recall:.4f} is below --min {min_recall}", err=True)
        sys.exit(1)


@click.command()
@click.argument("name")
@click.option("--shards", type=click.IntRange(1, 1024), default=None,
              help="The new shard count (1 to 1024, the bucket count).")
@click.option("--replicas", type=click.IntRange(1), default=None, help="The new replica count.")
@click.option("--abort", is_flag=True,
              help="Roll back the change in progress (before it switched).")
@click.option("--no-wait", is_flag=True, help="Return once the change is running.")
@click.pass_obj
def scale(
    obj: _HasClient, name: str, shards: int | None, replicas: int | None, abort: bool,
    no_wait: bool,
) -> None:
    """Change a collection's shard and/or replica count online, with a progress bar of the
    rows copied; returns when the new layout serves."""
    from tqdm import tqdm

    if abort == (shards is not None or replicas is not None):
        raise click.UsageError("give --shards and/or --replicas, or --abort alone")
    try:
        with obj.client() as client:
            col = client.get_collection(name)
            if abort:
                col.abort_scale()
                info = client.wait_layout(name)
                click.echo(f"{name}: change rolled back; shards={info['shards']} "
                           f"replicas={info['replicas']} layout={info['layout_version']}")
                return
            started = col.scale(shards, replicas, wait=False)
            if not started.get("change"):
                info = client.describe(name)
                click.echo(f"{name}: nothing to change, it has shards={info['shards']} "
                           f"replicas={info['replicas']}")
                return
            if no_wait:
                click.echo(f"{name}: change running ({json.dumps(started['change'])})")
                return
            # DescribeCollection's change record gives the rows copied so far (page by page,
            # coordinator/changes/resharding.py); a finished change is no longer described,
            # so the bar ends on the count seen after the switch (final) or, for a copy done
            # between two polls, on the estimated total the change started with.
            seen = {"copied": 0, "total": 0, "switched": 0}
            with tqdm(total=0, unit="row", desc=f"scale {name}") as bar:
                def show(change: dict[str, Any]) -> None:
                    seen["copied"] = max(seen["copied"], int(change["rows_copied"]))
                    seen["total"] = max(int(change["rows_total"]), seen["copied"])
                    seen["switched"] |= change["phase"] == "cleanup"
                    bar.total = seen["total"]
                    bar.n = seen["copied"]
                    bar.set_postfix_str(change["phase"] + (f" ({change['error']})"
                                                           if change["error"] else ""))
                    bar.refresh()

                info = client.wait_layout(name, poll=0.2, progress=show)
                if shards is not None and seen["total"]:
                    bar.total = bar.n = seen["copied"] if seen["switched"] else seen["total"]
                    bar.set_postfix_str("done")
                    bar.refresh()
    except ShardvecError as exc:
        fail(exc)
    copied = ""
    if shards is not None and seen["total"]:
        about = "" if seen["switched"] else "about "
        n = seen["copied"] if seen["switched"] else seen["total"]
        copied = f"; {about}{n:,} rows copied"
    click.echo(f"{name}: shards={info['shards']} replicas={info['replicas']} "
               f"layout={info['layout_version']} count={info['count']}{copied}")


@click.command()
@click.argument("name", required=False, default="")
@click.pass_obj
def rebalance(obj: _HasClient, name: str) -> None:
    """Move replicas (of NAME, or of every collection) until every node holds about the same
    rows; prints each move."""
    try:
        with obj.client() as client:
            moves = client.rebalance(name)
    except ShardvecError as exc:
        fail(exc)
    for m in moves:
        click.echo(f"{m['collection']} shard {m['shard']} replica {m['replica']}: "
                   f"{m['source'][:12]} -> {m['target'][:12]} ({m['rows']} rows)")
    click.echo(f"{len(moves)} moves")
