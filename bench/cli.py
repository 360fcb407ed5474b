"""`shardvec bench NAME`: every benchmark is a command here, registered with the `shardvec` CLI
through the `shardvec.cli` entry point (pyproject.toml), so bench/ depends on cluster/ and
never the reverse; `python -m shardvec.bench NAME` runs the same commands.

Command NAME lives in bench/NAME.py (dashes as underscores). `scale` and `reshard` declare
their options here; the others own an argparse parser behind `main(argv)` and get their
arguments as given (`shardvec bench NAME --help` prints them). Every module is imported
only when its command runs: `shardvec bench --help` loads neither Ray nor the data sets.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click

ONE_BLAS_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Benchmark:
    """One `shardvec bench` command whose module parses its own arguments."""

    summary: str
    one_blas_thread: bool = False  # NumPy's BLAS held to one thread in this process

    def module(self, name: str) -> str:
        return "shardvec.bench." + name.replace("-", "_")


# By what a user does (BENCHMARKS.md has the same sections): load, search, text, keywords,
# scale, operate. `scale` and `reshard` are declared below with their options.
REGISTRY: dict[str, Benchmark] = {
    # load
    "ingest": Benchmark("Durable ingest through `shardvec up`: bulk and small concurrent "
                        "writes, this tree against a reference tree."),
    "scroll": Benchmark("Paging and bulk data: scroll and export rows/s, Ray Data ingest with "
                        "1, 2 and 4 writers against `shardvec load`."),
    # search
    "engine": Benchmark("One shard replica against raw hnswlib: ingest, memory, batch and "
                        "filtered search, recall@10."),
    "rowmem": Benchmark("Memory per row of one replica, part by part, against raw hnswlib in "
                        "the same run; exact and filtered single-query times over it."),
    "payload-memory": Benchmark("Memory per row of one replica with metadata and documents "
                                "in memory against payload_on_disk, and search p50 both ways."),
    "planner": Benchmark("What each filtered-search plan costs by shard size and selectivity, "
                         "and what the planner picks."),
    "where-document": Benchmark("What a where_document filter costs on one replica: the "
                                "in-memory scan against SQL instr()."),
    "query": Benchmark("Query path against raw hnswlib, in-process shards and peers: batch and "
                       "concurrent QPS, p50/p99, recall@10; table, JSON and PNG."),
    "process-model": Benchmark("What the process model costs a single query: a process per "
                               "shard against a process per node."),
    "costs": Benchmark("Per-part costs for the cost model (docs/cost-model.md): search, shard "
                       "RPC and coordinator steps."),
    "cost-model": Benchmark("The cost model's predictions for large collections, from costs.json "
                            "and scale/scale.json (extrapolated, not measured)."),
    "load": Benchmark("Load test: concurrent clients doing mixed search and upsert; latency, "
                      "errors and memory growth."),
    "features": Benchmark("Group-by (10 x 3) and MMR (k=10 of 100) against a plain search of "
                          "the same k, and facets over the shared set, on a real cluster."),
    "facets": Benchmark("Facets over a million rows on a real cluster, checked against NumPy's "
                        "counts, against a plain search in the same run."),
    # text
    "embed": Benchmark("Text in: embedding throughput (in process, one actor, the pool) and "
                       "text-query latency.", one_blas_thread=True),
    # keywords
    "keyword": Benchmark("Keyword and hybrid search: QPS single and batch at 1 and 4 shards "
                         "against one FTS5 table, overlap@10, rare-token recall@10."),
    "rare-tokens": Benchmark("Make the labelled rare-token queries of `keyword` "
                             "(bench/data/rare_token_queries.jsonl)."),
    # scale
    "rows": Benchmark("A million rows through the public API against raw hnswlib in one run: "
                      "ingest, recall and QPS by ef, p50s, memory and disk per row, restart."),
    "fronts": Benchmark("Query fronts: CPU per query of each front at 1, 2 and 4 simulated "
                        "nodes, and the cap of one front."),
    # operate
    "replicas": Benchmark("Replica recovery: time for a kill -9'd replica to rejoin, and "
                          "queries failed meanwhile."),
    "replica-changes": Benchmark("Replica changes: 1 -> 2 replicas and back under a reader and "
                                 "a writer; rows copied per second."),
    "checksum": Benchmark("What row checksums cost: store writes with and without them, the "
                          "checksum alone, Get, the scrub."),
    "sweep": Benchmark("Expiry on one replica: search p50 with rows expiring, expired and "
                       "while the sweep runs, against a plain search; the sweep's rows/s."),
}


@click.group()
def bench() -> None:
    """Benchmarks: load, search, text, keywords, scale and operate (BENCHMARKS.md)."""


def _run(name: str, spec: Benchmark, args: list[str], *, help_only: bool = False) -> int:
    unset = any(os.environ.get(k) != v for k, v in ONE_BLAS_THREAD.items())
    if spec.one_blas_thread and unset and not help_only:
        if "numpy" in sys.modules:  # its BLAS already started: run in a fresh process
            env = {**os.environ, **ONE_BLAS_THREAD}
            cmd = [sys.executable, "-m", "shardvec.bench", name, *args]
            return subprocess.run(cmd, env=env, check=False).returncode
        os.environ.update(ONE_BLAS_THREAD)
    main = importlib.import_module(spec.module(name)).main
    from shardvec.bench.datasets import MissingData

    try:
        return int(main(args))
    except MissingData as exc:  # a plain message naming --data, not a traceback
        click.echo(f"shardvec bench {name}: {exc}", err=True)
        return 2


def _add(name: str, spec: Benchmark) -> None:
    @bench.command(
        name,
        help=spec.summary,
        short_help=spec.summary,
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_context
    def command(ctx: click.Context, args: tuple[str, ...]) -> None:
        help_only = bool(set(args) & {"-h", "--help"})
        if help_only:  # click's usage line, then the module's options
            click.echo(ctx.get_help() + "\n")
        sys.exit(_run(name, spec, list(args), help_only=help_only))


for _name, _spec in REGISTRY.items():
    _add(_name, _spec)


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
              default=None,
              help="Where scale.json, scale.csv and the PNG plots go "
                   "(default bench/results/scale).")
@click.option("--search-threads", default=0, show_default=True,
              help="hnswlib threads of a replica's batch search (0: its node's CPUs).")
@click.option("--batch-repeats", default=3, show_default=True,
              help="Batch search: best of this many passes.")
@click.option("--seed", default=0, show_default=True, help="Seed of --synthetic data.")
@click.option("--plan", is_flag=True, help="Print the sweep's points, one a line, and exit.")
def scale(data: Path | None, synthetic: int, dim: int, n: int | None, queries: int, shards: str,
          replicas: str, nodes: str, cpus_per_node: int, seconds: float, concurrency: str,
          full: bool, address: str | None, host: str, out: Path | None, search_threads: int,
          batch_repeats: int, seed: int, plan: bool) -> None:
    """Sweep shards, replicas and nodes: build time, batch and concurrent QPS, p50/p99
    latency, recall@10 and memory; writes CSV, JSON and PNG plots to --out."""
    from shardvec.bench.datasets import default_data
    from shardvec.bench.results import RESULTS
    from shardvec.bench.scale import ScaleConfig, parse_ints, run_scale, sweep_points

    try:
        cfg = ScaleConfig(
            data=None if synthetic else (data or default_data()), synthetic=synthetic, dim=dim,
            n=n, queries=queries, shards=parse_ints(shards), replicas=parse_ints(replicas),
            nodes=parse_ints(nodes), cpus_per_node=cpus_per_node, seconds=seconds,
            concurrency=parse_ints(concurrency), full=full, address=address, host=host,
            out=out or RESULTS / "scale", search_threads=search_threads,
            batch_repeats=batch_repeats, seed=seed,
        )  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if plan:
        for point in sweep_points(cfg):
            click.echo(point.label)
        return
    try:
        run_scale(cfg, log=click.echo)
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None


@bench.command()
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="SHARDVEC_SHARED_DATA",
              help="Shared data set directory (default: ../shared/data/pypi-minilm-100k; the "
                   "bundled sample when absent).")
@click.option("--n", default=100_000, show_default=True, help="Rows to load.")
@click.option("--settle", default=5.0, show_default=True,
              help="Seconds of load measured before and after the changes.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON path (default bench/results/reshard.json).")
def reshard(data: Path | None, n: int, settle: float, out: Path | None) -> None:
    """Online layout changes under a writer, a reader and a counter: 2 -> 4 shards, 1 -> 2
    replicas, 4 -> 2 shards; the read pause at each switch."""
    from shardvec.bench.reshard import run, table

    click.echo(table(run(data, n, settle, out)))
