"""Facets over a million rows on a real cluster (embedded Ray, gRPC on loopback), each checked
against counts made in NumPy from the rows loaded, and timed against a plain search k=10 of the
same collection in the same run.

A facet reads only the filter columns (metadata), never the vectors, so the rows carry small
vectors (--dim, default 8) to keep the load short; the metadata is what a search page facets:

- `month`: 12 values, skewed (the first month 4x as frequent as the last);
- `popular`: a boolean, true for 2% of rows (the filter of a narrow facet);
- `tags`: a list of 1 to 3 of 20 tags (a list's elements are counted);
- `stars`: an integer in [0, 50).

Single: one client, one call at a time, for --seconds each, p50 and QPS. Prints a table and
writes bench/results/facets.json.

    shardvec bench facets [--rows 1000000] [--shards 4] [--dim 8] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.features import _single
from shardvec.bench.results import print_table, write_results
from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client, Collection

MONTHS = [f"2026-{m:02d}" for m in range(1, 13)]
TAGS = [f"tag{t:02d}" for t in range(20)]
BATCH = 5000


def rows(n: int, seed: int = 7) -> dict[str, Any]:
    """The metadata columns of `n` rows, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    weights = np.linspace(4.0, 1.0, len(MONTHS))
    month = rng.choice(len(MONTHS), size=n, p=weights / weights.sum())
    popular = rng.random(n) < 0.02
    n_tags = rng.integers(1, 4, size=n)
    tags = [rng.choice(len(TAGS), size=int(c), replace=False) for c in n_tags]
    stars = rng.integers(0, 50, size=n)
    return {"month": month, "popular": popular, "tags": tags, "stars": stars}


def _meta(cols: dict[str, Any], i: int) -> dict[str, Any]:
    return {
        "month": MONTHS[int(cols["month"][i])],
        "popular": bool(cols["popular"][i]),
        "tags": [TAGS[int(t)] for t in cols["tags"][i]],
        "stars": int(cols["stars"][i]),
    }


def expected(cols: dict[str, Any]) -> dict[str, dict[Any, int]]:
    """Every value's exact count for each measured facet, counted in NumPy."""
    month, popular = cols["month"], cols["popular"]

    def named(names: list[Any], counts: np.ndarray) -> dict[Any, int]:
        return {names[i]: int(c) for i, c in enumerate(counts) if c}

    return {
        "month": named(MONTHS, np.bincount(month, minlength=12)),
        "month_popular": named(MONTHS, np.bincount(month[popular], minlength=12)),
        "tags": named(TAGS, np.bincount(np.concatenate(cols["tags"]), minlength=len(TAGS))),
        "stars": named(list(range(50)), np.bincount(cols["stars"], minlength=50)),
    }


def exact(got: list[tuple[Any, int]], counts: dict[Any, int], limit: int) -> bool:
    """`got` is a correct answer: each value with its true count, and the counts the `limit`
    largest (values of equal count may come in any order)."""
    top = sorted(counts.values(), reverse=True)[:limit]
    return [c for _, c in got] == top and all(counts.get(v) == c for v, c in got)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    n, dim = args.rows, args.dim
    cols = rows(n)
    want = expected(cols)
    rng = np.random.default_rng(11)
    queries = rng.standard_normal((100, dim)).astype(np.float32)
    result: dict[str, Any] = {"rows": n, "dim": dim, "shards": args.shards, "limit": args.limit}
    with tempfile.TemporaryDirectory() as tmp, ShardvecCluster(
        {"data_dir": tmp, "port": 0}, num_cpus=args.cpus
    ) as cluster, Client(cluster.address, timeout=600) as client:
        col: Collection = client.create_collection("facets", dim, "cosine", args.shards)
        t = time.perf_counter()
        for b in range(0, n, BATCH):
            ids = [str(i) for i in range(b, min(n, b + BATCH))]
            vecs = rng.standard_normal((len(ids), dim)).astype(np.float32)
            col.upsert(ids, vecs, [_meta(cols, i) for i in range(b, b + len(ids))],
                       batch_size=BATCH)  # fmt: skip
        result["load_s"] = time.perf_counter() - t
        log(f"loaded {n} rows into {args.shards} shards in {result['load_s']:.0f} s")
        calls: dict[str, Callable[[], list[tuple[Any, int]]]] = {
            "month": lambda: col.facet("month", limit=args.limit),
            "month_popular": lambda: col.facet("month", where={"popular": True},
                                               limit=args.limit),
            "tags": lambda: col.facet("tags", limit=args.limit),
            "stars": lambda: col.facet("stars", limit=args.limit),
        }
        result["exact"] = {}
        for key, call in calls.items():
            result["exact"][key] = exact(call(), want[key], args.limit)
        result["load_average_before"] = os.getloadavg()
        single = {"plain_k10": _single(lambda i: col.search(
            queries[i % 100 : i % 100 + 1], k=10, include_metadata=False), 100, args.seconds)}
        for key, call in calls.items():
            single[f"facet_{key}"] = _single(_ignoring_index(call), 100, args.seconds)
        result["single"] = single
        result["load_average_after"] = os.getloadavg()
    return result


def _ignoring_index(call: Callable[[], Any]) -> Callable[[int], Any]:
    return lambda i: call()


LABELS = (
    ("plain_k10", "search k=10 (reference)"),
    ("facet_month", "facet month (12 values), every row"),
    ("facet_month_popular", "facet month where popular (2%)"),
    ("facet_tags", "facet tags (list of 1-3 of 20)"),
    ("facet_stars", "facet stars (50 integers)"),
)


def report(result: dict[str, Any]) -> None:
    s = result["single"]
    table = []
    for key, label in LABELS:
        m = s[key]
        ratio = "" if key == "plain_k10" else f"{m['p50_ms'] / s['plain_k10']['p50_ms']:.1f}x"
        exact = "" if key == "plain_k10" else ("yes" if result["exact"][key[6:]] else "NO")
        table.append((label, f"{m['qps']:.1f}", f"{m['p50_ms']:.1f}", f"{m['p99_ms']:.1f}",
                      ratio, exact))  # fmt: skip
    print(f"\n{result['rows']:,} rows (dim {result['dim']}), {result['shards']} shards, "
          f"loaded in {result['load_s']:.0f} s")
    print_table(table, ("one call at a time", "QPS", "p50 ms", "p99 ms", "p50 vs search",
                        "counts exact"))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="shardvec bench facets",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--rows", type=int, default=1_000_000, help="rows to load")
    p.add_argument("--dim", type=int, default=8, help="dimension of the (random) vectors")
    p.add_argument("--shards", type=int, default=4, help="shards of the collection")
    p.add_argument("--limit", type=int, default=10, help="values a facet returns")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per measured call kind")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the embedded Ray")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/facets.json)")
    args = p.parse_args(argv)
    result = run(args)
    report(result)
    write_results("facets", result, args.out)
    return 0 if all(result["exact"].values()) else 1
