"""The paper cost model of docs/cost-model.md: predicted QPS, latency and memory for large
collections on N nodes, from the per-part costs measured by bench_costs.py (costs.json) and
the end-to-end coordinator CPU measured by `shardvec bench scale` (scale.json).

Everything printed here is extrapolated; the inputs it reads are measured. Usage:
python bench/cost_model.py [--costs bench/results/costs.json]
       [--scale bench/results/scale/scale.json]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30
PROCESS_OVERHEAD_BYTES = 150 * (1 << 20)  # one replica process without its index (measured
# replica RSS minus index size is 100-200 MB: Python, Ray worker, gRPC, SQLite cache)


@dataclass(frozen=True)
class Inputs:
    """The measured constants the model runs on (µs are CPU microseconds)."""

    search_a_us: float  # per-shard search CPU per query: a + b*ln(n), at `ef`
    search_b_us: float
    ef: int
    bytes_per_vector: float  # hnswlib index file bytes per 384-d vector
    rpc_client_us: float  # coordinator CPU per shard RPC (grpc.aio RemoteShard, 1 query)
    rpc_server_us: float  # replica CPU per shard RPC beyond the search itself
    coord_fixed_us: float  # coordinator CPU per single-query Search, fixed part
    coord_per_shard_us: float  # coordinator CPU per single-query Search, per shard
    coord_batch_us_per_query: float  # coordinator CPU per query inside 1000-query batches
    rtt_us: float = 200.0  # assumed: one network round trip between nodes (not loopback)


def load_inputs(costs: dict[str, Any], scale: dict[str, Any] | None) -> Inputs:
    s = costs["search"]
    ef = max(s["efs"])
    fit = s["fit_batch_cpu_us"][str(ef)]
    rpc = costs["rpc"]
    inproc_one_us = rpc["inproc_ms"]["one_cpu_ms"] * 1e3
    client_us = rpc["aio_1q"]["client_cpu_ms"] * 1e3
    server_us = max(0.0, rpc["aio_1q"]["server_cpu_ms"] * 1e3 - inproc_one_us)
    fixed, per_shard, batch = _coordinator_fit(costs, scale, client_us)
    return Inputs(
        search_a_us=fit["a_us"],
        search_b_us=fit["b_us_per_ln_n"],
        ef=ef,
        bytes_per_vector=s["index_bytes_per_vector"],
        rpc_client_us=client_us,
        rpc_server_us=server_us,
        coord_fixed_us=fixed,
        coord_per_shard_us=per_shard,
        coord_batch_us_per_query=batch,
    )


def _coordinator_fit(
    costs: dict[str, Any], scale: dict[str, Any] | None, client_us: float
) -> tuple[float, float, float]:
    """Coordinator CPU per single query = fixed + per_shard * S, fitted to the scale run's
    one-client level (measured end to end, every RPC included) when there is one; otherwise
    built from the in-process steps plus one client RPC per shard. Batch: µs per query in
    1000-query requests at the largest shard count measured."""
    rows = [r for r in costs["coordinator"]["rows"] if r["nq"] == 1]
    if scale is not None:
        pts = [p for p in scale["points"] if p["replicas"] == 1 and p["nodes"] <= 1]
        xs, ys = [], []
        for p in pts:
            one = [lv for lv in p["levels"] if lv["clients"] == 1]
            if one and one[0]["coord_cpu_us_per_query"]:
                xs.append(p["shards"])
                ys.append(one[0]["coord_cpu_us_per_query"])
        if len(set(xs)) >= 2:
            per_shard, fixed = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
            batch = [p["coord_cpu_us_per_query_batch"] for p in pts
                     if p["coord_cpu_us_per_query_batch"] is not None]  # fmt: skip
            return float(fixed), float(max(per_shard, client_us)), float(max(batch or [0.0]))
    xs = [r["shards"] for r in rows]
    ys = [r["total_us"] + client_us * r["shards"] for r in rows]
    per_shard, fixed = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    big = [r for r in costs["coordinator"]["rows"] if r["nq"] == 1000]
    return float(fixed), float(per_shard), float(max(r["total_us_per_query"] for r in big))


def search_us(inp: Inputs, n: float) -> float:
    return inp.search_a_us + inp.search_b_us * math.log(n)


@dataclass(frozen=True)
class Layout:
    vectors: float
    nodes: int
    cores: int  # per node
    shards: int
    replicas: int

    @property
    def label(self) -> str:
        return (f"| {self.vectors / 1e6:,.0f}M | {self.nodes} x {self.cores} | "
                f"{self.shards} x {self.replicas} |")  # fmt: skip


def memory_gib_per_node(inp: Inputs, lay: Layout) -> float:
    copies = lay.vectors * lay.replicas * inp.bytes_per_vector
    processes = lay.shards * lay.replicas * PROCESS_OVERHEAD_BYTES
    return (copies + processes) / lay.nodes / GIB


def batch_qps(inp: Inputs, lay: Layout) -> tuple[float, float]:
    """(replica-bound, coordinator-bound) QPS for 1000-query requests: every query is one
    search on every shard, RPC costs amortised over the batch; the coordinator is one
    process (one core: its event loop holds the GIL)."""
    t = search_us(inp, lay.vectors / lay.shards)
    return lay.nodes * lay.cores * 1e6 / (lay.shards * t), 1e6 / inp.coord_batch_us_per_query


def single_qps(inp: Inputs, lay: Layout, coalesce: int) -> tuple[float, float]:
    """(replica-bound, coordinator-bound) QPS for single-query requests when the
    coordinator's micro-batcher puts `coalesce` queries into each shard RPC (1: none)."""
    t = search_us(inp, lay.vectors / lay.shards)
    replica_us = lay.shards * (t + inp.rpc_server_us / coalesce)
    cores_bound = lay.nodes * lay.cores * 1e6 / replica_us
    # A replica's per-RPC Python work holds its process's GIL: each replica process serves at
    # most 1e6 / rpc_server_us shard RPCs per second, and every query sends one RPC per shard.
    gil_bound = lay.replicas * coalesce * 1e6 / inp.rpc_server_us
    coord_us = inp.coord_fixed_us + inp.coord_per_shard_us * lay.shards / coalesce
    return min(cores_bound, gil_bound), 1e6 / coord_us


