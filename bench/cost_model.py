"""The paper cost model of docs/cost-model.md: predicted QPS, latency and memory for large
collections on N nodes, from the per-part costs measured by `shardvec bench costs` (costs.json) and
the end-to-end coordinator CPU measured by `shardvec bench scale` (scale.json).

Everything printed here is extrapolated; the inputs it reads are measured. Usage:
shardvec bench cost-model [--costs bench/results/costs.json]
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

from shardvec.bench.results import RESULTS

GIB = 1 << 30
# One replica process without its index: the scale run measures RSS = ~135 MiB + 1.7 KB per
# row (Python, the Ray worker, gRPC, SQLite's cache); rounded up.
PROCESS_OVERHEAD_BYTES = 150 * (1 << 20)


@dataclass(frozen=True)
class Inputs:
    """The measured constants the model runs on (µs are CPU microseconds)."""

    search_a_us: float  # per-shard search CPU per query: a + b*ln(n), at `ef`
    search_b_us: float
    ef: int
    bytes_per_vector: float  # hnswlib index file bytes per 384-d vector
    rpc_server_us: float  # replica CPU per 1-query shard RPC beyond the search itself
    coord_fixed_us: float  # coordinator CPU per single-query Search: fixed part ...
    coord_per_shard_us: float  # ... and per shard (end to end, from the scale run)
    batch_fixed_us: float  # coordinator CPU per query in 1000-query requests: fixed part ...
    batch_per_shard_us: float  # ... and per shard (in-process steps + one aio batch RPC)
    rtt_us: float = 200.0  # assumed: one network round trip between nodes (not loopback)


def _line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = fixed + slope * x."""
    slope, fixed = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(fixed), float(slope)


def load_inputs(costs: dict[str, Any], scale: dict[str, Any] | None) -> Inputs:
    s = costs["search"]
    ef = max(s["efs"])
    fit = s["fit_batch_cpu_us"][str(ef)]
    rpc = costs["rpc"]
    server_us = max(0.0, (rpc["aio_1q"]["server_cpu_ms"] - rpc["inproc_ms"]["one_cpu_ms"]) * 1e3)
    client_1q_us = rpc["aio_1q"]["client_cpu_ms"] * 1e3
    client_batch_us = rpc["aio_1000q"]["client_cpu_ms"] * 1e3 / 1000  # per query per shard
    rows = costs["coordinator"]["rows"]
    big = [r for r in rows if r["nq"] == 1000]
    b_fixed, b_slope = _line([r["shards"] for r in big], [r["total_us_per_query"] for r in big])
    one = [r for r in rows if r["nq"] == 1]
    fixed, per_shard = _line([r["shards"] for r in one],
                             [r["total_us"] + client_1q_us * r["shards"] for r in one])  # fmt: skip
    if scale is not None:  # measured end to end: the public server's own cost included
        xs, ys = [], []
        for p in scale["points"]:
            lv = [lv for lv in p["levels"] if lv["clients"] == 1]
            if p["replicas"] == 1 and p["nodes"] <= 1 and lv and lv[0]["coord_cpu_us_per_query"]:
                xs.append(p["shards"])
                ys.append(lv[0]["coord_cpu_us_per_query"])
        if len(set(xs)) >= 2:
            fixed, per_shard = _line(xs, ys)
    return Inputs(
        search_a_us=fit["a_us"],
        search_b_us=fit["b_us_per_ln_n"],
        ef=ef,
        bytes_per_vector=s["index_bytes_per_vector"],
        rpc_server_us=server_us,
        coord_fixed_us=fixed,
        coord_per_shard_us=per_shard,
        batch_fixed_us=b_fixed,
        batch_per_shard_us=b_slope + client_batch_us,
    )


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
    coord_us = inp.batch_fixed_us + inp.batch_per_shard_us * lay.shards
    return lay.nodes * lay.cores * 1e6 / (lay.shards * t), 1e6 / coord_us


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


def fronts_table(inp: Inputs, coalesce: int, vectors: float = 10e6, shards: int = 4,
                 cores: int = 16, front_ratio: float = 1.0) -> str:  # fmt: skip
    """Single-query QPS with one query front per node against one coordinator, for
    4, 8 and 32 nodes, with R = 2 and with a replica of every shard on every node (R = N).
    A front runs the coordinator's read code in one process (one core: its GIL), so its CPU
    per query is the coordinator's times `front_ratio` (bench/fronts.py measures the two in
    one run)."""
    out = ["| nodes x cores | shards x replicas | replica-bound QPS | 1 coordinator QPS "
           "| N fronts QPS | predicted QPS: fronts / coordinator | the limit |",
           "|---|---|---|---|---|---|---|"]  # fmt: skip
    for nodes in (4, 8, 32):
        for replicas in (2, nodes):
            lay = Layout(vectors, nodes, cores, shards, replicas)
            replica_qps, coord_qps = single_qps(inp, lay, coalesce)
            fronts_qps = nodes * coord_qps / front_ratio
            got = min(replica_qps, fronts_qps)
            t = search_us(inp, vectors / shards)
            cores_bound = nodes * cores * 1e6 / (shards * (t + inp.rpc_server_us / coalesce))
            if got == fronts_qps:
                limit = "the fronts (one process, one core each)"
            elif replica_qps < cores_bound:
                limit = "replica processes' per-RPC work (R x B x 1/h_s)"
            else:
                limit = "replica cores (search)"
            out.append(
                f"| {nodes} x {cores} | {shards} x {replicas} | {replica_qps:,.0f} | "
                f"{coord_qps:,.0f} | {fronts_qps:,.0f} | {got:,.0f} / "
                f"{min(replica_qps, coord_qps):,.0f} | {limit} |"
            )
    return "\n".join(out)


DEFAULT_LAYOUTS = [
    Layout(10e6, 4, 16, 4, 2), Layout(10e6, 4, 16, 16, 2), Layout(10e6, 16, 16, 16, 2),
    Layout(10e6, 16, 16, 64, 2), Layout(100e6, 16, 16, 16, 2), Layout(100e6, 16, 16, 64, 2),
    Layout(100e6, 64, 16, 64, 2), Layout(100e6, 64, 16, 256, 2),
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="shardvec bench cost-model", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--costs", type=Path, default=RESULTS / "costs.json")
    p.add_argument("--scale", type=Path, default=RESULTS / "scale" /
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
    ratio = 1.0
    fronts = RESULTS / "fronts.json"
    if fronts.exists():
        caps = [p for p in json.loads(fronts.read_text())["points"] if "cap_front" in p]
        if caps:
            c = caps[0]
            ratio = c["cap_front"]["cpu_us_per_query"] / c["cap_coordinator"]["cpu_us_per_query"]
    print()
    print(f"query fronts, 10M vectors, {args.coalesce} queries per shard RPC "
          f"(front / coordinator CPU per query measured: {ratio:.2f}):")  # fmt: skip
    print(fronts_table(inp, args.coalesce, front_ratio=ratio))
    return 0

