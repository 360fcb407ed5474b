"""The `shardvec` command line: bring a cluster up, manage collections, load and query.

The group, its context and the commands of no family; each family of commands lives in its
own module (`*_command(s).py` beside this one) and is registered here."""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click

from shardvec.cluster.alias_commands import alias, reembed
from shardvec.cluster.client import DEFAULT_ADDRESS, Client
from shardvec.cluster.collection_commands import create, drop, load
from shardvec.cluster.data_commands import export, import_
from shardvec.cluster.ops_commands import rebalance, recall, scale, snapshot
from shardvec.cluster.query_commands import query
from shardvec.cluster.row_commands import add, count, delete, get, update
from shardvec.cluster.status_commands import fronts, status
from shardvec.cluster.up_command import up

PLUGIN_GROUP = "shardvec.cli"
SERVER_HELP = "Address of the shardvec server (host:port)."


class _Context:
    def __init__(self, server: str, api_key: str | None) -> None:
        self.server = server
        self.api_key = api_key

    def client(self) -> Client:
        return Client(self.server, api_key=self.api_key)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shardvec", prog_name="shardvec")
@click.option(
    "--server",
    envvar="SHARDVEC_SERVER",
    default=DEFAULT_ADDRESS,
    show_default=True,
    help=SERVER_HELP + " Env: SHARDVEC_SERVER.",
)
@click.option(
    "--api-key",
    envvar="SHARDVEC_API_KEY",
    default=None,
    help="API key sent as x-api-key metadata. Env: SHARDVEC_API_KEY.",
)
@click.pass_context
def cli(ctx: click.Context, server: str, api_key: str | None) -> None:
    """shardvec: a distributed, sharded vector search cluster on Ray."""
    ctx.obj = _Context(server, api_key)


@cli.command()
@click.option("--data-dir", default=None, help="Data directory (default: a temporary one).")
@click.option("--shards", default=2, show_default=True, type=int)
def demo(data_dir: str | None, shards: int) -> None:
    """Local cluster on embedded Ray: load the bundled sample, query it, measure recall."""
    from shardvec.cluster.demo import run_demo

    run_demo(data_dir, shards)


@cli.command()
@click.option(
    "--mode",
    type=click.Choice(["replica", "coordinator", "cluster", "front", "scale", "all"]),
    default="replica",
    show_default=True,
    help="What to kill -9: a random replica, the coordinator, or the whole cluster; scale: "
    "change the shard count up and down and kill a replica or the coordinator meanwhile.",
)
@click.option("--seconds", default=60.0, show_default=True, help="How long to keep killing.")
@click.option("--interval", default=3.0, show_default=True, help="Mean seconds between kills.")
@click.option("--shards", default=2, show_default=True)
@click.option("--replicas", default=2, show_default=True)
@click.option("--batch", default=20, show_default=True, help="Rows per upsert batch.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the figures as JSON here.",
)
def crasher(
    mode: str,
    seconds: float,
    interval: float,
    shards: int,
    replicas: int,
    batch: int,
    seed: int,
    json_out: Path | None,
) -> None:
    """Kill -9 parts of a live cluster under writes and reads; verify nothing was lost."""
    from shardvec.cluster.crasher import MODES, Crasher, format_report

    reports = []
    for m in MODES if mode == "all" else (mode,):
        click.echo(f"== crasher mode {m}: {seconds:.0f} s, a kill every ~{interval:.1f} s")
        rep = Crasher(
            m,
            seconds=seconds,
            interval=interval,
            shards=shards,
            replicas=replicas,
            batch=batch,
            seed=seed,
            log=click.echo,
        ).run()
        click.echo(format_report(rep))
        reports.append(rep)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps([r.to_dict() for r in reports], indent=2))
    if not all(r.ok for r in reports):
        click.echo("crasher: FAILED", err=True)
        sys.exit(1)
    click.echo("crasher: every acknowledged write survived")


cli.add_command(up)
cli.add_command(fronts)
cli.add_command(status)
cli.add_command(create)
cli.add_command(drop)
cli.add_command(load)
cli.add_command(query)
cli.add_command(add)
cli.add_command(get)
cli.add_command(count)
cli.add_command(delete)
cli.add_command(update)
cli.add_command(snapshot)
cli.add_command(recall)
cli.add_command(scale)
cli.add_command(rebalance)
cli.add_command(export)
cli.add_command(import_)
cli.add_command(alias)
cli.add_command(reembed)


def _add_plugin_commands() -> None:
    """Commands other packages register under the `shardvec.cli` entry point group, such as
    `shardvec bench` (bench/cli.py): they depend on the CLI, the CLI never imports them."""
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            command = ep.load()
        except ImportError as exc:  # a plugin whose package is not installed here
            click.echo(f"shardvec: skipping command {ep.name!r}: {exc}", err=True)
            continue
        cli.add_command(command, ep.name)


_add_plugin_commands()


def main() -> None:
    cli(prog_name="shardvec")
