"""Every module, folder and dotted name the docs and docstrings cite exists.

Docs drift when code moves: a design note pointing at `coordinator/routing.py` after the module
went sends a reader nowhere. This reads README.md, BENCHMARKS.md, docs/*.md and the docstrings
and comments of every source and test file, and fails on a path (`coordinator/writes/atomic.py`,
`coordinator/fronts/`) or a dotted name (`shardvec.coordinator.layout`) that names
nothing in the tree.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOPS = ("cluster", "coordinator", "shard", "bench", "proto", "tests", "deploy", "docs")
PATH = re.compile(
    r"(?<![\w./-])((?:" + "|".join(TOPS) + r")/(?:[\w.-]+/)*"
    r"(?:[\w-]+\.(?:py|proto|md|yaml|sh)|[\w-]+/))"
)
PLACEHOLDER = re.compile(r"[A-Z]{2,}")  # bench/NAME.py: a pattern, not a file
DOTTED = re.compile(r"(?<![\w.])(shardvec\.(?:cluster|coordinator|shard|bench|contract)(?:\.\w+)+)")


def _texts() -> dict[Path, str]:
    files = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
    for top in ("cluster", "coordinator", "shard", "bench", "tests", "proto/shardvec/contract"):
        files += sorted((REPO / top).rglob("*.py"))
    return {f: f.read_text(encoding="utf-8") for f in files if f.is_file() and f != Path(__file__)}


def _cited_paths(text: str) -> set[str]:
    """Paths in `text` (docs/ only as its .md files: "docs/shard-0/" is a collection's)."""
    return {
        m for m in PATH.findall(text)
        if not PLACEHOLDER.search(m) and (not m.startswith("docs/") or m.endswith(".md"))
    }  # fmt: skip


def _dotted_exists(name: str) -> bool:
    parts = name.split(".")[1:]
    roots = {"contract": REPO / "proto" / "shardvec" / "contract"}
    base = roots.get(parts[0], REPO / parts[0])
    path = base
    for i, part in enumerate(parts[1:], start=1):
        if (path / part).is_dir():
            path = path / part
            continue
        if (path / f"{part}.py").is_file():
            return True  # a module; what follows is a name in it
        return i > 1  # a name in the package's __init__, or nothing
    return True


def test_every_cited_path_exists() -> None:
    missing = sorted(
        f"{f.relative_to(REPO)}: {m}"
        for f, text in _texts().items()
        for m in _cited_paths(text)
        if not (REPO / m).exists() and not (REPO / "proto" / m).exists()
    )
    assert missing == []


def test_every_cited_dotted_module_exists() -> None:
    missing = sorted(
        f"{f.relative_to(REPO)}: {m}"
        for f, text in _texts().items()
        for m in set(DOTTED.findall(text))
        if not _dotted_exists(m)
    )
    assert missing == []


def test_the_checker_sees_a_stale_name() -> None:
    assert _cited_paths("see coordinator/routing.py, coordinator/fronts/, bench/NAME.py") == {
        "coordinator/routing.py", "coordinator/fronts/"
    }
    assert not (REPO / "coordinator/routing.py").exists()
    assert not _dotted_exists("shardvec.coordinator.routing")
    assert _dotted_exists("shardvec.coordinator.layout.Layout")
