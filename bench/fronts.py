"""Query fronts: the CPU each front spends per query, and the cap of one front.

For 1, 2 and 4 simulated Ray nodes (ray.cluster_utils.Cluster on this machine, one front
each, a collection of 1 shard with one replica per node), a fixed offered load of single
queries is spread evenly over the fronts, each front's share paced by its own client thread.
Over the measured window the script reads the CPU time of every front process and of the
coordinator (psutil), and reports per front: queries served, CPU per query, share of a core.
The coordinator's CPU over the same window shows it is out of the read path.

Then the cap of a single front (1 node): closed-loop clients as fast as they go, through the
front, and, as the reference in the same run, through the coordinator.

On one machine of few cores all fronts, replicas and the load generator share the same cores,
so more fronts cannot add throughput here: the figure that carries to a real cluster is the
CPU per query of one front, which docs/cost-model.md turns into a prediction.

    shardvec bench fronts [--nodes 1,2,4] [--qps 120] [--seconds 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from shardvec.bench.results import write_results

DIM = 32
ROWS = 2000
IDLE_S = 2.0


def _cpu(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    return 0.0


@contextlib.contextmanager
def _cluster(nodes: int, data_dir: Path) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    import ray

    from shardvec.cluster.bringup import ShardvecCluster, simulated_cluster
    from shardvec.coordinator.fronts.pool import FRONT_PREFIX
    from shardvec.coordinator.replicas.ray_control import NAMESPACE

    c = simulated_cluster(nodes)
    sv = ShardvecCluster(
        {"data_dir": str(data_dir), "port": 0, "front_port": 0, "front_refresh_s": 1.0},
        ray_address=c.address,
    )
    try:
        fronts: list[dict[str, Any]] = [dict(f) for f in sv.wait_fronts(nodes, 180)]
        for f in fronts:
            handle: Any = ray.get_actor(FRONT_PREFIX + f["node_id"], namespace=NAMESPACE)
            stats: dict[str, Any] = ray.get(handle.stats.remote())
            f["pid"] = int(stats["pid"])
        yield sv, fronts
    finally:
        sv.stop()
        ray.shutdown()
        c.shutdown()


def _load(sv: Any, nodes: int, queries: np.ndarray) -> None:
    from shardvec.cluster.client import Client

    with Client(sv.address, timeout=120, discover=False) as client:
        col = client.create_collection("bench", dim=DIM, shards=1, replicas=nodes)
        client.wait_live("bench", 180)
        rng = np.random.default_rng(1)
        vecs = rng.standard_normal((ROWS, DIM)).astype(np.float32)
        col.upsert([str(i) for i in range(ROWS)], vecs)
        col.search(queries[:4], k=10)


def _paced(address: str, qps: float, seconds: float, queries: np.ndarray,
           out: dict[str, Any]) -> None:  # fmt: skip
    """Single queries at `qps` to `address` for `seconds` (open loop: a late query is not
    made up for by a burst)."""
    from shardvec.cluster.client import Client

    done = 0
    with Client(address, timeout=30, discover=False) as c:
        col = c.get_collection("bench")
        start = time.perf_counter()
        end = start + seconds
        i = 0
        while (now := time.perf_counter()) < end:
            slot = start + i / qps
            if slot > now:
                time.sleep(slot - now)
            col.search(queries[i % len(queries)], k=10)
            done += 1
            i += 1
            if time.perf_counter() - slot > 1.0:  # far behind: skip the missed slots
                i = int((time.perf_counter() - start) * qps)
    out["queries"] = done


def _closed(address: str, clients: int, seconds: float, queries: np.ndarray) -> int:
    from shardvec.cluster.client import Client

    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def worker(w: int) -> None:
        with Client(address, timeout=30, discover=False) as c:
            col = c.get_collection("bench")
            j = w
            while time.perf_counter() < stop:
                col.search(queries[j % len(queries)], k=10)
                counts[w] += 1
                j += clients

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def measure_point(nodes: int, qps: float, seconds: float, cap_clients: int,
                  data_dir: Path, log: Any = print) -> dict[str, Any]:  # fmt: skip
    queries = np.random.default_rng(7).standard_normal((256, DIM)).astype(np.float32)
    with _cluster(nodes, data_dir) as (sv, fronts):
        _load(sv, nodes, queries)
        coord_pid = sv.coordinator_pid()
        # warm every front's channels and stream
        for f in fronts:
            _paced(f["address"], 20, 0.5, queries, {})
        # Idle baseline: what each process spends with no query (gRPC polling, Ray's own
        # threads, the coordinator's health probes and front refresh), subtracted below.
        idle0 = [_cpu(f["pid"]) for f in fronts]
        ci0 = _cpu(coord_pid)
        time.sleep(IDLE_S)
        idle = [(_cpu(f["pid"]) - a) / IDLE_S for f, a in zip(fronts, idle0, strict=True)]
        coord_idle = (_cpu(coord_pid) - ci0) / IDLE_S
        outs: list[dict[str, Any]] = [{} for _ in fronts]
        cpu0 = [_cpu(f["pid"]) for f in fronts]
        c0 = _cpu(coord_pid)
        t0 = time.perf_counter()
        threads = [
            threading.Thread(target=_paced, args=(f["address"], qps / nodes, seconds, queries, o))
            for f, o in zip(fronts, outs, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        cpu1 = [_cpu(f["pid"]) for f in fronts]
        coord_cpu = _cpu(coord_pid) - c0
        per_front = []
        for f, o, a, b, base in zip(fronts, outs, cpu0, cpu1, idle, strict=True):
            n = int(o.get("queries", 0))
            marginal = max(0.0, (b - a) - base * wall)
            per_front.append({
                "address": f["address"], "queries": n, "cpu_s": round(b - a, 3),
                "idle_core_share": round(base, 3),
                "cpu_us_per_query": round((b - a) / n * 1e6) if n else None,
                "marginal_cpu_us_per_query": round(marginal / n * 1e6) if n else None,
                "core_share": round((b - a) / wall, 3),
            })  # fmt: skip
        total = sum(p["queries"] for p in per_front)
        point: dict[str, Any] = {
            "nodes": nodes,
            "offered_qps": qps,
            "achieved_qps": round(total / wall, 1),
            "fronts": per_front,
            "front_cpu_us_per_query": round(
                sum(p["cpu_s"] for p in per_front) / max(total, 1) * 1e6
            ),
            "front_marginal_cpu_us_per_query": round(
                sum(max(0.0, b - a - base * wall) for a, b, base in zip(cpu0, cpu1, idle,
                                                                      strict=True))
                / max(total, 1) * 1e6
            ),
            "coordinator_cpu_us_per_query": round(coord_cpu / max(total, 1) * 1e6),
            "coordinator_marginal_cpu_us_per_query": round(
                max(0.0, coord_cpu - coord_idle * wall) / max(total, 1) * 1e6
            ),
            "coordinator_idle_core_share": round(coord_idle, 3),
        }
        log(f"nodes={nodes}: {point['achieved_qps']} QPS of {qps} offered, "
            f"{point['front_cpu_us_per_query']} µs front CPU / query, "
            f"{point['front_marginal_cpu_us_per_query']} above idle")  # fmt: skip
        if nodes == 1 and cap_clients:
            front = fronts[0]
            for label, address, pid in (
                ("front", front["address"], front["pid"]),
                ("coordinator", sv.address, coord_pid),
            ):
                a = _cpu(pid)
                t0 = time.perf_counter()
                n = _closed(address, cap_clients, seconds, queries)
                wall = time.perf_counter() - t0
                used = _cpu(pid) - a
                point[f"cap_{label}"] = {
                    "clients": cap_clients, "qps": round(n / wall, 1),
                    "cpu_us_per_query": round(used / max(n, 1) * 1e6),
                    "core_share": round(used / wall, 3),
                    "qps_at_one_core": round(n / max(used, 1e-9), 1),
                }  # fmt: skip
                log(f"cap through the {label}: {point[f'cap_{label}']}")
        return point


def table(points: list[dict[str, Any]]) -> str:
    lines = [
        "| nodes (fronts) | offered QPS | achieved QPS | front CPU µs / query (each front) "
        "| same, above idle | front core share (each) | coordinator CPU µs / query, above idle |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        each = ", ".join(str(f["cpu_us_per_query"]) for f in p["fronts"])
        share = ", ".join(f"{f['core_share']:.2f}" for f in p["fronts"])
        lines.append(
            f"| {p['nodes']} | {p['offered_qps']:.0f} | {p['achieved_qps']} | "
            f"{p['front_cpu_us_per_query']} ({each}) | {p['front_marginal_cpu_us_per_query']} | "
            f"{share} | {p['coordinator_marginal_cpu_us_per_query']} |"
        )
    for p in points:
        for label in ("front", "coordinator"):
            cap = p.get(f"cap_{label}")
            if cap:
                lines.append(
                    f"\ncap of one {label} ({cap['clients']} closed-loop clients): "
                    f"{cap['qps']} QPS, {cap['cpu_us_per_query']} µs CPU / query, "
                    f"{cap['core_share']:.2f} of a core; {cap['qps_at_one_core']} QPS per core"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shardvec bench fronts", description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", default="1,2,4", help="simulated node counts, comma separated")
    ap.add_argument("--qps", type=float, default=120.0, help="offered load, spread over fronts")
    ap.add_argument("--seconds", type=float, default=8.0, help="measured window per point")
    ap.add_argument("--cap-clients", type=int, default=8, help="closed-loop clients (0: none)")
    ap.add_argument("--out", "--json", dest="out", type=Path, default=None,
                    help="JSON path (default bench/results/fronts.json)")
    args = ap.parse_args(argv)
    import tempfile

    points = []
    for nodes in (int(x) for x in args.nodes.split(",")):
        with tempfile.TemporaryDirectory(prefix="shardvec-bench-fronts-") as tmp:
            points.append(
                measure_point(nodes, args.qps, args.seconds, args.cap_clients, Path(tmp) / "d")
            )
    out = {"config": {"dim": DIM, "rows": ROWS, "shards": 1, "k": 10, **vars(args),
                      "out": str(args.out), "cpus": psutil.cpu_count()},
           "points": points}  # fmt: skip
    print(table(points))
    write_results("fronts", out, args.out)
    return 0

