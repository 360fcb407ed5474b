"""`shardvec bench ...`: the benchmarks as CLI commands, registered with the `shardvec` CLI
through the `shardvec.cli` entry point (pyproject.toml), so bench/ depends on cluster/ and
never the reverse. Each subcommand imports its module lazily: the CLI does not load
matplotlib or the data sets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def bench() -> None:
    """Benchmarks: scale-out over shards, replicas and nodes, and query performance."""


@bench.command()
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="SHARDVEC_SHARED_DATA",
              help="Shared data set directory (default: ../shared/data/pypi-minilm-100k). "
                   "Env: SHARDVEC_SHARED_DATA.")
@click.option("--synthetic", default=0, type=int,
              help="Use N rows of seeded clustered Gaussian data instead of --data.")
@click.option("--dim", default=384, show_default=True, help="Dimension of --synthetic data.")
@click.option("--n", default=None, type=int, help="Use only the first N base rows.")
@click.option("--queries", default=1000, show_default=True, help="Query rows to use.")
@click.option("--shards", default="1,2,4,8", show_default=True, help="Shard counts.")
@click.option("--replicas", default="1,2", show_default=True, help="Replica counts.")
@click.option("--nodes", default="1,2,4", show_default=True,
              help="Simulated Ray node counts (ray.cluster_utils.Cluster).")
@click.option("--cpus-per-node", default=1, show_default=True, help="CPUs of a simulated node.")
@click.option("--seconds", default=5.0, show_default=True,
              help="Seconds per concurrency level.")
@click.option("--concurrency", default="1,8,32", show_default=True,
              help="Concurrent single-query client counts.")
@click.option("--full", is_flag=True,
              help="Every shards x replicas x nodes combination (default: one factor at a time).")
@click.option("--address", default=None,
              help="A real Ray cluster to run on (no simulated nodes; shards and replicas vary).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Bind host of the benchmark's coordinator.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("bench/results/scale"), show_default=True,
              help="Where scale.json, scale.csv and the PNG plots go.")
@click.option("--search-threads", default=0, show_default=True,
              help="hnswlib threads of a replica's batch search (0: its node's CPUs).")
@click.option("--batch-repeats", default=3, show_default=True,
              help="Batch search: best of this many passes.")
@click.option("--seed", default=0, show_default=True, help="Seed of --synthetic data.")
def scale(data: Path | None, synthetic: int, dim: int, n: int | None, queries: int, shards: str,
          replicas: str, nodes: str, cpus_per_node: int, seconds: float, concurrency: str,
          full: bool, address: str | None, host: str, out: Path, search_threads: int,
          batch_repeats: int, seed: int) -> None:
    """Sweep shards, replicas and nodes: build time, batch and concurrent QPS, p50/p99
    latency, recall@10 and memory; writes CSV, JSON and PNG plots to --out."""
    from shardvec.bench.bench_scale import ScaleConfig, parse_ints, run_scale
    from shardvec.bench.query_data import default_data

    try:
        cfg = ScaleConfig(
            data=None if synthetic else (data or default_data()), synthetic=synthetic, dim=dim,
            n=n, queries=queries, shards=parse_ints(shards), replicas=parse_ints(replicas),
            nodes=parse_ints(nodes), cpus_per_node=cpus_per_node, seconds=seconds,
            concurrency=parse_ints(concurrency), full=full, address=address, host=host,
            out=out, search_threads=search_threads, batch_repeats=batch_repeats, seed=seed,
        )  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        run_scale(cfg, log=click.echo)
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None


@bench.command(
    "query",
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_query(args: tuple[str, ...]) -> None:
    """Query path against raw hnswlib, in-process shards and peers: batch and concurrent QPS,
    p50/p99, recall@10; table, JSON and PNG. Options: shardvec bench query --help."""
    from shardvec.bench.bench_query import main as query_main

    sys.exit(query_main(list(args)))


@bench.command()
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="SHARDVEC_SHARED_DATA",
              help="Shared data set directory (default: ../shared/data/pypi-minilm-100k; the "
                   "bundled sample when absent).")
@click.option("--n", default=100_000, show_default=True, help="Rows to load.")
@click.option("--settle", default=5.0, show_default=True,
              help="Seconds of load measured before and after the changes.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("bench/results/reshard.json"), show_default=True)
def reshard(data: Path | None, n: int, settle: float, out: Path) -> None:
    """Online layout changes under a writer, a reader and a counter: 2 -> 4 shards, 1 -> 2
    replicas, 4 -> 2 shards; the read pause at each switch."""
    from shardvec.bench.bench_reshard import run, table

    click.echo(table(run(data, n, settle, out)))
@bench.command(
    "keyword",
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_keyword(args: tuple[str, ...]) -> None:
    """Keyword and hybrid search: QPS single and batch at 1 and 4 shards against one FTS5
    table, overlap@10, rare-token recall@10. Options: shardvec bench keyword --help."""
    from shardvec.bench.keyword import main as keyword_main

    sys.exit(keyword_main(list(args)))


@bench.command("fronts")
@click.option("--nodes", default="1,2,4", show_default=True, help="Simulated node counts.")
@click.option("--qps", default=120.0, show_default=True, help="Offered load, over the fronts.")
@click.option("--seconds", default=8.0, show_default=True, help="Measured window per point.")
@click.option("--cap-clients", default=8, show_default=True,
              help="Closed-loop clients for the cap of one front (0: not measured).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Where to write the JSON (default bench/results/fronts.json).")
def bench_fronts(nodes: str, qps: float, seconds: float, cap_clients: int,
                 json_path: Path | None) -> None:
    """Query fronts (issue 16): CPU per query of each front at 1, 2 and 4 simulated nodes
    under a fixed offered load, and the cap of one front against the coordinator."""
    from shardvec.bench.fronts import main as fronts_main

    argv = ["--nodes", nodes, "--qps", str(qps), "--seconds", str(seconds),
            "--cap-clients", str(cap_clients)]
    if json_path is not None:
        argv += ["--json", str(json_path)]
    sys.exit(fronts_main(argv))
