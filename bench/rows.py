"""A million rows through the public API, against raw hnswlib on the same rows, in one run.

Grows the shared 100k x 384 set to `--n` rows (datasets.grow_rows: each extra row the
normalised blend of two real rows, weights 0.6-0.9 / the rest, seeded), takes `--queries`
of the real queries and computes their exact top-10 in NumPy, over every row and over the
10 % of rows of one filter bucket (each row's metadata is {"bucket": i % 10}). Then:

  - raw hnswlib builds the same rows in a child process (M, ef_construction of the
    collection defaults; batches of `--batch`; as many threads as the cluster's replicas
    build with, `--shards` x DEFAULT_BUILD_THREADS): rows/s, the PSS it grew by per element,
    index_file_size() per element;
  - partitioned hnswlib, the cluster's insert work alone: the same rows split into
    `--shards` parts (every `--shards`-th row), each built by its own process with
    DEFAULT_BUILD_THREADS, all parts at once: rows/s over the slowest part, CPU of all parts.
    A sharded cluster can reach this rate at best; raw hnswlib's one index builds slower, so
    the two references bracket what the cluster's durable write, Ray and gRPC cost;
  - a `shardvec up` server (its own embedded Ray) gets a `--shards` x 1 collection, loaded by
    one client in batches of `--batch` (durable: every write fsync'd): rows/s;
  - the recall tuner: how long after the load the cluster set the default breadth (waiting
    at most `--tune-wait`), the per-shard ef it chose and its recall estimate;
  - recall@10 and batch QPS (one Search of all queries, best of 3) at the defaults (no `ef`
    in the request; also right after the load, before the tuner) and at request ef 32 / 64 /
    96 / 128 / 192; single-query p50;
  - exact (exact=True) and filtered (bucket == 3, 10 %) single-query p50, each checked
    against the exact ground truth;
  - memory per row: PSS of the server's whole process tree (driver, Ray, coordinator,
    replicas: /proc/PID/smaps_rollup) after the load, minus the same tree idle with the
    collection created, over N; disk per row: the data directory's allocated bytes over N;
  - restart: the server stopped (SIGTERM) and started again; seconds from its start to the
    first answered search.

Prints a table and writes JSON (default bench/results/rows.json). With no `--data` and the
shared set absent it grows the bundled 4,000-row sample instead, and says so.

    shardvec bench rows --n 1000000 [--shards 4] [--batch 5000] [--data DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shardvec.bench.datasets import (
    GROW_SEED,
    GROW_WEIGHTS,
    SAMPLE,
    chunked_topk,
    default_data,
    grow_rows,
    require_data,
)
from shardvec.bench.measure import ids_to_rows, recall_at_k
from shardvec.bench.results import format_table, write_results
from shardvec.contract.limits import DEFAULT_BUILD_THREADS
from shardvec.contract.settings import IndexSettings

K = 10
EF_LADDER = (32, 64, 96, 128, 192)
BUCKETS = 10  # row i has metadata {"bucket": i % BUCKETS}
STEPS = 10  # the load and both references record their CPU at each tenth of the rows
REPLICA = "ray::ShardReplica"  # the replicas' role in tree_cpu and tree_pss
FILTER = {"bucket": 3}  # 10 % of the rows
NAME = "rows"
BATCH_PASSES = 3
# the recall tuner's line for a tune it made (coordinator/queries/recall_tuner.py)
TUNE_LINE = re.compile(r" at (\d+) rows over \d+ shards: per-shard ef (\d+),")
Log = Callable[[str], None]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------- data


def real_rows(data: Path | None, n_queries: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The real rows and queries the set is grown from: `data` (MissingData when it is not
    a data set), else the default shared set, else the bundled sample."""
    path = require_data(data) if data is not None else default_data()
    if (path / "base.npy").exists() and (path / "queries.npy").exists():
        base = np.load(path / "base.npy")
        queries = np.load(path / "queries.npy", mmap_mode="r")[:n_queries]
        return base.astype(np.float32), np.asarray(queries, dtype=np.float32), str(path)
    from shardvec.cluster.demo import load_sample

    vectors, _, queries, _ = load_sample()
    return vectors, queries[:n_queries], SAMPLE


