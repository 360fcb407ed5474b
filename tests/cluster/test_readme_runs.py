"""README.md runs as written: every fenced example, in order, against one real `shardvec up`.

The README's blocks are parsed and run top to bottom. `python` blocks run in one shared
namespace (a later block uses what an earlier one made); `bash` blocks run their `shardvec`
commands against the same server (the first through the installed `shardvec`, the others
through its command group in this process); `text` blocks are
pictures and listings, not run. A block is left out only through a visible marker on the line
right before it, `<!-- readme: not run: REASON -->`, and the test holds the number of those
small. The one `shardvec up` block is marked `<!-- readme: server -->`: the test starts that
command itself (its options as written, on a free port, with a scratch data directory), so a
stale option of `up` fails here too, and what it printed at start must be the `# ->` lines
shown under it (paths aside).

The README's address is `127.0.0.1:50051`, `shardvec up`'s default; the test's server listens
on a free port, so python blocks have that address (and `port=50051`) replaced by the real
one, and commands get it through SHARDVEC_SERVER. Files the README names are relative to the
repository root: the commands run in a scratch directory holding a link to `cluster/`, so
what they write (exports, snapshots) stays out of the tree. A `print(...)` line that ends
with `# -> TEXT` promises output: TEXT must appear in what that block printed.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from shardvec.cluster.cli import cli
from shardvec.cluster.process import ServerProcess, free_port

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
ADDRESS = "127.0.0.1:50051"
FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!-- readme: (server|not run: (.+?)) -->$")
SHARDVEC = Path(sys.executable).with_name("shardvec")  # the venv's entry point
MAX_NOT_RUN = 4  # the set-up commands, a remote Ray cluster, Ray Data in the client


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    body: str
    marker: str  # "", "server" or "not run: REASON"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of `text`, each with the marker on the line before its fence."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"README.md:{start + 1}: a fence that is never closed"
        prev = lines[start - 1].strip() if start > 0 else ""
        mm = MARKER.match(prev)
        blocks.append(Block(start + 1, m.group(1), "\n".join(body) + "\n",
                            mm.group(1) if mm else ""))
        i += 1
    return blocks


def commands(body: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments dropped."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out


def test_the_parser_sees_markers_fences_and_continuations() -> None:
    text = ("intro\n<!-- readme: not run: set-up command -->\n```bash\nmake demo\n```\n"
            "```python\nx = 1  # -> 1\n```\n```bash\nshardvec load d \\\n  --vectors v.npy"
            "  # a comment\nshardvec status\n```\n")
    blocks = readme_blocks(text)
    assert [(b.lang, b.marker) for b in blocks] == [
        ("bash", "not run: set-up command"), ("python", ""), ("bash", "")]
    assert commands(blocks[2].body) == [["shardvec", "load", "d", "--vectors", "v.npy"],
                                        ["shardvec", "status"]]


def test_every_block_has_a_known_language_and_few_are_left_out() -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert {b.lang for b in blocks} <= {"python", "bash", "text"}, [
        (b.line, b.lang) for b in blocks if b.lang not in {"python", "bash", "text"}]
    servers = [b for b in blocks if b.marker == "server"]
    assert len(servers) == 1 and servers[0].lang == "bash"
    after = "\n".join(README.read_text(encoding="utf-8").splitlines()[servers[0].line:][:20])
    assert "second terminal" in after, "say that `shardvec up` holds its terminal"
    not_run = [(b.line, b.marker) for b in blocks if b.marker.startswith("not run")]
    assert 0 < len(not_run) <= MAX_NOT_RUN, not_run
    assert all(len(reason) > len("not run: ") + 8 for _, reason in not_run), not_run
    for b in blocks:  # a text block is a picture or a listing, never a hidden command
        if b.lang == "text":
            assert not re.search(r"^\s*(\$ )?(shardvec|make|pip) ", b.body, re.M), b.line
        elif b.lang == "python" and b.marker:  # not run, but still Python
            compile(b.body, f"{README}:{b.line}", "exec")


def _start_server(block: Block, data_dir: Path, log_dir: Path) -> ServerProcess:
    (words,) = commands(block.body)
    assert words[:2] == ["shardvec", "up"], f"README.md:{block.line}: {words}"
    extra = list(words[2:])
    if "--data-dir" in extra:  # the test's own scratch directory instead
        at = extra.index("--data-dir")
        del extra[at:at + 2]
    assert "--port" not in extra, "the README's server uses the default port"
    return ServerProcess(data_dir, free_port(), *extra, log_dir=log_dir)


def _plain(line: str) -> str:
    """A line of `shardvec up`'s banner without what differs between runs."""
    return re.sub(r"\(data in [^)]*\)", "(data in DIR)", line.rstrip())


