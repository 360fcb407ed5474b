"""What each filtered-search plan costs at a shard's size and selectivity, and what the planner
picks: the figures behind `shard/planner.py`'s thresholds.

One ShardEngine per shard size over the shared set's first N rows (384-d MiniLM), every row
tagged `bucket = i % 100`, so `bucket < p` passes p % of the rows. For each size and
selectivity, single queries (and a 500-query batch) are timed under each plan forced through
PlannerSettings (exact subset scoring, HNSW post-filter widened by 1/selectivity, hnswlib's
filtered search) and under the default planner, with recall@10 against exact filtered ground
truth. Prints a table, writes bench/results/planner.json.

    shardvec bench planner [--sizes 25000,100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import default_data, load_vectors, normalised
from shardvec.bench.measure import recall_at_k
from shardvec.bench.results import write_results
from shardvec.contract.filters import parse_where
from shardvec.contract.settings import IndexSettings
from shardvec.shard.engine import ShardEngine
from shardvec.shard.planner import PlannerSettings

K = 10
PLANS = {
    "exact": PlannerSettings(exact_threshold=1 << 40),
    "postfilter": PlannerSettings(exact_threshold=0, postfilter_fraction=0.0),
    "hnsw_filter": PlannerSettings(exact_threshold=0, postfilter_fraction=1.1),
    "planner": PlannerSettings(),
}


def _time_singles(engine: ShardEngine, q: np.ndarray, where: Any) -> tuple[float, np.ndarray]:
    lat, ids = [], []
    for row in q:
        t = time.perf_counter()
        res = engine.search(row[None, :], K, where=where)
        lat.append(time.perf_counter() - t)
        ids.append(res.ids[0])
    return float(np.median(lat) * 1e3), np.array(ids, dtype=object)


def run(
    sizes: list[int], n_queries: int, selectivities: list[int], out: Path | None
) -> dict[str, Any]:
    data = default_data()
    base_all, raw_queries = load_vectors(data, max(sizes), n_queries)
    queries = normalised(raw_queries)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        base = normalised(base_all[:n])
        with tempfile.TemporaryDirectory(prefix="shardvec-planner-") as tmp:
            engines = {}
            for name, plan in PLANS.items():
                path = Path(tmp) / ("shared" if name == "exact" else name)
                if name == "exact":
                    e = ShardEngine(path, IndexSettings(dim=base.shape[1]), planner=plan,
                                    build_threads=2)  # fmt: skip
                    for start in range(0, n, 5000):
                        stop = min(start + 5000, n)
                        ids = [str(i) for i in range(start, stop)]
                        metas = [{"bucket": i % 100} for i in range(start, stop)]
                        e.upsert(start // 5000 + 1, ids, base[start:stop], metas)
                    e.close()
                engines[name] = ShardEngine(Path(tmp) / "shared", IndexSettings(
                    dim=base.shape[1]), planner=plan)  # fmt: skip
            for pct in selectivities:
                where = parse_where({"bucket": {"$lt": pct}})
                passing = np.flatnonzero(np.arange(n) % 100 < pct)
                scores = queries @ base[passing].T
                truth = passing[np.argsort(-scores, axis=1, kind="stable")[:, :K]].astype(str)
                for name, e in engines.items():
                    p50, found = _time_singles(e, queries, where)
                    t = time.perf_counter()
                    e.search(queries, K, where=where)
                    batch_qps = len(queries) / (time.perf_counter() - t)
                    row = {"rows": n, "selectivity_pct": pct, "plan": name, "single_p50_ms": p50,
                           "batch_qps": batch_qps,
                           "recall": recall_at_k(found, truth, K)}  # fmt: skip
                    rows.append(row)
                    print(f"{n:>7} {pct:>4}% {name:<12} p50 {p50:7.3f} ms  batch "
                          f"{batch_qps:9.0f} q/s  recall {row['recall']:.3f}", flush=True)
            unfiltered = engines["planner"]
            p50, _ = _time_singles(unfiltered, queries, None)
            t = time.perf_counter()
            unfiltered.search(queries, K)
            qps = len(queries) / (time.perf_counter() - t)
            rows.append({"rows": n, "selectivity_pct": 100, "plan": "unfiltered",
                         "single_p50_ms": p50, "batch_qps": qps, "recall": None})  # fmt: skip
            print(f"{n:>7} 100% unfiltered   p50 {p50:7.3f} ms  batch {qps:9.0f} q/s", flush=True)
            for e in engines.values():
                e.close()
    report = {"k": K, "queries": n_queries, "rows": rows, "finished_unix": time.time()}
    write_results("planner", report, out)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shardvec bench planner", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="25000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--selectivities", default="1,10,30,60")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default bench/results/planner.json)")
    args = ap.parse_args(argv)
    run([int(s) for s in args.sizes.split(",")], args.queries,
        [int(s) for s in args.selectivities.split(",")], args.out)  # fmt: skip
    return 0

