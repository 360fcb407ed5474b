"""The scale-out benchmark: build time, batch QPS, concurrent QPS and latency, recall@10 and
memory against the number of shards, replicas and nodes.

Nodes are simulated with `ray.cluster_utils.Cluster` (one machine, N Ray nodes of
`cpus_per_node` CPUs each), or the sweep runs on a real Ray cluster given by `address`.
Simulated nodes share this machine's cores: Ray's CPU counts are bookkeeping, so more
simulated nodes add placement and network hops, not capacity. Run as `shardvec bench scale`.

Every point gets a fresh collection (so fresh replica processes), loaded through the public
API and dropped afterwards. Points with the same node count share one cluster and
coordinator: bringing a cluster up costs 10 to 40 s on the 2-core development machine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import psutil

from shardvec.bench.datasets import (
    Dataset,
    brute_force_topk,
    load_dataset,
)
from shardvec.bench.measure import ids_to_rows, recall_at_k
from shardvec.bench.results import RESULTS

K = 10
MIB = 1 << 20
CLIENT_TIMEOUT_S = 120.0
MAX_CALLS_PER_CLIENT = 1_000_000  # a bound on every client loop besides its time limit

Log = Callable[[str], None]


@dataclass(frozen=True)
class ScaleConfig:
    """One sweep: data, grid, load and measurement settings (see `shardvec bench scale -h`)."""

    data: Path | None = None  # the shared data set; None with `synthetic`
    synthetic: int = 0  # rows of seeded clustered Gaussian data instead of `data`
    dim: int = 384  # dimension of synthetic data
    n: int | None = None  # use the first n base rows (None: all)
    queries: int = 1000
    shards: tuple[int, ...] = (1, 2, 4, 8)
    replicas: tuple[int, ...] = (1, 2)
    nodes: tuple[int, ...] = (1, 2, 4)
    cpus_per_node: int = 1
    seconds: float = 5.0  # per concurrency level
    concurrency: tuple[int, ...] = (1, 8, 32)
    full: bool = False  # the whole cross product instead of the three one-factor sweeps
    address: str | None = None  # a real Ray cluster; then no simulated nodes
    host: str = "127.0.0.1"  # the coordinator's bind host
    out: Path = RESULTS / "scale"
    batch_rows: int = 1000  # queries per batch search request
    batch_repeats: int = 3  # best of this many passes over the queries
    upsert_rows: int = 1000  # rows per upsert request
    search_threads: int = 0  # hnswlib threads of a replica's batch search; 0: node's CPUs
    seed: int = 0


@dataclass(frozen=True, order=True)
class Point:
    shards: int
    replicas: int
    nodes: int  # simulated nodes; 0 on a real cluster (its own node count is recorded)

    @property
    def label(self) -> str:
        return f"S{self.shards} R{self.replicas}" + (f" N{self.nodes}" if self.nodes else "")


def parse_ints(text: str) -> tuple[int, ...]:
    """"1,2,4" -> (1, 2, 4); every value must be a positive integer."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"expected positive integers, got {text!r}")
    return values