def idle_latency_ms(inp: Inputs, lay: Layout) -> float:
    """One query on an idle cluster: the coordinator's serial work (it sends and parses the S
    shard RPCs on one event loop), one shard RPC and search, and two network round trips."""
    t = search_us(inp, lay.vectors / lay.shards)
    coord = inp.coord_fixed_us + inp.coord_per_shard_us * lay.shards
    return (coord + inp.rpc_server_us + t + 2 * inp.rtt_us) / 1e3


def tables(inp: Inputs, layouts: list[Layout], coalesce: int) -> str:
    out = ["| vectors | nodes x cores | shards x replicas | GiB/node | search µs/shard "
           "| batch QPS: replicas / 1 coordinator | single-query QPS, no coalescing: "
           f"replicas / 1 coordinator | same, {coalesce} per shard RPC | idle latency ms |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for lay in layouts:
        t = search_us(inp, lay.vectors / lay.shards)
        b = batch_qps(inp, lay)
        s1 = single_qps(inp, lay, 1)
        sb = single_qps(inp, lay, coalesce)
        out.append(
            f"{lay.label} {memory_gib_per_node(inp, lay):,.1f} | {t:,.0f} | "
            f"{b[0]:,.0f} / {b[1]:,.0f} | {s1[0]:,.0f} / {s1[1]:,.0f} | "
            f"{sb[0]:,.0f} / {sb[1]:,.0f} | {idle_latency_ms(inp, lay):,.1f} |"
        )
    return "\n".join(out)


DEFAULT_LAYOUTS = [
    Layout(10e6, 4, 16, 4, 2), Layout(10e6, 4, 16, 16, 2), Layout(10e6, 16, 16, 16, 2),
    Layout(10e6, 16, 16, 64, 2), Layout(100e6, 16, 16, 16, 2), Layout(100e6, 16, 16, 64, 2),
    Layout(100e6, 64, 16, 64, 2), Layout(100e6, 64, 16, 256, 2),
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--costs", type=Path, default=REPO / "bench" / "results" / "costs.json")
    p.add_argument("--scale", type=Path, default=REPO / "bench" / "results" / "scale" /
                   "scale.json")  # fmt: skip
    p.add_argument("--coalesce", type=int, default=8,
                   help="queries per shard RPC assumed for busy single-query traffic")
    args = p.parse_args(argv)
    costs = json.loads(args.costs.read_text())
    scale = json.loads(args.scale.read_text()) if args.scale.exists() else None
    inp = load_inputs(costs, scale)
    print("inputs (measured):")
    for k, v in vars(inp).items():
        print(f"  {k} = {v:,.2f}" if isinstance(v, float) else f"  {k} = {v}")
    print()
    print(tables(inp, DEFAULT_LAYOUTS, args.coalesce))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
