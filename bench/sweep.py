"""What expiry costs one shard replica (the engine in process, on a clock the benchmark
moves, so nothing waits for real time), each figure against the same engine's plain search:

- search p50 (k=10, HNSW, one query per call) with --expiring of the rows holding an
  expiry not yet due (the check that costs nothing), and with those rows expired, awaiting
  the sweep (every read masks them), each phase against an engine of the same rows with no
  expiry, the two searched in turn query by query (so both see the same machine load);
- the same search while the background sweep (shard/sweep.py) removes them at its rate
  (--rate rows/s, the default sweep_rows_per_s), and the rows/s it kept;
- the sweep unthrottled: rows/s of `ShardEngine.sweep` steps back to back (each a store
  transaction, the index labels, slots, columns and FTS rows freed).

The shared set's first --rows rows (default 100k; random vectors when there is none).
Prints a table and writes bench/results/sweep.json.

    shardvec bench sweep [--rows 100000] [--expiring 0.5] [--rate 1000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import base_rows, default_data, load_vectors
from shardvec.bench.results import print_table, write_results
from shardvec.contract.codec import dumps_json
from shardvec.contract.limits import DEFAULT_SWEEP_ROWS_PER_S, SWEEP_GRACE_S
from shardvec.contract.settings import IndexSettings
from shardvec.contract.shard_requests import row_batch
from shardvec.contract.types import ShardWrite
from shardvec.shard.engine import ShardEngine
from shardvec.shard.sweep import Sweeper

K = 10
BATCH = 5000
T0 = 2_000_000_000.0  # the benchmark clock's start (unix seconds)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _load(data: Path, rows: int, n_queries: int) -> tuple[np.ndarray, np.ndarray, str]:
    if (data / "base.npy").exists():
        n = min(rows, base_rows(data))
        base, queries = load_vectors(data, n, n_queries)
        return base, queries, f"{data.name}, first {n} rows"
    rng = np.random.default_rng(0)
    base = rng.standard_normal((rows, 64)).astype(np.float32)
    return base, rng.standard_normal((n_queries, 64)).astype(np.float32), f"random, {rows} rows"


def _fill(e: ShardEngine, base: np.ndarray, expiring: float) -> int:
    """Every row, one in 1/expiring of them expiring at T0 + 60; returns how many expire."""
    every = max(1, round(1 / expiring)) if expiring else 0
    n, dim = len(base), base.shape[1]
    for seq, start in enumerate(range(0, n, BATCH), start=1):
        stop = min(start + BATCH, n)
        idx = range(start, stop)
        expires = [T0 + 60 if every and i % every == 0 else 0.0 for i in idx]
        w = ShardWrite(ids=[f"r{i}" for i in idx], vectors=base[start:stop],
                       metadata_json=[dumps_json({"i": i}) for i in idx],
                       expires_at=expires if any(expires) else [])  # fmt: skip
        e.stage(seq, row_batch(w, dim, e.settings.metric))
        e.resolve(seq, True)
    return len(range(0, n, every)) if every else 0


def _paired(
    plain: Callable[[int], Any], fn: Callable[[int], Any], n: int, seconds: float
) -> dict[str, float]:
    """p50 of `fn` and of `plain`, called in turn on the same query for `seconds`."""
    plain(0), fn(0)
    took: tuple[list[float], list[float]] = ([], [])
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        for f, out in ((plain, took[0]), (fn, took[1])):
            t = time.perf_counter()
            f(i % n)
            out.append(time.perf_counter() - t)
        i += 1
    return {"p50_ms": 1000 * statistics.median(took[1]),
            "plain_p50_ms": 1000 * statistics.median(took[0]), "calls": i}  # fmt: skip


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    base, q, source = _load(args.data or default_data(), args.rows, args.queries)
    log(f"data: {source}, {len(q)} queries")
    settings = IndexSettings(dim=base.shape[1], metric="cosine")
    result: dict[str, Any] = {"data": source, "rows": len(base), "expiring": args.expiring,
                              "rate": args.rate}  # fmt: skip
    n = len(q)
    result["load_average_before"] = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        clock = Clock()
        plain = ShardEngine(Path(tmp) / "plain", settings, clock=clock, checkpoint_rows=1 << 40)
        _fill(plain, base, 0.0)
        e = ShardEngine(Path(tmp) / "ttl", settings, clock=clock, checkpoint_rows=1 << 40)
        expiring = _fill(e, base, args.expiring)
        result["rows_expiring"] = expiring
        log(f"loaded {len(base)} rows, {expiring} of them expiring")

        def search(i: int) -> Any:
            return e.search(q[i : i + 1], K)

        def _p50(fn: Callable[[int], Any], n: int, seconds: float) -> dict[str, float]:
            return _paired(lambda i: plain.search(q[i : i + 1], K), fn, n, seconds)

        result["not_due"] = _p50(search, n, args.seconds)
        clock.now = T0 + 61  # they all expire: hidden until swept
        result["expired"] = _p50(search, n, args.seconds)
        clock.now += SWEEP_GRACE_S  # the sweep removes a row this long after it expired
        sweeper = Sweeper(e, args.rate)
        t = time.perf_counter()
        sweeper.start()
        result["while_sweeping"] = _p50(search, n, args.seconds)
        sweeper.stop()
        took = time.perf_counter() - t
        result["swept_while_searching"] = e.swept
        result["sweep_rows_per_s_kept"] = e.swept / took
        t = time.perf_counter()
        before = e.swept
        while e.sweep(256):
            pass
        took = time.perf_counter() - t
        result["unthrottled_rows"] = e.swept - before
        result["unthrottled_rows_per_s"] = (e.swept - before) / took if took else 0.0
        result["after_sweep"] = _p50(search, n, args.seconds)
        assert e.info()["expired_rows"] == 0 and e.count() == len(base) - expiring
        e.close()
        plain.close()
    result["load_average_after"] = os.getloadavg()
    return result


def report(result: dict[str, Any]) -> None:
    rows = []
    for key, label in (
        ("not_due", f"{result['rows_expiring']} rows expiring, none due"),
        ("expired", f"{result['rows_expiring']} rows expired, awaiting the sweep"),
        ("while_sweeping", f"while the sweep runs at {result['rate']} rows/s"),
        ("after_sweep", "after the sweep"),
    ):
        m, base = result[key]["p50_ms"], result[key]["plain_p50_ms"]
        rows.append((label, f"{m:.3f}", f"{base:.3f}", f"{m / base:.2f}x"))
    print(f"\n{result['data']}, one replica, search k={K}, one query per call")
    print_table(rows, ("search", "p50 ms", "plain p50 ms", "vs plain"))
    print(f"sweep: {result['sweep_rows_per_s_kept']:.0f} rows/s kept at a {result['rate']} "
          f"rows/s setting; unthrottled {result['unthrottled_rows_per_s']:.0f} rows/s "
          f"({result['unthrottled_rows']} rows)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="shardvec bench sweep",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--data", type=Path, default=None, help="the shared set (default: ../shared)")
    p.add_argument("--rows", type=int, default=100_000, help="base rows to load")
    p.add_argument("--queries", type=int, default=200, help="query vectors to use")
    p.add_argument("--expiring", type=float, default=0.5,
                   help="share of the rows that expire, in [0, 1]")
    p.add_argument("--rate", type=int, default=DEFAULT_SWEEP_ROWS_PER_S,
                   help="the sweep's rows/s while searches run")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per measured phase")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/sweep.json)")
    args = p.parse_args(argv)
    result = run(args)
    report(result)
    write_results("sweep", result, args.out)
    return 0