def sweep_points(cfg: ScaleConfig) -> list[Point]:
    """The grid: shards at R=1 on the fewest nodes; replicas at the middle shard count on the
    two fewest node counts; node counts at that shard count and R=1. `full`: every
    combination. On a real cluster (`address`) only shards and replicas vary."""
    nodes = (0,) if cfg.address else tuple(sorted(set(cfg.nodes)))
    if cfg.full:
        grid = [Point(s, r, n) for n in nodes for r in cfg.replicas for s in cfg.shards]
    else:
        mid = 4 if 4 in cfg.shards else sorted(cfg.shards)[len(cfg.shards) // 2]
        grid = [Point(s, 1, nodes[0]) for s in cfg.shards]
        grid += [Point(mid, r, n) for n in nodes[:2] for r in cfg.replicas]
        grid += [Point(mid, 1, n) for n in nodes]
    return sorted(dict.fromkeys(grid), key=lambda p: (p.nodes, p.replicas, p.shards))


# ------------------------------------------------------------------------------------ data


def synthetic_dataset(n: int, dim: int, n_queries: int, seed: int) -> Dataset:
    """Seeded clustered Gaussian rows (normalised, for cosine), queries from the same mixture,
    exact top-k by NumPy brute force."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(1, min(256, n // 500)), dim)).astype(np.float32)

    def draw(count: int) -> np.ndarray:
        which = rng.integers(0, len(centers), count)
        x = centers[which] + 0.7 * rng.standard_normal((count, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return np.ascontiguousarray(x, dtype=np.float32)

    base, queries = draw(n), draw(n_queries)
    return Dataset(base, queries, brute_force_topk(base, queries, K), "numpy brute force")


def load_data(cfg: ScaleConfig) -> Dataset:
    if cfg.synthetic:
        return synthetic_dataset(cfg.synthetic, cfg.dim, cfg.queries, cfg.seed)
    if cfg.data is None or not (cfg.data / "base.npy").exists():
        raise FileNotFoundError(
            f"data set not found at {cfg.data}: pass --data DIR (or set SHARDVEC_SHARED_DATA) "
            "to a directory holding base.npy and queries.npy, or use --synthetic N"
        )
    return load_dataset(cfg.data, cfg.n, cfg.queries, K)


# ------------------------------------------------------------------------------ processes


class ProcessMeter:
    """CPU seconds and resident memory of a set of local processes (gone ones count 0)."""

    def __init__(self, pids: list[int]) -> None:
        self.procs: list[psutil.Process] = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                self.procs.append(psutil.Process(pid))

    def cpu_s(self) -> float:
        total = 0.0
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss(self) -> list[int]:
        out = []
        for p in self.procs:
            try:
                out.append(int(p.memory_info().rss))
            except psutil.Error:
                out.append(0)
        return out


def _local_ips() -> set[str]:
    ips = {"127.0.0.1", "localhost", socket.gethostname()}
    for addrs in psutil.net_if_addrs().values():
        ips.update(a.address for a in addrs if a.family == socket.AF_INET)
    return ips


def all_nodes_local() -> bool:
    """True when every alive Ray node runs on this machine, so its pids can be measured."""
    import ray

    local = _local_ips()
    nodes = cast(Any, ray).nodes()
    return all(n["NodeManagerAddress"] in local for n in nodes if n.get("Alive"))


# -------------------------------------------------------------------------------- cluster


@contextlib.contextmanager
def shardvec_cluster(cfg: ScaleConfig, nodes: int, data_dir: Path) -> Iterator[Any]:
    """A fresh coordinator on `nodes` simulated Ray nodes (or on the cluster at `address`);
    everything it started is stopped on exit."""
    import ray

    from shardvec.cluster.bringup import ShardvecCluster, simulated_cluster

    settings: dict[str, Any] = {
        "data_dir": str(data_dir),
        "host": cfg.host,
        "port": 0,
        "search_threads": cfg.search_threads,
        "max_query_rows": max(10_000, cfg.batch_rows),
    }
    if ray.is_initialized():
        ray.shutdown()
    c: Any = None  # the simulated cluster, when there is no real one
    try:
        address = cfg.address
        if not address:
            c = simulated_cluster(nodes, cfg.cpus_per_node)
            address = c.address
        sv = ShardvecCluster(settings, ray_address=address)
        try:
            yield sv
        finally:
            sv.stop()
    finally:
        ray.shutdown()
        if c is not None:
            c.shutdown()


# ---------------------------------------------------------------------------- measurement


@dataclass
class Level:
    """Concurrent single-query clients for a fixed time."""

    clients: int
    seconds: float = 0.0
    queries: int = 0
    errors: int = 0
    qps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    coord_cpu_us_per_query: float | None = None
    replica_cpu_us_per_query: float | None = None


@dataclass
class PointResult:
    shards: int
    replicas: int
    nodes: int
    nodes_used: int = 0
    n: int = 0
    dim: int = 0
    queries: int = 0
    startup_s: float = 0.0  # bring-up of the cluster this point ran on
    build_s: float = 0.0
    build_rows_per_s: float = 0.0
    batch_qps: float = 0.0
    batch_ms: float = 0.0  # one request of `batch_rows` queries
    recall_at_10: float = 0.0
    coord_cpu_us_per_query_batch: float | None = None
    replica_cpu_us_per_query_batch: float | None = None
    replica_rss_mib: float | None = None
    replica_rss_each_mib: list[float] = field(default_factory=list)
    coordinator_rss_mib: float | None = None
    loadavg: list[float] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _per_query_us(meter: ProcessMeter | None, cpu0: float, queries: int) -> float | None:
    if meter is None or not queries:
        return None
    return (meter.cpu_s() - cpu0) / queries * 1e6


def measure_batch(
    col: Any, data: Dataset, cfg: ScaleConfig, meters: tuple[ProcessMeter | None, ...]
) -> tuple[float, float, float, list[float | None]]:
    """Best-of-`batch_repeats` passes of `batch_rows`-query requests over all queries:
    (QPS, ms per request, recall@10, CPU µs per query of each meter in the best pass)."""
    nq = len(data.queries)
    best, found = float("inf"), np.empty((0, K), np.int64)
    cpu: list[float | None] = [None] * len(meters)
    for _ in range(max(1, cfg.batch_repeats)):
        cpu0 = [m.cpu_s() if m else 0.0 for m in meters]
        t0 = time.perf_counter()
        rows: list[list[str]] = []
        for start in range(0, nq, cfg.batch_rows):
            ids, _ = col.search_ids(data.queries[start : start + cfg.batch_rows], k=K)
            rows.extend(ids)
        took = time.perf_counter() - t0
        if took < best:
            best, found = took, ids_to_rows(rows, K)
            cpu = [_per_query_us(m, c, nq) for m, c in zip(meters, cpu0, strict=True)]
    requests = -(-nq // cfg.batch_rows)
    return nq / best, best / requests * 1e3, recall_at_k(found, data.gt, K), cpu


def measure_concurrency(
    address: str,
    name: str,
    data: Dataset,
    clients: int,
    seconds: float,
    meters: tuple[ProcessMeter | None, ...],
) -> Level:
    """`clients` threads, each with its own Client, searching one query at a time for
    `seconds`; QPS over the wall time, latency percentiles over every call."""
    from shardvec.cluster.client import Client
    from shardvec.contract.errors import ShardvecError

    nq = len(data.queries)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    window: dict[str, float] = {}
    cpu0: list[float] = []

    def go() -> None:
        cpu0.extend(m.cpu_s() if m else 0.0 for m in meters)
        window["start"] = time.perf_counter()
        window["end"] = window["start"] + seconds

    barrier = threading.Barrier(clients, action=go, timeout=120)

    def worker(i: int) -> None:
        with Client(address, timeout=CLIENT_TIMEOUT_S) as c:
            c.wait_ready(60)
            col = c.get_collection(name)
            col.search_ids(data.queries[i % nq], k=K)  # warm the channel
            barrier.wait()
            end, lat, j = window["end"], latencies[i], i
            for _ in range(MAX_CALLS_PER_CLIENT):
                t0 = time.perf_counter()
                if t0 >= end:
                    break
                try:
                    col.search_ids(data.queries[j % nq], k=K)
                    lat.append(time.perf_counter() - t0)
                except ShardvecError:
                    errors[i] += 1
                j += clients

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + CLIENT_TIMEOUT_S + 120)
    elapsed = time.perf_counter() - window.get("start", time.perf_counter())
    done = sum(len(x) for x in latencies)
    lat_ms = np.concatenate([np.asarray(x) for x in latencies]) * 1e3 if done else np.zeros(1)
    p50, p99 = np.percentile(lat_ms, [50, 99])
    level = Level(
        clients=clients,
        seconds=elapsed,
        queries=done,
        errors=sum(errors),
        qps=done / elapsed if elapsed > 0 else 0.0,
        p50_ms=float(p50),
        p99_ms=float(p99),
        mean_ms=float(lat_ms.mean()),
    )
    if cpu0:
        level.coord_cpu_us_per_query = _per_query_us(meters[0], cpu0[0], done)
        level.replica_cpu_us_per_query = _per_query_us(meters[1], cpu0[1], done)
    return level


def run_point(
    cfg: ScaleConfig, data: Dataset, point: Point, sv: Any, log: Log
) -> PointResult:
    """Create, load and measure one collection on a running cluster, then drop it."""
    from shardvec.cluster.client import Client

    res = PointResult(point.shards, point.replicas, point.nodes, n=len(data.base),
                      dim=data.dim, queries=len(data.queries))  # fmt: skip
    name = f"scale_s{point.shards}_r{point.replicas}_n{point.nodes}"
    with Client(sv.address, timeout=CLIENT_TIMEOUT_S) as client:
        col = client.create_collection(name, data.dim, "cosine", point.shards, point.replicas)
        client.wait_live(name, 300)
        ids = [str(i) for i in range(len(data.base))]
        t0 = time.perf_counter()
        for start in range(0, len(ids), cfg.upsert_rows):
            stop = start + cfg.upsert_rows
            col.upsert(ids[start:stop], data.base[start:stop], batch_size=cfg.upsert_rows)
        res.build_s = time.perf_counter() - t0
        res.build_rows_per_s = len(ids) / res.build_s
        if col.count() != len(ids):
            raise RuntimeError(f"{name}: count {col.count()} after loading {len(ids)}")
        reps = client.wait_live(name, 300)
        res.nodes_used = len({r["node_id"] for r in reps})
        local = cfg.address is None or all_nodes_local()
        coord = ProcessMeter([sv.coordinator_pid()]) if local else None
        replicas = ProcessMeter([int(r["pid"]) for r in reps]) if local else None
        meters = (coord, replicas)
        log(f"  {point.label}: loaded {len(ids):,} rows in {res.build_s:.1f} s")
        res.batch_qps, res.batch_ms, res.recall_at_10, cpu = measure_batch(col, data, cfg, meters)
        res.coord_cpu_us_per_query_batch, res.replica_cpu_us_per_query_batch = cpu
        log(f"  {point.label}: batch {res.batch_qps:,.0f} QPS, recall@10 {res.recall_at_10:.3f}")
        for c in cfg.concurrency:
            lvl = measure_concurrency(sv.address, name, data, c, cfg.seconds, meters)
            log(f"  {point.label}: {c} clients {lvl.qps:,.0f} QPS "
                f"p50 {lvl.p50_ms:.1f} ms p99 {lvl.p99_ms:.1f} ms")  # fmt: skip
            res.levels.append(lvl)
        if replicas is not None and coord is not None:
            each = replicas.rss()
            res.replica_rss_each_mib = [b / MIB for b in each]
            res.replica_rss_mib = sum(each) / MIB
            res.coordinator_rss_mib = coord.rss()[0] / MIB
        res.loadavg = list(os.getloadavg())
        client.drop_collection(name)
    return res


def run_scale(cfg: ScaleConfig, log: Log = print) -> dict[str, Any]:
    """Run the sweep, write CSV, JSON and plots under `cfg.out`; returns what was written."""
    from shardvec.bench.scale_report import format_table, write_outputs

    data = load_data(cfg)
    points = sweep_points(cfg)
    log(f"scale benchmark: {len(data.base):,} x {data.dim} rows, {len(data.queries)} queries, "
        f"{len(points)} points; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    results: list[PointResult] = []
    done = 0
    for nodes, group in itertools.groupby(points, key=lambda p: p.nodes):
        work = Path(tempfile.mkdtemp(prefix="shardvec-scale-"))
        t0 = time.perf_counter()
        try:
            with shardvec_cluster(cfg, nodes, work / "data") as sv:
                startup = time.perf_counter() - t0
                log(f"cluster of {nodes or 'the real'} node(s) up in {startup:.1f} s")
                for p in group:
                    done += 1
                    log(f"[{done}/{len(points)}] {p.label}")
                    res = run_point(cfg, data, p, sv, log)
                    res.startup_s = startup
                    results.append(res)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    meta = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "data": "synthetic" if cfg.synthetic else str(cfg.data),
        "gt": data.gt_source,
        "cpu_count": os.cpu_count(),
        "real_cluster": bool(cfg.address),
        "k": K,
        "finished_unix": time.time(),
    }
    report = {"meta": meta, "points": [r.to_dict() for r in results]}
    files = write_outputs(report, cfg.out)
    log(format_table(report))
    for f in files:
        log(f"wrote {f}")
    return report

