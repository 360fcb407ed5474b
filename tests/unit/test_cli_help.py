"""Every CLI command has help (sqlite-utils' test_docs idea)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from shardvec.cluster.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, (*prefix, name)))
    return out


@pytest.mark.parametrize("path", _commands(cli))
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    cmd: click.Command = cli
    for part in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[part]
    assert cmd.help, f"{' '.join(path)} has no help text"


def test_core_commands_exist() -> None:
    assert {"up", "status", "create", "load", "query", "drop", "demo"} <= set(cli.commands)


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and version("shardvec") in result.output


def test_the_common_errors_come_with_a_hint() -> None:
    from shardvec.cluster.hints import hint
    from shardvec.contract.errors import NotFound, Unauthenticated, Unavailable

    no_server = Unavailable("failed to connect to all addresses; last error: ...")
    assert "shardvec up" in hint(no_server) and "another terminal" in hint(no_server)
    assert "--api-key" in hint(Unauthenticated("missing API key"))
    assert "shardvec status" in hint(NotFound("collection 'x' does not exist"))
    assert hint(NotFound("ids[0]: 'a' not found")) == ""


def test_the_everyday_row_commands_exist() -> None:
    assert {"add", "get", "count", "delete", "update"} <= set(cli.commands)


def test_the_readme_cli_table_lists_every_command_and_no_other() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## CLI", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `shardvec ([a-z][\w-]*)", table, flags=re.M))
    assert listed == set(cli.commands), (listed ^ set(cli.commands))
