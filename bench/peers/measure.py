"""One peer measured: build, the breadth sweep (batch QPS and recall@k), single queries at the
smallest breadth reaching --target, concurrent clients, pgvector's filtered queries."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np

from .common import MAX_PASS_S, Peer, SingleSearch, recall
from .pgvector import PgVector


def concurrent(
    peer: Peer, ef: int | None, queries: np.ndarray, gt: np.ndarray, clients: int, seconds: float
) -> dict[str, Any] | None:
    """`clients` threads, each with its own client, sending single queries for `seconds`."""
    if not peer.networked:
        return None
    fns: list[SingleSearch] = []
    for _ in range(clients):  # connect before the clock starts
        fn = peer.single_client(ef)
        if fn is None:
            return None
        fns.append(fn)
    lat: list[list[float]] = [[] for _ in range(clients)]
    hits, errors = [0] * clients, [0] * clients
    start = threading.Barrier(clients + 1)
    stop = [0.0]

    def worker(t: int) -> None:
        fn, j = fns[t], t
        start.wait()
        while time.perf_counter() < stop[0]:
            q = j % len(queries)
            t0 = time.perf_counter()
            try:
                ids = fn(queries[q])
            except Exception:
                errors[t] += 1
            else:
                lat[t].append(time.perf_counter() - t0)
                hits[t] += len(set(ids[: peer.k]) & set(gt[q, : peer.k].tolist()))
            j += clients

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(clients)]
    for th in threads:
        th.start()
    stop[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    all_lat = [x for per in lat for x in per]
    calls = len(all_lat)
    return {
        "clients": clients, "calls": calls, "errors": sum(errors), "qps": calls / wall,
        "recall": sum(hits) / (calls * peer.k) if calls else 0.0,
        "p50_ms": float(np.percentile(all_lat, 50) * 1e3) if calls else float("nan"),
        "p99_ms": float(np.percentile(all_lat, 99) * 1e3) if calls else float("nan"),
    }  # fmt: skip


def measure(
    peer: Peer, base: np.ndarray, queries: np.ndarray, gt: np.ndarray, args: Any
) -> dict[str, Any]:
    k = args.k
    start = time.perf_counter()
    peer.build(base)
    out: dict[str, Any] = {"build_s": time.perf_counter() - start, "sweep": [],
                           "batch": peer.batch_label or f"{peer.batch}-query requests"}  # fmt: skip
    for attr in ("load_s", "index_s"):
        if hasattr(peer, attr):
            out[attr] = getattr(peer, attr)
    chosen: dict[str, Any] | None = None
    for ef in peer.efs():
        best = 0.0
        for _ in range(2):  # the better of two passes, each capped at MAX_PASS_S
            t0 = time.perf_counter()
            found: list[list[int]] = []
            for s in range(0, len(queries), peer.batch):
                found.extend(peer.search(queries[s : s + peer.batch], ef))
                if time.perf_counter() - t0 > MAX_PASS_S:
                    break
            best = max(best, len(found) / (time.perf_counter() - t0))
        point = {"ef": ef, "recall": recall(found, gt, k), "qps": best, "queries": len(found)}
        out["sweep"].append(point)
        print(f"  {peer.name} ef={ef} recall={point['recall']:.4f} qps={point['qps']:.0f}",
              file=sys.stderr, flush=True)
        if point["recall"] >= args.target:
            chosen = point
            break
    out["at_target"] = chosen
    if chosen is not None:
        lat = []
        stop = time.perf_counter() + args.seconds
        j = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            peer.search(queries[j % len(queries) : j % len(queries) + 1], chosen["ef"])
            lat.append(time.perf_counter() - t0)
            j += 1
        out["single"] = {
            "calls": len(lat),
            "qps": len(lat) / sum(lat),
            "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3),
        }
        print(f"  {peer.name} single: p50={out['single']['p50_ms']:.2f} ms "
              f"p99={out['single']['p99_ms']:.2f} ms", file=sys.stderr, flush=True)
        out["concurrency"] = []
        for clients in [int(c) for c in args.clients.split(",") if c]:
            row = concurrent(peer, chosen["ef"], queries, gt, clients, args.seconds)
            if row is None:
                break
            out["concurrency"].append(row)
            print(f"  {peer.name} {clients} clients: qps={row['qps']:.0f} "
                  f"p50={row['p50_ms']:.2f} ms p99={row['p99_ms']:.2f} ms "
                  f"errors={row['errors']} recall={row['recall']:.4f}", file=sys.stderr, flush=True)
        if isinstance(peer, PgVector):
            out["filtered"] = peer.filtered(base, queries, chosen["ef"])
    return out
