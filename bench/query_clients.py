"""Clients of the query benchmark: batches, one single-query client, and many
concurrent clients in several processes, each through the public Python client.

Two modes everywhere: "ids" (`Collection.search_ids`, no metadata) and "metadata" (the default
`Collection.search`, include_metadata=True, each hit's metadata parsed into a dict).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shardvec.bench.measure import LoadResult, ids_to_rows, recall_at_k
from shardvec.cluster.client import Client, Collection

MODES = ("ids", "metadata")
Where = Mapping[str, Any] | None


def search_rows(
    col: Collection,
    queries: npt.NDArray[np.float32],
    k: int,
    mode: str,
    *,
    ef: int | None = None,
    where: Where = None,
    exact: bool = False,
) -> tuple[list[list[str]], list[list[dict[str, Any] | None]]]:
    """One Search call in `mode`: per query the hit ids, and (metadata mode) their metadata."""
    if mode == "ids":
        ids, _ = col.search_ids(queries, k=k, ef=ef, where=where, exact=exact)
        return ids, []
    hits = col.search(queries, k=k, ef=ef, where=where, exact=exact)
    return [[h.id for h in row] for row in hits], [[h.metadata for h in row] for row in hits]


def batches(
    col: Collection,
    queries: npt.NDArray[np.float32],
    k: int,
    mode: str,
    batch: int,
    *,
    ef: int | None = None,
    where: Where = None,
) -> tuple[npt.NDArray[np.int64], list[list[dict[str, Any] | None]], float]:
    """Every query in `batch`-query calls: (ids as rows, metadata per hit, seconds)."""
    found: list[list[str]] = []
    metas: list[list[dict[str, Any] | None]] = []
    start = time.perf_counter()
    for s in range(0, len(queries), batch):
        ids, meta = search_rows(col, queries[s : s + batch], k, mode, ef=ef, where=where)
        found.extend(ids)
        metas.extend(meta)
    return ids_to_rows(found, k), metas, time.perf_counter() - start


def in_turn(
    runs: dict[str, Callable[[], Any]], rounds: int, meter: Callable[[], Any] | None = None
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Best seconds of each run over `rounds` rounds, the runs timed one after another in
    each round (background load on a shared machine weighs on all alike); with `meter` (a
    factory of started/stopped CPU meters), also each run's CPU seconds per process, summed
    over the rounds."""
    best: dict[str, float] = {}
    cpu: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            m = meter() if meter is not None else None
            if m is not None:
                m.start()
            t0 = time.perf_counter()
            run()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
            if m is not None:
                m.stop()
                acc = cpu.setdefault(name, {})
                for proc, used in m.used.items():
                    acc[proc] = acc.get(proc, 0.0) + used
    return best, cpu


def metadata_agrees(
    ids: npt.NDArray[np.int64], metas: list[list[dict[str, Any] | None]],
    meta: list[dict[str, Any]],
) -> float:
    """Fraction of returned hits whose metadata equals what was loaded for that row."""
    good = total = 0
    for row_ids, row_meta in zip(ids, metas, strict=False):
        for rid, m in zip(row_ids, row_meta, strict=False):
            total += 1
            good += int(rid >= 0 and m == meta[int(rid)])
    return good / total if total else float("nan")


@dataclass
class Latency:
    """Sequential calls from one client: percentiles, and the recall of what came back."""

    calls: int
    errors: int
    qps: float
    p50_ms: float
    p99_ms: float
    recall: float
    first_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _latency(lat: list[float], errors: int, found: dict[int, list[str]],
             gt: npt.NDArray[np.int64], k: int, first_error: str, wall: float) -> Latency:
    arr = np.array(lat) * 1e3
    rows = sorted(found)
    rec = recall_at_k(ids_to_rows([found[j] for j in rows], k), gt[rows], k) if rows else 0.0
    return Latency(
        calls=len(arr), errors=errors, qps=(len(arr) - errors) / wall if wall else 0.0,
        p50_ms=float(np.percentile(arr, 50)) if len(arr) else float("nan"),
        p99_ms=float(np.percentile(arr, 99)) if len(arr) else float("nan"),
        recall=rec, first_error=first_error,
    )  # fmt: skip