def _run_bash(block: Block, server: ServerProcess, cwd: Path, took: list[str]) -> None:
    """Each command through the `shardvec` command group in this process (click's runner, the
    server's address in SHARDVEC_SERVER, in `cwd`): the same code as the installed entry
    point without a Python start per command, about a second each of 30-odd commands. The
    first command of the README goes through the installed entry point itself."""
    env = {"SHARDVEC_SERVER": server.address, "PYTHONUNBUFFERED": "1"}
    assert Path.cwd() == cwd
    for words in commands(block.body):
        assert words[0] == "shardvec", (
            f"README.md:{block.line}: {shlex.join(words)!r} is not a shardvec command: run it "
            "with shardvec, or mark the block <!-- readme: not run: REASON -->")
        t = time.monotonic()
        if not any(line.startswith("  ") for line in took):  # the first command: the entry
            # point itself works
            r = subprocess.run([str(SHARDVEC), *words[1:]], cwd=cwd, env={**os.environ, **env},
                               capture_output=True, text=True, timeout=180)
            code, stdout, stderr = r.returncode, r.stdout, r.stderr
        else:
            res = CliRunner().invoke(cli, words[1:], env=env)
            code, stdout, stderr = res.exit_code, res.stdout, res.stderr
            if res.exception is not None and not isinstance(res.exception, SystemExit):
                stderr += "".join(traceback.format_exception(res.exception))
        took.append(f"  {shlex.join(words[:3])} {time.monotonic() - t:.1f} s")
        assert code == 0, (
            f"README.md:{block.line}: {shlex.join(words)} exited {code}\n"
            f"{stdout[-2000:]}\n{stderr[-3000:]}")


def _run_python(block: Block, server: ServerProcess, ns: dict[str, Any]) -> None:
    port = server.address.rsplit(":", 1)[1]
    src = block.body.replace(f'"{ADDRESS}"', f'"{server.address}"')
    src = src.replace("port=50051", f"port={port}")
    assert "50051" not in src, f"README.md:{block.line}: an address the test cannot redirect"
    code = compile("\n" * (block.line) + src, str(README), "exec")  # README's line numbers
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, ns)
    printed = out.getvalue()
    for expected in re.findall(r"^\s*print\(.*#\s*->\s*(.+?)\s*$", block.body, re.M):
        assert expected in printed, (
            f"README.md:{block.line}: promised {expected!r}, printed:\n{printed[-2000:]}")


def test_the_readme_runs_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert SHARDVEC.exists(), f"no shardvec entry point beside {sys.executable}"
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "cluster").symlink_to(REPO / "cluster")  # the sample files, read only
    monkeypatch.chdir(work)
    server_blocks = [b for b in blocks if b.marker == "server"]
    before = [b for b in blocks[:blocks.index(server_blocks[0])] if b.lang != "text"]
    assert all(b.marker for b in before), "an example runs before the README starts a server"
    server = _start_server(server_blocks[0], tmp_path / "data", tmp_path)
    promised = re.findall(r"^# -> (.*)$", server_blocks[0].body, re.M)
    assert [_plain(line) for line in server.banner] == [
        _plain(line.replace(ADDRESS, server.address)) for line in promised]
    ns: dict[str, Any] = {"__name__": "readme"}
    ran = 0
    took: list[str] = []  # printed with -s: where the time goes
    t0 = time.monotonic()
    try:
        for b in blocks:
            if b.marker or b.lang == "text":
                continue
            t = time.monotonic()
            if b.lang == "bash":
                _run_bash(b, server, work, took)
            else:
                _run_python(b, server, ns)
            ran += 1
            took.append(f"README.md:{b.line} {b.lang} {time.monotonic() - t:.1f} s")
    except BaseException:
        print(f"shardvec up's log ({server.log}):\n{server.log.read_text()[-4000:]}")
        raise
    finally:
        client = ns.get("client")
        with contextlib.suppress(Exception):
            client.close()
        server.stop()
        print("\n".join(took))
    assert ran >= 15, f"only {ran} blocks ran"
    print(f"{ran} README blocks in {time.monotonic() - t0:.1f} s")


def test_the_cli_table_names_every_benchmark() -> None:
    """The README's `shardvec bench` row lists every benchmark command (the top-level commands
    are compared in tests/unit/test_cli_help.py)."""
    bench = cli.commands["bench"]
    assert isinstance(bench, click.Group)
    row = next(line for line in README.read_text(encoding="utf-8").splitlines()
               if line.startswith("| `shardvec bench NAME`"))
    listed = set(re.findall(r"`([a-z][\w-]*)`", row.split("|")[2]))
    assert listed == set(bench.commands), listed ^ set(bench.commands)


def test_the_api_table_names_every_rpc() -> None:
    """Every RPC of shardvec.v1.VectorSearch has its row in the README's API table."""
    from shardvec.v1 import vector_search_pb2

    rpcs = set(vector_search_pb2.DESCRIPTOR.services_by_name["VectorSearch"].methods_by_name)
    text = README.read_text(encoding="utf-8")
    table = text.split("## API: gRPC and the Python client", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([A-Z]\w+)` \|", table, flags=re.M))
    assert listed == rpcs, listed ^ rpcs
