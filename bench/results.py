"""The one results writer: each benchmark's JSON goes to bench/results/NAME.json (or --out),
and its table is printed the same way."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def results_path(name: str) -> Path:
    """Where benchmark `name` writes its JSON by default."""
    return RESULTS / f"{name}.json"


def write_results(name: str, result: Mapping[str, Any], out: Path | None = None) -> Path:
    """Write `result` as indented JSON to `out` (default bench/results/NAME.json); say where."""
    path = out if out is not None else results_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a file
    print(f"wrote {path}", flush=True)
    return path


def format_table(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None) -> str:
    """Rows as aligned columns: the first left-aligned, the others right-aligned."""
    cells = [[str(c) for c in r] for r in ([header] if header else []) + list(rows)]
    if not cells:
        return ""
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(max(map(len, cells)))]
    lines = [
        "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
        for r in cells
    ]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_table(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None) -> None:
    print(format_table(rows, header), flush=True)