def single_queries(
    col: Collection,
    queries: npt.NDArray[np.float32],
    gt: npt.NDArray[np.int64],
    k: int,
    modes: tuple[str, ...],
    seconds: float,
    *,
    where: Where = None,
    exact: bool = False,
    max_calls: int | None = None,
) -> dict[str, Latency]:
    """One client, one query per call, the modes alternating call by call (so both see the
    same machine) for `seconds` in all (or `max_calls` calls per mode), and at least one call
    per mode however long the first ones take (a smoke run of 0.25 s on a slow machine once
    ended after one call, leaving the other mode unmeasured)."""
    lat: dict[str, list[float]] = {m: [] for m in modes}
    found: dict[str, dict[int, list[str]]] = {m: {} for m in modes}
    errors = dict.fromkeys(modes, 0)
    first: dict[str, str] = dict.fromkeys(modes, "")
    for m in modes:  # warm up
        search_rows(col, queries[:1], k, m, where=where, exact=exact)
    start = time.perf_counter()
    stop = start + seconds
    i = 0
    while (time.perf_counter() < stop or i < len(modes)) and (
        max_calls is None or i < max_calls * len(modes)
    ):
        m = modes[i % len(modes)]
        j = (i // len(modes)) % len(queries)
        t0 = time.perf_counter()
        try:
            ids, _ = search_rows(col, queries[j : j + 1], k, m, where=where, exact=exact)
        except Exception as exc:
            errors[m] += 1
            first[m] = first[m] or f"{type(exc).__name__}: {exc}"
        else:
            found[m].setdefault(j, ids[0])
        lat[m].append(time.perf_counter() - t0)
        i += 1
    wall = time.perf_counter() - start
    return {m: _latency(lat[m], errors[m], found[m], gt, k, first[m], wall / len(modes))
            for m in modes}  # fmt: skip


def _measure(conn: Any, col: Collection, queries: npt.NDArray[np.float32], k: int, mode: str,
             threads: int, first_row: int, stride: int, seconds: float) -> dict[str, Any]:
    """One measurement in a client process: `threads` threads, each warmed by one call, start
    together at the wall-clock time the parent sends and run single queries for `seconds`."""
    go = threading.Event()
    stop_at = [0.0]
    lat: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    first: list[str] = []
    found: dict[int, list[str]] = {}
    ready = threading.Barrier(threads + 1)

    def worker(t: int) -> None:
        j = first_row + t
        with contextlib.suppress(Exception):  # a failure counts when it recurs, timed
            search_rows(col, queries[j % len(queries)][None, :], k, mode)  # warm
        ready.wait()
        go.wait()
        while (t0 := time.perf_counter()) < stop_at[0]:
            q = j % len(queries)
            j += stride
            try:
                ids, _ = search_rows(col, queries[q][None, :], k, mode)
            except Exception as exc:
                errors[t] += 1
                if not first:
                    first.append(f"{type(exc).__name__}: {exc}")
            else:
                found.setdefault(q, ids[0])
            lat[t].append(time.perf_counter() - t0)

    pool = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for th in pool:
        th.start()
    ready.wait()
    conn.send({"op": "ready"})
    start_at = conn.recv()["start_at"]  # wall clock, the same for every process
    while time.time() < start_at:
        time.sleep(0.0005)
    c0 = time.process_time()
    stop_at[0] = time.perf_counter() + seconds
    go.set()
    for th in pool:
        th.join()
    return {"lat": [x for per in lat for x in per], "errors": sum(errors),
            "first_error": first[0] if first else "", "found": found,
            "cpu_s": time.process_time() - c0}  # fmt: skip


def _client_process(conn: Any, address: str, api_key: str | None, dim: int,
                    queries: npt.NDArray[np.float32], k: int, threads: int, index: int,
                    stride: int) -> None:
    """A client process: its own Client (one channel) shared by `threads` threads; runs
    the measurements the parent asks for on `conn` until told to stop."""
    client = Client(address, api_key=api_key, timeout=60)
    try:
        while True:
            cmd = conn.recv()
            if cmd["op"] == "stop":
                break
            col = Collection(client, cmd["collection"], dim, "cosine")
            conn.send(_measure(conn, col, queries, k, cmd["mode"], threads, index * threads,
                               stride, cmd["seconds"]))
    finally:
        client.close()
        conn.close()


class ClientPool:
    """`processes` client processes (spawned), `threads` client threads in each, started
    once and reused for every measurement of a run."""

    def __init__(self, address: str, api_key: str | None, queries: npt.NDArray[np.float32],
                 k: int, *, processes: int, threads: int) -> None:
        self.processes, self.threads, self.k = processes, threads, k
        ctx = mp.get_context("spawn")
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        for p in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_client_process, daemon=True,
                args=(child, address, api_key, int(queries.shape[1]), queries, k, threads,
                      p, processes * threads),
            )  # fmt: skip
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def run(self, collection: str, mode: str, seconds: float, gt: npt.NDArray[np.int64]
            ) -> LoadResult:
        for c in self.conns:
            c.send({"op": "run", "collection": collection, "mode": mode, "seconds": seconds})
        for c in self.conns:
            c.recv()  # ready: connected, each thread warmed by one call
        start_at = time.time() + 0.2
        for c in self.conns:
            c.send({"start_at": start_at})
        parts = [c.recv() for c in self.conns]
        lat = np.array([x for p in parts for x in p["lat"]]) * 1e3
        errors = sum(p["errors"] for p in parts)
        found: dict[int, list[str]] = {}
        for p in parts:
            found.update(p["found"])
        rows = sorted(found)
        rec = recall_at_k(ids_to_rows([found[j] for j in rows], self.k), gt[rows], self.k) \
            if rows else 0.0
        calls = len(lat)
        return LoadResult(
            clients=self.processes * self.threads, processes=self.processes,
            threads=self.threads, mode=mode, seconds=seconds,
            calls=calls, errors=errors, qps=(calls - errors) / seconds,
            p50_ms=float(np.percentile(lat, 50)) if calls else float("nan"),
            p99_ms=float(np.percentile(lat, 99)) if calls else float("nan"),
            max_ms=float(lat.max()) if calls else float("nan"), recall=rec,
            client_cpu_ms_per_query=sum(p["cpu_s"] for p in parts) / max(calls, 1) * 1e3,
            first_error=next((p["first_error"] for p in parts if p["first_error"]), ""),
            per_process_calls=[len(p["lat"]) for p in parts],
        )  # fmt: skip

    def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.send({"op": "stop"})
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
