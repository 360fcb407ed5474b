"""Every benchmark is a `shardvec bench` command with working help: each module of bench/
that is not a shared helper (datasets, measure, results, cli) nor a part of another
benchmark (NAME_part.py beside NAME.py) must be listed by `shardvec bench --help`. A package of
bench/ is a part, never a command: PACKAGES names the benchmark each one serves."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from shardvec.cluster.cli import cli

BENCH = Path(__file__).resolve().parents[2] / "bench"
HELPERS = {"__init__", "__main__", "cli", "datasets", "measure", "results"}
PACKAGES = {"peers": "query"}  # run by `query --peers` in the peers' interpreter


def _benchmarks() -> list[str]:
    stems = {p.stem for p in BENCH.glob("*.py")} - HELPERS
    parts = {s for s in stems if any(s.startswith(f"{o}_") for o in stems if o != s)}
    return sorted(s.replace("_", "-") for s in stems - parts)


def test_bench_help_lists_every_benchmark() -> None:
    result = CliRunner().invoke(cli, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines()
              if line.startswith("  ") and not line.startswith("   ")}  # fmt: skip
    assert set(_benchmarks()) == listed
    assert {"engine", "query", "scale", "reshard", "keyword", "embed"} <= listed


def test_every_bench_package_is_a_part_of_a_benchmark() -> None:
    assert {p.parent.name for p in BENCH.glob("*/__init__.py")} == set(PACKAGES)
    assert set(PACKAGES.values()) <= set(_benchmarks())


@pytest.mark.parametrize("name", _benchmarks())
def test_every_benchmark_has_help(name: str) -> None:
    result = CliRunner().invoke(cli, ["bench", name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and f"bench {name}" in result.output
    assert "--out" in result.output or name in ("cost-model", "rare-tokens")
