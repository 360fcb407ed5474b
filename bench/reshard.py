"""Online layout changes under load: 2 -> 4 shards, 1 -> 2 replicas, then 4 -> 2 shards, with
a writer, a reader and a counter running all the while.

Loads the shared 100k x 384 set (or `--n` rows of it; the bundled sample when it is absent)
into a 2-shard collection, then runs a writer (20-row upserts of new ids, each retried by the
client until acknowledged), a reader (single queries, k=10) and a counter (Count) and changes
the layout. It reports the time of each change, reads failed, acknowledged writes lost (every
acknowledged id is fetched at the end), write attempts that failed and were retried, read QPS
before, during and after, the copy rate against the ingest rate of the same rows (the
reference, measured in the same run by the initial load), the slowest call of each client,
and the read pause at each switch: the latency of the searches in flight at it (those that
overlap the 0.1 s poll interval in which DescribeCollection first showed the change past its
copy phase), against the searches' p50 before. Prints a table and writes
JSON.

    shardvec bench reshard [--n 100000] [--out bench/results/reshard.json]
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.bench.datasets import default_data, load_vectors
from shardvec.bench.results import format_table, write_results
from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from shardvec.cluster.demo import load_sample
from shardvec.contract.errors import ShardvecError

NAME = "reshard"
POLL_S = 0.1  # how often the change's progress is polled (the switch is known to this)


def _load(data: Path | None, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    path = data or default_data()
    if (path / "base.npy").exists():
        base, queries = load_vectors(path, n, 200)
        return base, queries, str(path)
    vectors, _, queries, _ = load_sample()
    return vectors[:n], queries, "bundled sample"


class Load:
    """The writer and the reader, with their counters and a timeline of reads."""

    def __init__(self, address: str, dim: int, queries: np.ndarray) -> None:
        self.address, self.dim, self.queries = address, dim, queries
        self.stop = threading.Event()
        self.acked: list[str] = []
        self.write_retries = 0
        self.reads_failed = 0
        self.read_times: list[float] = []
        self.read_spans: list[tuple[float, float]] = []  # (start, end) of every search
        self.count_spans: list[tuple[float, float]] = []
        self.write_spans: list[tuple[float, float]] = []
        self.counts_failed = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._writer),
                        threading.Thread(target=self._reader),
                        threading.Thread(target=self._counter)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)

    def _writer(self) -> None:
        rng = np.random.default_rng(7)
        i = 0
        with Client(self.address, timeout=60) as c:
            col = c.get_collection(NAME)
            while not self.stop.is_set():
                ids = [f"w{i + j}" for j in range(20)]
                vecs = rng.standard_normal((20, self.dim)).astype(np.float32)
                while not self.stop.is_set():
                    try:
                        t0 = time.monotonic()
                        col.upsert(ids, vecs)
                        self.write_spans.append((t0, time.monotonic()))
                        self.acked.extend(ids)
                        break
                    except ShardvecError as exc:
                        self.write_retries += 1
                        self.errors.append(f"write: {exc.code.name}: {exc.message}")
                        time.sleep(0.1)
                i += 20
                time.sleep(0.02)

    def _reader(self) -> None:
        with Client(self.address, timeout=60) as c:
            col = c.get_collection(NAME)
            q = 0
            while not self.stop.is_set():
                try:
                    t0 = time.monotonic()
                    col.search_ids(self.queries[q % len(self.queries)][None, :], k=10)
                    t1 = time.monotonic()
                    self.read_times.append(t1)
                    self.read_spans.append((t0, t1))
                except ShardvecError as exc:
                    self.reads_failed += 1
                    self.errors.append(f"read: {exc.code.name}: {exc.message}")
                q += 1

    def _counter(self) -> None:
        with Client(self.address, timeout=60) as c:
            col = c.get_collection(NAME)
            while not self.stop.is_set():
                try:
                    t0 = time.monotonic()
                    col.count()
                    self.count_spans.append((t0, time.monotonic()))
                except ShardvecError as exc:
                    self.counts_failed += 1
                    self.errors.append(f"count: {exc.code.name}: {exc.message}")
                time.sleep(0.05)

    def pause(self, at: float) -> dict[str, Any]:
        """p50 and max latency (ms) of the searches in flight at the switch: those that
        overlap the poll interval in which it happened (POLL_S before `at`, the first poll
        that saw it)."""
        lat = [e - s for s, e in self.read_spans if s <= at and e >= at - POLL_S]
        if not lat:
            return {"p50_ms": float("nan"), "max_ms": float("nan"), "reads": 0}
        slow = sorted(((e - s, s - at) for s, e in self.read_spans
                       if s <= at and e >= at - POLL_S), reverse=True)[:3]  # fmt: skip
        return {"p50_ms": round(float(np.median(lat)) * 1e3, 2),
                "max_ms": round(max(lat) * 1e3, 2), "reads": len(lat),
                "slowest": [{"ms": round(d * 1e3, 1), "started_s_from_switch": round(t, 2)}
                            for d, t in slow]}  # fmt: skip

    def p50_ms(self, start: float, end: float) -> float:
        lat = [e - s for s, e in self.read_spans if start <= s and e < end]
        return round(float(np.median(lat)) * 1e3, 2) if lat else float("nan")

    def qps(self, start: float, end: float) -> float:
        n = sum(1 for t in self.read_times if start <= t < end)
        return round(n / max(end - start, 1e-9), 1)


def _change(client: Client, shards: int | None = None,
            replicas: int | None = None) -> dict[str, Any]:
    col = client.get_collection(NAME)
    copied: list[int] = [0]
    switched: list[float] = []  # when the poll first saw the change past its copy phase

    def progress(ch: dict[str, Any]) -> None:
        copied[0] = max(copied[0], int(ch["rows_copied"]))
        if ch["phase"] != "copying" and not switched:
            switched.append(time.monotonic())

    t0 = time.monotonic()
    scale = {"shards": shards, "replicas": replicas}
    info = col.scale(shards, replicas, poll=POLL_S, progress=progress)
    t1 = time.monotonic()
    return {"change": scale, "seconds": round(t1 - t0, 2), "start": t0, "end": t1,
            "switch": switched[0] if switched else t1,
            "rows_copied": copied[0], "layout_version": info["layout_version"],
            "shards": info["shards"], "replicas": info["replicas"]}


def run(data: Path | None, n: int, settle: float, out: Path | None) -> dict[str, Any]:
    base, queries, source = _load(data, n)
    result: dict[str, Any] = {"data": source, "n": len(base), "dim": int(base.shape[1])}
    with tempfile.TemporaryDirectory() as tmp, ShardvecCluster(
        {"data_dir": tmp, "port": 0}
    ) as cluster, Client(cluster.address, timeout=300) as client:
        col = client.create_collection(NAME, dim=base.shape[1], shards=2, replicas=1)
        t0 = time.monotonic()
        col.upsert([f"b{i}" for i in range(len(base))], base, batch_size=2000)
        load_s = time.monotonic() - t0
        result["ingest_rows_per_s"] = round(len(base) / load_s, 1)
        load = Load(cluster.address, base.shape[1], queries)
        load.start()
        try:
            time.sleep(settle)
            before_end = time.monotonic()
            shards = _change(client, shards=4)
            replicas = _change(client, replicas=2)
            shrink = _change(client, shards=2)
            time.sleep(settle)
            after_end = time.monotonic()
        finally:
            load.finish()
        result["read_qps_before"] = load.qps(before_end - settle, before_end)
        result["read_qps_during_shards"] = load.qps(shards["start"], shards["end"])
        result["read_qps_during_replicas"] = load.qps(replicas["start"], replicas["end"])
        result["read_qps_after"] = load.qps(after_end - settle, after_end)
        result["read_p50_ms_before"] = load.p50_ms(before_end - settle, before_end)
        result["switch_pause_grow"] = load.pause(shards["switch"])
        result["switch_pause_shrink"] = load.pause(shrink["switch"])
        windows = {"2 -> 4 shards": shards, "1 -> 2 replicas": replicas, "4 -> 2 shards": shrink}
        result["slowest_ms"] = {
            what: round(max((e - s for s, e in spans), default=0.0) * 1e3, 1)
            for what, spans in (("search", load.read_spans), ("count", load.count_spans),
                                ("upsert", load.write_spans))
        }  # fmt: skip
        result["slowest_ms_by_change"] = {
            change: {
                what: round(max((e - s for s, e in spans if w["start"] <= s < w["end"]),
                                default=0.0) * 1e3, 1)
                for what, spans in (("search", load.read_spans), ("count", load.count_spans),
                                    ("upsert", load.write_spans))
            }
            for change, w in windows.items()
        }  # fmt: skip
        result["counts_ok"] = len(load.count_spans)
        result["counts_failed"] = load.counts_failed
        moved = shards["rows_copied"]
        drop = ("start", "end", "switch")
        result["shards_2_to_4"] = {k: v for k, v in shards.items() if k not in drop}
        result["shards_4_to_2"] = {k: v for k, v in shrink.items() if k not in drop}
        result["replicas_1_to_2"] = {k: v for k, v in replicas.items()
                                     if k not in (*drop, "rows_copied")}
        result["copy_rows_per_s"] = round(moved / max(shards["seconds"], 1e-9), 1)
        result["copy_vs_ingest"] = round(
            result["copy_rows_per_s"] / result["ingest_rows_per_s"], 2
        )
        result["reads_ok"] = len(load.read_times)
        result["reads_failed"] = load.reads_failed
        result["write_attempts_retried"] = load.write_retries
        result["writes_acked"] = len(load.acked)
        found = sum(len(col.get(load.acked[i : i + 5000], include_vectors=False))
                    for i in range(0, len(load.acked), 5000))  # Gets of 5,000 ids (the cap)
        result["acked_writes_lost"] = len(load.acked) - found
        result["count"] = col.count()
        result["count_expected"] = len(base) + len(load.acked)
        result["errors"] = load.errors[:5]
    write_results("reshard", result, out)
    return result


def table(r: dict[str, Any]) -> str:
    rows = [
        ("rows loaded", r["n"]),
        ("ingest rows/s (reference)", r["ingest_rows_per_s"]),
        ("2 -> 4 shards, s", r["shards_2_to_4"]["seconds"]),
        ("rows copied", r["shards_2_to_4"]["rows_copied"]),
        ("copy rows/s", r["copy_rows_per_s"]),
        ("copy / ingest", r["copy_vs_ingest"]),
        ("1 -> 2 replicas, s", r["replicas_1_to_2"]["seconds"]),
        ("4 -> 2 shards, s (target < 120)", r["shards_4_to_2"]["seconds"]),
        ("search p50 before, ms", r["read_p50_ms_before"]),
        ("read pause at the 2 -> 4 switch, p50 / max ms",
         f"{r['switch_pause_grow']['p50_ms']} / {r['switch_pause_grow']['max_ms']}"),
        ("read pause at the 4 -> 2 switch, p50 / max ms (target max < 1000)",
         f"{r['switch_pause_shrink']['p50_ms']} / {r['switch_pause_shrink']['max_ms']}"),
        ("slowest search / count / upsert, ms (target < 5000)",
         " / ".join(str(r["slowest_ms"][k]) for k in ("search", "count", "upsert"))),
        *((f"  slowest during {change}, ms", " / ".join(str(v[k]) for k in
                                                       ("search", "count", "upsert")))
          for change, v in r["slowest_ms_by_change"].items()),
        ("counts ok / failed (target 0)", f"{r['counts_ok']} / {r['counts_failed']}"),
        ("read QPS before", r["read_qps_before"]),
        ("read QPS during 2 -> 4 shards", r["read_qps_during_shards"]),
        ("read QPS during 1 -> 2 replicas", r["read_qps_during_replicas"]),
        ("read QPS after", r["read_qps_after"]),
        ("reads ok / failed (target 0)", f"{r['reads_ok']} / {r['reads_failed']}"),
        ("writes acked / lost (target 0)", f"{r['writes_acked']} / {r['acked_writes_lost']}"),
        ("write attempts retried (target 0)", r["write_attempts_retried"]),
        ("count / expected", f"{r['count']} / {r['count_expected']}"),
    ]
    return format_table(rows, ("figure", "value"))