def unit(arr: np.ndarray) -> npt.NDArray[np.float32]:
    out = np.array(arr, dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


# ------------------------------------------------------------------------------- memory


def pss_bytes(pids: list[int], field: str = "Pss:") -> int:
    """Proportional set size of these processes (smaps_rollup), those that still exist;
    `field` "Pss_Anon:" counts only anonymous memory (not the mapped files)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    if line.startswith(field):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def _role(cmdline: list[str]) -> str:
    """What a process of the server's tree is: its Ray title (ray::ReplicaActor, ...) or
    its program (python: the `shardvec up` driver; gcs_server, raylet, ...)."""
    if not cmdline:
        return "?"
    if cmdline[0].startswith("ray::"):
        return cmdline[0].split()[0]
    if "shardvec.cluster" in cmdline:
        return "shardvec up"
    return Path(cmdline[0]).name or "?"


def _tree_by_role(root: int, measure: Callable[[Any], float]) -> tuple[int, dict[str, float]]:
    """`measure` (of a psutil.Process) summed by role (`_role`) over `root` and all its
    descendants (Ray's workers included), and how many processes there were; a process that
    ended meanwhile is not counted."""
    import psutil

    try:
        proc = psutil.Process(root)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, {}
    by_role: dict[str, float] = {}
    for p in procs:
        try:
            role, value = _role(p.cmdline()), measure(p)
        except psutil.Error:
            continue
        by_role[role] = by_role.get(role, 0.0) + value
    return len(procs), by_role


def tree_pss(root: int) -> tuple[int, int, dict[str, int]]:
    """PSS of `root` and all its descendants, how many processes, and the PSS by role."""
    n, by_role = _tree_by_role(root, lambda p: pss_bytes([p.pid]))
    pss = {role: int(v) for role, v in by_role.items()}
    return sum(pss.values()), n, pss


def tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds (user + system, every thread) spent so far by `root` and its descendants,
    by role."""
    return _tree_by_role(root, lambda p: sum(p.cpu_times()[:2]))[1]


def cpu_profile(
    before: dict[str, float], after: dict[str, float], client_s: float, wall_s: float
) -> dict[str, Any]:
    """Where the CPU of a timed phase went: seconds by role of the server's tree (the
    difference of two `tree_cpu` readings), the client's (this process), their sum, and
    that sum over the wall time and the machine's cores (1.0: every core busy throughout)."""
    by_role = {
        role: round(after.get(role, 0.0) - before.get(role, 0.0), 1)
        for role in sorted(set(before) | set(after))
    }
    by_role = {role: s for role, s in by_role.items() if s > 0}
    total = sum(by_role.values()) + client_s
    return {
        "cpu_s_by_process": by_role,
        "client_cpu_s": round(client_s, 1),
        "cpu_s": round(total, 1),
        "cores_busy": round(total / (wall_s * (os.cpu_count() or 1)), 3),
    }


def disk_bytes(path: Path) -> int:
    """Allocated bytes under `path`, as `du -s` counts them."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


# ------------------------------------------------------------------------- raw hnswlib


def raw_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: grow the same rows, then build raw hnswlib from them in batches
    with `threads`; the PSS the build added, its time and its index_file_size(). The build's
    memory is anonymous, so the growth is read from anonymous PSS: a mapped library's share
    falls as other processes on the machine map it, which made the growth read low under
    load (1,525 B a row at 100k, below the vectors themselves)."""
    import hnswlib

    real, _, _ = real_rows(Path(spec["data"]) if spec["data"] else None, 0)
    base = grow_rows(real, spec["n"])
    if spec.get("parts", 1) > 1:  # one part of a partitioned build (run_partitioned)
        base = np.ascontiguousarray(base[spec["part"] :: spec["parts"]])
    del real
    gc.collect()
    settings = IndexSettings(dim=base.shape[1])
    before = pss_bytes([os.getpid()], "Pss_Anon:")
    t0, cpu0 = time.perf_counter(), time.process_time()
    index = hnswlib.Index(space="cosine", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=settings.m,
                     ef_construction=settings.ef_construction)  # fmt: skip
    labels = np.arange(len(base), dtype=np.int64)
    # CPU at each tenth of the rows, as the cluster's load records it (its `steps`)
    tenths, step_cpu, last = {len(base) * i // STEPS for i in range(1, STEPS + 1)}, [], cpu0
    for s in range(0, len(base), spec["batch"]):
        e = min(s + spec["batch"], len(base))
        index.add_items(base[s:e], labels[s:e], num_threads=spec["threads"])
        if any(s < t <= e for t in tenths):
            now = time.process_time()
            step_cpu.append(now - last)
            last = now
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    grown = pss_bytes([os.getpid()], "Pss_Anon:") - before
    return {
        "seconds": seconds,
        "rows_per_s": len(base) / seconds,
        "cpu_s": round(cpu_s, 1),
        "cores_busy": round(cpu_s / (seconds * (os.cpu_count() or 1)), 3),
        "threads": spec["threads"],
        "m": settings.m,
        "ef_construction": settings.ef_construction,
        "pss_bytes": grown,
        "pss_bytes_per_row": grown / len(base),
        "index_file_bytes_per_row": index.index_file_size() / len(base),
        "step_cpu_s": [round(c, 2) for c in step_cpu],
    }


def _child(spec: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "shardvec.bench.rows", "--raw-child", json.dumps(spec)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _child_result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"raw hnswlib build failed: {err[-3000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def run_raw(data: Path | None, n: int, batch: int, threads: int) -> dict[str, Any]:
    spec = {"data": str(data) if data else "", "n": n, "batch": batch, "threads": threads}
    return _child_result(_child(spec))


def run_partitioned(data: Path | None, n: int, batch: int, parts: int) -> dict[str, Any]:
    """The same rows in `parts` parts, each built by its own process with
    DEFAULT_BUILD_THREADS (a replica's batch is `batch / parts` rows), all at once: rows/s
    over the slowest part, CPU seconds of all parts."""
    spec = {"data": str(data) if data else "", "n": n, "batch": max(1, batch // parts),
            "threads": DEFAULT_BUILD_THREADS, "parts": parts}  # fmt: skip
    procs = [_child({**spec, "part": i}) for i in range(parts)]
    got = [_child_result(p) for p in procs]
    seconds = max(g["seconds"] for g in got)
    cpu_s = sum(g["cpu_s"] for g in got)
    # each tenth of the rows (a tenth of every part): CPU ms a row, as the cluster's steps
    tenth = n / STEPS
    steps = [round(1e3 * sum(g["step_cpu_s"][i] for g in got) / tenth, 3)
             for i in range(min(len(g["step_cpu_s"]) for g in got))]  # fmt: skip
    return {
        "parts": parts,
        "threads_per_part": DEFAULT_BUILD_THREADS,
        "seconds": round(seconds, 2),
        "rows_per_s": round(n / seconds, 1),
        "cpu_s": round(cpu_s, 1),
        "cores_busy": round(cpu_s / (seconds * (os.cpu_count() or 1)), 3),
        "cpu_ms_per_row_by_step": steps,
    }


# ------------------------------------------------------------------------------ cluster


def _p50_ms(lat: list[float]) -> float:
    return round(float(np.percentile(lat, 50)) * 1e3, 3) if lat else float("nan")


def exactness(
    found: list[list[str]],
    truth: npt.NDArray[np.int64],
    truth_scores: npt.NDArray[np.float32],
    base: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    where_ok: Callable[[int], bool],
) -> dict[str, Any]:
    """recall@10 against the exact answers, and whether every answer is exact: it has k rows,
    each passes the filter, and a row outside the truth scores within 1e-5 of the truth's
    k-th (a tie that float rounding may order either way)."""
    rows = ids_to_rows(found, K)
    bad = 0
    for j, row in enumerate(rows):
        want = {int(t) for t in truth[j] if t >= 0}
        got = [int(r) for r in row if r >= 0]
        kth = float(truth_scores[j][len(want) - 1]) if want else float("-inf")
        ok = (
            len(got) == len(want)
            and all(where_ok(r) for r in got)
            and all(r in want or float(base[r] @ queries[j]) >= kth - 1e-5 for r in got)
        )
        bad += not ok
    return {"recall": round(recall_at_k(rows, truth, K), 4), "exact": bad == 0,
            "inexact_queries": bad}  # fmt: skip


def measure_cluster(
    args: argparse.Namespace,
    base: np.ndarray,
    queries: np.ndarray,
    gt: dict[str, Any],
    work: Path,
    log: Log,
) -> dict[str, Any]:
    from shardvec.cluster.client import Client
    from shardvec.cluster.process import ServerProcess, free_port
    from shardvec.contract.errors import ShardvecError

    n, out = len(base), dict[str, Any]()
    data_dir, port = work / "data", free_port()
    server = ServerProcess(data_dir, port, log_dir=work)
    try:
        with Client(server.address, timeout=600) as c:
            col = c.create_collection(NAME, int(base.shape[1]), "cosine", args.shards, 1)
            c.wait_live(NAME, 300)
            idle, idle_procs, idle_roles = tree_pss(server.proc.pid)
            log(
                f"server idle: {idle / 2**20:,.0f} MiB PSS over {idle_procs} processes; "
                f"loading {n:,} rows in batches of {args.batch:,}, {args.concurrency} in flight"
            )
            ids = [str(i) for i in range(n)]
            metas = [{"bucket": i % BUCKETS} for i in range(n)]
            step = max(n // STEPS, args.batch)
            cpu0, client0 = tree_cpu(server.proc.pid), time.process_time()
            t0 = time.perf_counter()
            steps, last_cpu, last_t = [], cpu0, t0
            for s in range(0, n, step):
                e = min(s + step, n)
                col.upsert(ids[s:e], base[s:e], metas[s:e], batch_size=args.batch,
                           concurrency=args.concurrency)
                # each tenth of the load: its rate and the replicas' CPU a row, which show
                # how the cost of a row grows with the rows held
                now_cpu, now = tree_cpu(server.proc.pid), time.perf_counter()
                rep_s = now_cpu.get(REPLICA, 0.0) - last_cpu.get(REPLICA, 0.0)
                steps.append({"rows": e, "rows_per_s": round((e - s) / (now - last_t), 1),
                              "replica_cpu_ms_per_row": round(1e3 * rep_s / (e - s), 3)})
                last_cpu, last_t = now_cpu, now
                log(f"  {e:,} rows, {e / (now - t0):,.0f} rows/s; this step "
                    f"{steps[-1]['rows_per_s']:,.0f} rows/s, replicas "
                    f"{steps[-1]['replica_cpu_ms_per_row']} CPU ms a row")
            load_s = time.perf_counter() - t0
            load_end = time.time()
            during = tuner_during(server.log, load_end - load_s, load_end)
            log(f"recall tuner during the load: {len(during['tunes'])} tune(s) made "
                f"{[(t['rows'], t['ef']) for t in during['tunes']]}, {during['outrun']} "
                f"outrun, {during['given_way']} given way")  # fmt: skip
            cpu = cpu_profile(cpu0, tree_cpu(server.proc.pid), time.process_time() - client0,
                              load_s)  # fmt: skip
            c.wait_live(NAME, 600)
            count = col.count()
            if count != n:
                raise RuntimeError(f"count {count} after loading {n} rows")
            loaded, loaded_procs, loaded_roles = tree_pss(server.proc.pid)
            out["ingest"] = {"seconds": round(load_s, 2), "rows_per_s": round(n / load_s, 1),
                             **cpu, "steps": steps}  # fmt: skip
            log(
                f"load CPU: {cpu['cpu_s']:,.0f} s ({cpu['cores_busy']:.0%} of the cores): "
                + ", ".join(f"{k} {v:,.0f}" for k, v in cpu["cpu_s_by_process"].items())
                + f", client {cpu['client_cpu_s']:,.0f}"
            )
            by_process = {
                role: round((loaded_roles.get(role, 0) - idle_roles.get(role, 0)) / n, 1)
                for role in sorted(set(idle_roles) | set(loaded_roles))
            }
            out["memory"] = {
                "idle_pss_bytes": idle, "loaded_pss_bytes": loaded, "processes": loaded_procs,
                "pss_bytes_per_row": round((loaded - idle) / n, 1),
                # what each kind of process grew by, per row (replicas: ray::ShardReplica)
                "pss_bytes_per_row_by_process": by_process,
            }  # fmt: skip
            log(
                f"loaded in {load_s:,.1f} s; {(loaded - idle) / n:,.0f} B/row PSS above idle: "
                + ", ".join(f"{k} {v:,.0f}" for k, v in by_process.items() if v)
            )
            untuned = batch_point(col, queries, gt["all"], None)
            out["tuning"] = {**wait_tuned(c, n, load_end, args.tune_wait, log),
                             "during_load": during}  # fmt: skip
            out["search"] = search_figures(col, base, queries, gt, log)
            out["search"]["batch_default_before_tuning"] = untuned
            after, _, _ = tree_pss(server.proc.pid)
            out["memory"]["after_searches_pss_bytes_per_row"] = round((after - idle) / n, 1)
        server.stop()
        disk = disk_bytes(data_dir)
        out["disk"] = {"bytes": disk, "bytes_per_row": round(disk / n, 1)}
        log(f"disk {disk / 2**20:,.0f} MiB; restarting")
        t0 = time.perf_counter()
        server = ServerProcess(data_dir, port, log_dir=work, timeout=900)
        serving = time.perf_counter() - t0
        first: list[list[str]] = []
        with Client(server.address, timeout=60) as c:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                try:
                    first, _ = c.get_collection(NAME).search_ids(queries[:1], k=K)
                    break
                except ShardvecError:
                    time.sleep(0.05)
            restart = time.perf_counter() - t0
            c.wait_live(NAME, 600)
            after_count = c.get_collection(NAME).count()
        out["restart"] = {
            "seconds_to_first_search": round(restart, 2), "seconds_to_serving": round(serving, 2),
            "answered": bool(first and first[0]), "count_after": after_count,
        }  # fmt: skip
        log(f"restart: first search answered after {restart:.1f} s; count {after_count:,}")
    finally:
        server.stop()
    return out


def tuner_during(log_path: Path, since: float, until: float) -> dict[str, Any]:
    """What the recall tuner logged in the server's log between `since` and `until` (unix
    seconds, to the second): the tunes it made (rows, per-shard ef) and those it abandoned,
    outrun by the load or given way when the load ended. A tune made during a load is one
    the load's length forced (coordinator/queries/recall_tuner.py): its searches take their
    share of the replicas' CPU beside the inserts."""
    made: list[dict[str, int]] = []
    outrun = given_way = 0
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "recall tuner: " not in line:
            continue
        try:
            at = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
        except ValueError:
            continue
        if not since - 1 <= at <= until + 1:
            continue
        tune = TUNE_LINE.search(line)
        if tune:
            made.append({"rows": int(tune.group(1)), "ef": int(tune.group(2))})
        elif "while tuned; again later" in line:
            outrun += 1
        elif "the load ended during a forced tune" in line:
            given_way += 1
    return {"tunes": made, "outrun": outrun, "given_way": given_way}


def wait_tuned(c: Any, n: int, load_end: float, wait_s: float, log: Log) -> dict[str, Any]:
    """Wait (at most `wait_s`) until the cluster's recall tuner has tuned the collection over
    all its loaded rows (a tune forced during the load is provisional); what it set, how long after
    the load it was in force. A tree without a tuner reports tuned False at once."""
    t0 = time.monotonic()
    info: dict[str, Any] = {}
    tuned = False
    while time.monotonic() - t0 < wait_s:
        info = c.describe(NAME)
        if "recall_estimate" not in info:
            break
        if info["recall_estimate"] is not None and info["tuned_rows"] == n:
            tuned = True
            break
        time.sleep(1.0)
    out = {
        "tuned": tuned,
        "waited_s": round(time.monotonic() - t0, 1),
        "seconds_after_load": round(max(info["tuned_unix"] - load_end, 0.0), 1) if tuned else None,
        **{k: info.get(k) for k in ("target_recall", "search_ef", "tuned_rows",
                                     "recall_queries")},
        "recall_estimate": round(info["recall_estimate"], 4) if tuned else None,
    }  # fmt: skip
    log(f"recall tuner: {'tuned' if tuned else f'not tuned within {wait_s:.0f} s'}"
        + (f" {out['seconds_after_load']} s after the load: per-shard ef {out['search_ef']}, "
           f"estimate {out['recall_estimate']:.3f} for target {out['target_recall']}"
           if tuned else ""))  # fmt: skip
    return out


def batch_point(
    col: Any, queries: np.ndarray, truth: npt.NDArray[np.int64], ef: int | None
) -> dict[str, Any]:
    """One Search of every query at `ef` (None: none in the request), best of BATCH_PASSES:
    QPS and recall@10."""
    best, found = float("inf"), []
    for _ in range(BATCH_PASSES):
        t = time.perf_counter()
        found, _ = col.search_ids(queries, k=K, ef=ef)
        best = min(best, time.perf_counter() - t)
    return {"ef": ef, "recall": round(recall_at_k(ids_to_rows(found, K), truth, K), 4),
            "qps": round(len(queries) / best, 1)}  # fmt: skip


def search_figures(
    col: Any, base: np.ndarray, queries: np.ndarray, gt: dict[str, Any], log: Log
) -> dict[str, Any]:
    default = batch_point(col, queries, gt["all"], None)
    ladder = [batch_point(col, queries, gt["all"], ef) for ef in EF_LADDER]
    log(
        f"defaults: recall@10 {default['recall']} at {default['qps']:,.0f} QPS; ladder "
        + ", ".join(f"ef {p['ef']}: {p['recall']} / {p['qps']:,.0f}" for p in ladder)
    )

    def singles(qs: np.ndarray, **kw: Any) -> tuple[list[float], list[list[str]]]:
        lat, found = [], []
        for q in qs:
            t = time.perf_counter()
            ids, _ = col.search_ids(q[None, :], k=K, **kw)
            lat.append(time.perf_counter() - t)
            found.append(ids[0])
        return lat, found

    lat, _ = singles(queries)
    n_exact = min(len(queries), gt["exact_queries"])
    ex_lat, ex_found = singles(queries[:n_exact], exact=True)
    exact = exactness(ex_found, gt["all"][:n_exact], gt["all_scores"][:n_exact], base, queries,
                      lambda r: True)  # fmt: skip
    f_lat, f_found = singles(queries, where=FILTER)
    bucket = FILTER["bucket"]
    filtered = exactness(f_found, gt["filtered"], gt["filtered_scores"], base, queries,
                         lambda r: r % BUCKETS == bucket)  # fmt: skip
    out = {
        "batch_default": default,
        "batch_ladder": ladder,
        "single_p50_ms": _p50_ms(lat),
        "exact_single_p50_ms": _p50_ms(ex_lat),
        "exact_queries": n_exact,
        "exact_check": exact,
        "filtered_single_p50_ms": _p50_ms(f_lat),
        "filter": FILTER,
        "filtered_check": filtered,
    }
    log(
        f"single p50 {out['single_p50_ms']} ms; exact p50 {out['exact_single_p50_ms']} ms "
        f"(exact: {exact['exact']}); filtered p50 {out['filtered_single_p50_ms']} ms "
        f"(recall {filtered['recall']}, exact: {filtered['exact']})"
    )
    return out


# -------------------------------------------------------------------------------- report


def run(args: argparse.Namespace, log: Log = _log) -> dict[str, Any]:
    t_start, load_start = time.perf_counter(), os.getloadavg()
    real, raw_queries, source = real_rows(args.data, args.queries)
    if source == SAMPLE:
        log(
            f"no data set at {default_data()}: growing {SAMPLE} (pass --data DIR for the "
            "shared pypi-minilm-100k set)"
        )
    t0 = time.perf_counter()
    base = grow_rows(real, args.n)
    queries = unit(raw_queries)
    real_n = len(real)
    del real
    grow_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gt_all, gt_all_scores = chunked_topk(base, queries, K)
    passing = np.arange(FILTER["bucket"], len(base), BUCKETS, dtype=np.int64)
    gt_f, gt_f_scores = chunked_topk(base, queries, K, rows=passing)
    gt_s = time.perf_counter() - t0
    log(
        f"{len(base):,} rows x {base.shape[1]} ({real_n:,} real, from {source}) grown in "
        f"{grow_s:.1f} s; exact top-{K} of {len(queries)} queries in {gt_s:.1f} s"
    )
    gt = {"all": gt_all, "all_scores": gt_all_scores, "filtered": gt_f,
          "filtered_scores": gt_f_scores, "exact_queries": args.exact_queries}  # fmt: skip

    threads = args.shards * DEFAULT_BUILD_THREADS
    log(f"raw hnswlib: building {len(base):,} rows with {threads} threads in a child process")
    raw = run_raw(args.data, args.n, args.batch, threads)
    log(
        f"raw hnswlib: {raw['rows_per_s']:,.0f} rows/s, {raw['pss_bytes_per_row']:,.0f} B/row "
        f"PSS, index_file_size {raw['index_file_bytes_per_row']:,.0f} B/row"
    )

    log(f"partitioned hnswlib: {args.shards} parts, one process each, all at once")
    parted = run_partitioned(args.data, args.n, args.batch, args.shards)
    log(f"partitioned hnswlib: {parted['rows_per_s']:,.0f} rows/s, {parted['cpu_s']:,.0f} CPU s")

    with tempfile.TemporaryDirectory(prefix="shardvec-rows-") as tmp:
        cluster = measure_cluster(args, base, queries, gt, Path(tmp), log)
    result: dict[str, Any] = {
        "n": len(base), "dim": int(base.shape[1]), "real_rows": real_n, "data": source,
        "queries": len(queries), "shards": args.shards, "replicas": 1, "batch": args.batch,
        "concurrency": args.concurrency,
        "generator": {"seed": GROW_SEED, "weights": list(GROW_WEIGHTS), "function":
                      "shardvec.bench.datasets.grow_rows"},
        "filter_fraction": round(len(passing) / len(base), 4),
        "cpus": os.cpu_count(), "raw_hnswlib": raw, "partitioned_hnswlib": parted, **cluster,
    }  # fmt: skip
    result["ratios"] = {
        "ingest_vs_raw": round(cluster["ingest"]["rows_per_s"] / raw["rows_per_s"], 3),
        "ingest_vs_partitioned": round(cluster["ingest"]["rows_per_s"]
                                       / parted["rows_per_s"], 3),
        "memory_vs_raw_pss": round(cluster["memory"]["pss_bytes_per_row"]
                                   / raw["pss_bytes_per_row"], 3),
        "memory_vs_raw_index_file": round(cluster["memory"]["pss_bytes_per_row"]
                                          / raw["index_file_bytes_per_row"], 3),
    }  # fmt: skip
    result["seconds_total"] = round(time.perf_counter() - t_start, 1)
    # other work on the machine (the figures are wall time): 1-minute load, start and end
    result["loadavg_1m"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    return result


def _cpu_of(r: dict[str, Any], role: str) -> float:
    return float(r["ingest"]["cpu_s_by_process"].get(role, 0.0))


def _step_ratios(r: dict[str, Any]) -> str:
    """Per tenth of the load: the replicas' CPU a row over partitioned hnswlib's (a small
    load may have fewer tenths in the partitioned build: its batches span several)."""
    steps = r["ingest"].get("steps", [])
    parted = r["partitioned_hnswlib"].get("cpu_ms_per_row_by_step", [])
    n = min(len(steps), len(parted))
    got = [st["replica_cpu_ms_per_row"] / ms for st, ms in zip(steps[:n], parted[:n],
                                                              strict=True) if ms > 0]
    return " ".join(f"{x:.2f}" for x in got) or "-"


def table(r: dict[str, Any]) -> str:
    s, raw, t, part = r["search"], r["raw_hnswlib"], r["tuning"], r["partitioned_hnswlib"]
    rows: list[tuple[str, object]] = [
        ("rows x dim (real rows)", f"{r['n']:,} x {r['dim']} ({r['real_rows']:,})"),
        (f"durable ingest rows/s ({r['batch']:,} a batch, {r.get('concurrency', 1)} in flight)",
         f"{r['ingest']['rows_per_s']:,.0f}"),
        (f"raw hnswlib build rows/s ({raw['threads']} threads)", f"{raw['rows_per_s']:,.0f}"),
        ("  ingest / raw", r["ratios"]["ingest_vs_raw"]),
        (f"partitioned hnswlib rows/s ({part['parts']} processes at once)",
         f"{part['rows_per_s']:,.0f}"),
        ("  ingest / partitioned", r["ratios"]["ingest_vs_partitioned"]),
        ("load CPU s: cluster (replicas, coordinator, client) / raw / partitioned",
         f"{r['ingest']['cpu_s']:,.0f} ({_cpu_of(r, REPLICA):,.0f}, "
         f"{_cpu_of(r, 'ray::Coordinator'):,.0f}, {r['ingest']['client_cpu_s']:,.0f}) / "
         f"{raw['cpu_s']:,.0f} / {part['cpu_s']:,.0f}"),
        ("  replicas' CPU a row / partitioned's, each tenth of the load", _step_ratios(r)),
        ("  cores busy: cluster / raw / partitioned",
         f"{r['ingest']['cores_busy']:.0%} / {raw['cores_busy']:.0%} / "
         f"{part['cores_busy']:.0%}"),
        ("recall tuner during the load: tunes made (rows, ef) / outrun / given way",
         f"{[(d['rows'], d['ef']) for d in t['during_load']['tunes']] or '-'} / "
         f"{t['during_load']['outrun']} / {t['during_load']['given_way']}"),
        ("recall tuner: s after load / per-shard ef / estimate",
         f"{t['seconds_after_load']} / {t['search_ef']} / {t['recall_estimate']}"
         if t["tuned"] else f"not tuned in {t['waited_s']} s"),
        ("recall@10 / batch QPS at the defaults, before tuning",
         f"{s['batch_default_before_tuning']['recall']} / "
         f"{s['batch_default_before_tuning']['qps']:,.0f}"),
        ("recall@10 / batch QPS at the defaults",
         f"{s['batch_default']['recall']} / {s['batch_default']['qps']:,.0f}"),
        *((f"recall@10 / batch QPS at ef {p['ef']}", f"{p['recall']} / {p['qps']:,.0f}")
          for p in s["batch_ladder"]),
        ("single query p50 ms", s["single_p50_ms"]),
        ("exact single query p50 ms (exact?)",
         f"{s['exact_single_p50_ms']} ({s['exact_check']['exact']})"),
        ("filtered (10 %) single p50 ms (recall, exact?)",
         f"{s['filtered_single_p50_ms']} ({s['filtered_check']['recall']}, "
         f"{s['filtered_check']['exact']})"),
        ("memory per row: server tree PSS above idle, B",
         f"{r['memory']['pss_bytes_per_row']:,.0f}"),
        ("raw hnswlib PSS per element, B", f"{raw['pss_bytes_per_row']:,.0f}"),
        ("raw hnswlib index_file_size per element, B", f"{raw['index_file_bytes_per_row']:,.0f}"),
        ("  memory / raw PSS", r["ratios"]["memory_vs_raw_pss"]),
        ("disk per row, B", f"{r['disk']['bytes_per_row']:,.0f}"),
        ("restart to first answered search, s", r["restart"]["seconds_to_first_search"]),
        ("whole run, s", r["seconds_total"]),
    ]  # fmt: skip
    return format_table(rows, ("figure", "value"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shardvec bench rows", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="rows to grow the set to and load")
    ap.add_argument("--shards", type=int, default=4, help="shards of the collection (1 replica)")
    ap.add_argument("--batch", type=int, default=5_000, help="rows per upsert")
    ap.add_argument("--concurrency", type=int, default=2,
                    help="upserts in flight at once (the client's `concurrency`)")
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the real set to grow: a directory with base.npy and queries.npy "
        "(default $SHARDVEC_SHARED_DATA or ../shared/data/pypi-minilm-100k; "
        "the bundled 4,000-row sample when that is absent)",
    )
    ap.add_argument("--queries", type=int, default=200, help="real queries to measure with")
    ap.add_argument(
        "--exact-queries",
        type=int,
        default=50,
        help="of them, how many run exact=True (each scans every row)",
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON path (default bench/results/rows.json)"
    )
    ap.add_argument("--tune-wait", type=float, default=120.0,
                    help="seconds to wait after the load for the recall tuner to set the "
                         "default breadth before the searches are measured")  # fmt: skip
    ap.add_argument("--raw-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.raw_child is not None:
        print(json.dumps(raw_child(json.loads(args.raw_child))), flush=True)
        return 0
    if args.n < 1 or args.shards < 1 or args.batch < 1 or args.queries < 1 or args.concurrency < 1:
        ap.error("--n, --shards, --batch and --queries must be >= 1")
    result = run(args)
    print(table(result), flush=True)
    write_results(NAME, result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
