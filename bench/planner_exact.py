"""What exact scoring costs per row and dimension: the planner's `exact_row_cost` and
`exact_batch_row_cost` (shard/planner.py), measured (part of `shardvec bench planner`).

The shared set grown to `--n` rows (datasets.grow_rows) is coded into the int8 compact copy
(shard/compact.py); the float32 values it rescores from are bound from memory (a replica
reads them from its store: 1-2 us a row for the 13 to 50 rows a query rescores). For a 10 %
subset (gathered slots, as a filter gives) and all rows (scanned in place), exact_topk
(shard/exact.py) is timed for one query and for a batch of `--batch` queries, beside a NumPy
float32 product of the same queries and rows (the reference, in the same process, timed
interleaved with it), so the ratio stands on a loaded machine where the seconds do not. The
median of `--reps` runs each. Run it with one BLAS thread, as a replica's Ray worker runs
(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1): with two on the loaded 2-core box a 64-query
batch took up to 10x longer.

With `--engine`, one ShardEngine is also loaded with the rows (metadata {"bucket": i % 10})
and, after `--queries` unfiltered single queries (so its HNSW cost is its own measure), the
same queries are sent one at a time with the 10 % filter bucket == 3 under the default
planner (which plan it chose, from its costs at that moment), forced exact and forced HNSW
post-filter, the three in turn for each query (so a load spike hits all three), each with
its p50 and how many answers equal NumPy's exact top-10.

    python -m shardvec.bench.planner_exact [--n 250000] [--batch 64] [--reps 15] [--engine]
        [--queries 100] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import grow_rows
from shardvec.bench.rows import real_rows
from shardvec.shard.exact import exact_topk
from shardvec.shard.rowdata import RowData

K = 10


def _median_s(fn: Any, reps: int) -> float:
    fn()  # warm
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(base: np.ndarray, queries: np.ndarray, batch: int, reps: int) -> dict[str, Any]:
    n, dim = base.shape
    rows = RowData(dim, "cosine")
    slots_all = np.arange(n, dtype=np.int64)
    rows.set_vectors(slots_all, base)
    rows.bind_source(lambda s: base[s])
    out: dict[str, Any] = {"n": n, "dim": dim}
    for name, slots in (("subset_10pct", slots_all[3::10].copy()), ("all", slots_all)):
        m = len(slots)
        x = np.ascontiguousarray(base[slots])  # the reference reads its rows in place
        one, many = queries[:1], queries[:batch]

        def exact(q: np.ndarray, s: np.ndarray = slots) -> None:
            exact_topk(rows, "cosine", q, s, K, n_slots=n)

        def ref(q: np.ndarray, xm: np.ndarray = x) -> None:
            np.argpartition(-(q @ xm.T), K, axis=1)

        res: dict[str, Any] = {"rows": m}
        for label, q in (("single", one), ("batch", many)):
            # interleaved rounds: each round times both, so a load spike hits both
            e_t, r_t = [], []
            for _ in range(3):
                e_t.append(_median_s(lambda q=q: exact(q), reps))
                r_t.append(_median_s(lambda q=q: ref(q), reps))
            e, r = float(np.median(e_t)), float(np.median(r_t))
            per = m * dim * len(q)
            res[label] = {
                "queries": len(q),
                "exact_ms": round(e * 1e3, 3),
                "float32_numpy_ms": round(r * 1e3, 3),
                "exact_s_per_row_dim": float(f"{e / per:.3g}"),
                "float32_s_per_row_dim": float(f"{r / per:.3g}"),
                "ratio_to_float32": round(e / r, 2),
            }
        out[name] = res
    return out


def engine_plans(base: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    """The 10 % filter's single queries over one engine under each plan (module docstring)."""
    import tempfile

    from shardvec.bench.datasets import chunked_topk
    from shardvec.contract.filters import parse_where
    from shardvec.contract.settings import IndexSettings
    from shardvec.shard.engine import ShardEngine
    from shardvec.shard.planner import PlannerSettings

    n, dim = base.shape
    passing = np.arange(3, n, 10)
    want, _ = chunked_topk(base, queries, K, rows=passing)
    where = parse_where({"bucket": 3})
    out: dict[str, Any] = {"rows": n, "passing": len(passing), "queries": len(queries)}
    with tempfile.TemporaryDirectory() as tmp:
        eng = ShardEngine(Path(tmp), IndexSettings(dim=dim), checkpoint_rows=1 << 40)
        t0 = time.perf_counter()
        for seq, s in enumerate(range(0, n, 5000), start=1):
            e = min(n, s + 5000)
            ids = [str(i) for i in range(s, e)]
            eng.upsert(seq, ids, base[s:e], [{"bucket": i % 10} for i in range(s, e)])
        out["load_s"] = round(time.perf_counter() - t0, 1)
        for i in range(len(queries)):  # the replica's own unfiltered cost, as it serves
            eng.search(queries[i : i + 1], K)
        planner = eng._planner
        out["hnsw_query_cost_ms"] = round(planner.hnsw_query_cost * 1e3, 3)
        out["planner_picks_exact"] = planner._exact_is_cheaper(1, len(passing), n, dim)
        default = planner.settings
        plans = {
            "planner": default,
            "exact": PlannerSettings(exact_threshold=1 << 40),
            "hnsw_postfilter": PlannerSettings(exact_threshold=0, postfilter_fraction=0.0),
        }
        lat: dict[str, list[float]] = {name: [] for name in plans}
        same = dict.fromkeys(plans, 0)
        for i in range(len(queries)):  # the plans in turn for each query: a load spike hits all
            for name, settings in plans.items():
                planner.settings = settings
                t1 = time.perf_counter()
                res = eng.search(queries[i : i + 1], K, where=where)
                lat[name].append(time.perf_counter() - t1)
                same[name] += [int(x) for x in res.ids[0]] == want[i].tolist()
        for name in plans:
            out[name] = {
                "p50_ms": round(float(np.median(lat[name])) * 1e3, 2),
                "answers_equal_to_numpy_exact": f"{same[name]}/{len(queries)}",
            }
        planner.settings = default
        eng.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shardvec.bench.planner_exact",
                                 description=__doc__.split("\n\n")[0])  # fmt: skip
    ap.add_argument("--n", type=int, default=250_000, help="rows (one shard of 1M in 4)")
    ap.add_argument("--batch", type=int, default=64, help="queries of the batch measured")
    ap.add_argument("--reps", type=int, default=15, help="timed runs per figure (median)")
    ap.add_argument("--data", type=Path, default=None, help="the data set to grow")
    ap.add_argument("--engine", action="store_true", help="also time the plans in an engine")
    ap.add_argument("--queries", type=int, default=100, help="queries of --engine")
    ap.add_argument("--out", type=Path, default=Path("bench/results/planner_exact.json"))
    args = ap.parse_args(argv)
    real, queries, source = real_rows(args.data, max(args.batch, args.queries))
    base = grow_rows(real, args.n)
    del real
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    result = {"data": source, "load_average": list(os.getloadavg()),
              **measure(base, q.astype(np.float32), args.batch, args.reps)}  # fmt: skip
    if args.engine:
        result["engine_10pct_filter"] = engine_plans(base, q[: args.queries].astype(np.float32))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
