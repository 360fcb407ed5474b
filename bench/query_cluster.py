"""The cluster side of the query benchmark: bring-up (or attach), load, batch and concurrent search.

Everything goes through the public gRPC API with the Python client, as a user's code would.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import psutil

from shardvec.bench.measure import LoadResult, ids_to_rows, recall_at_k
from shardvec.cluster.client import Client, Collection
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc


@contextlib.contextmanager
def cluster_address(
    server: str | None, data_dir: Path | None, num_cpus: int, settings: dict[str, Any]
) -> Iterator[str]:
    """The address of a running cluster: `server` as given, else an embedded one for the run."""
    if server:
        yield server
        return
    from shardvec.cluster.bringup import ShardvecCluster

    own = data_dir is None
    directory = data_dir if data_dir is not None else Path(tempfile.mkdtemp(prefix="shardvec-"))
    try:
        conf = {"data_dir": str(directory), "port": 0, **settings}
        with ShardvecCluster(conf, num_cpus=num_cpus) as c:
            yield c.address
    finally:
        if own:
            shutil.rmtree(directory, ignore_errors=True)


def load_collection(
    client: Client,
    name: str,
    base: npt.NDArray[np.float32],
    *,
    shards: int,
    m: int,
    ef_construction: int,
    batch: int,
    metadatas: list[dict[str, Any]] | None = None,
) -> tuple[Collection, float]:
    """Create `name` (S shards, 1 replica) and upsert every base row as id str(row), with
    `metadatas[row]` as its metadata when given."""
    col = client.create_collection(
        name, int(base.shape[1]), "cosine", shards=shards, replicas=1, m=m,
        ef_construction=ef_construction,
    )
    start = time.perf_counter()
    col.upsert([str(i) for i in range(len(base))], base, metadatas, batch_size=batch)
    return col, time.perf_counter() - start


def batch_search(
    col: Collection,
    queries: npt.NDArray[np.float32],
    k: int,
    ef: int | None,
    batch: int,
    *,
    reps: int,
    streams: int = 1,
) -> tuple[npt.NDArray[np.int64], float]:
    """Search every query in `batch`-query requests; returns (ids, best QPS over `reps`).

    With `streams` > 1, that many threads each send the whole query set at once, so the
    cluster always has a batch to work on while another one's results travel.
    """
    found: list[list[str]] = []
    best = 0.0

    def one_pass(out: list[list[str]] | None) -> None:
        for s in range(0, len(queries), batch):
            ids, _ = col.search_ids(queries[s : s + batch], k=k, ef=ef)
            if out is not None:
                out.extend(ids)

    for _ in range(reps):
        found = []
        threads = [
            threading.Thread(target=one_pass, args=(found if i == 0 else None,), daemon=True)
            for i in range(streams)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = max(best, streams * len(queries) / (time.perf_counter() - start))
    return ids_to_rows(found, k), best


class CpuMeter:
    """CPU seconds (user + system) that each cluster process spends between start and stop:
    where a query's cost goes (client, coordinator, each shard replica)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs: dict[str, psutil.Process] = {}
        for label, pid in pids.items():
            with contextlib.suppress(psutil.Error):
                self.procs[label] = psutil.Process(pid)
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        out = {}
        for label, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                out[label] = float(t.user + t.system)
        return out

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> None:
        end = self._now()
        self.used = {k: end[k] - v for k, v in self._start.items() if k in end}

    def per_query_ms(self, queries: int) -> dict[str, float]:
        return {k: round(v / max(queries, 1) * 1e3, 4) for k, v in self.used.items()}


def cluster_pids(client: Client, name: str, address: str) -> dict[str, int]:
    """This process, the coordinator (the local process listening on the address's port) and
    every replica of `name`, by label."""
    pids = {"client": os.getpid()}
    port = int(address.rsplit(":", 1)[1])
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if "ray::Coordinator" in " ".join(proc.info["cmdline"] or ()) and any(
                c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
                for c in proc.net_connections()
            ):
                pids["coordinator"] = proc.pid
    for r in client.describe(name).get("replica_states", []):
        pids[f"shard{r['shard']}/r{r['replica']}"] = int(r["pid"])
    return pids


async def concurrent_singles(
    address: str,
    name: str,
    queries: npt.NDArray[np.float32],
    gt: npt.NDArray[np.int64],
    *,
    k: int,
    clients: int,
    seconds: float,
    api_key: str | None = None,
    meter: CpuMeter | None = None,
) -> LoadResult:
    """`clients` concurrent clients, each with its own connection, each sending one query at
    a time (the public Search RPC with default parameters) for `seconds`; every call's
    latency is kept. The clients are coroutines on one grpc.aio event loop, so the load
    generator costs little CPU next to the cluster (a thread per client would contend for
    this process's GIL)."""
    nq = len(queries)
    requests = []
    for j in range(nq):
        req = pb.SearchRequest(collection=name, k=k)
        req.queries.dim = int(queries.shape[1])
        req.queries.packed = np.ascontiguousarray(queries[j : j + 1], dtype="<f4").tobytes()
        requests.append(req)
    metadata = (("x-api-key", api_key),) if api_key else ()
    latencies: list[float] = []
    errors = [0]
    first_error: list[str] = []
    found: dict[int, list[str]] = {}
    go = asyncio.Event()
    stop_at = [math.inf]
    ready = [0]

    async def worker(w: int) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.VectorSearchStub(channel)
            await stub.Search(requests[w % nq], timeout=30, metadata=metadata)  # connect, warm
            ready[0] += 1
            await go.wait()
            i = w
            while (t0 := time.perf_counter()) < stop_at[0]:
                j = i % nq
                i += clients
                try:
                    resp = await stub.Search(requests[j], timeout=10, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    errors[0] += 1
                    if not first_error:
                        first_error.append(f"{exc.code().name}: {exc.details()}")
                    continue
                finally:
                    latencies.append(time.perf_counter() - t0)
                found.setdefault(j, list(resp.results[0].ids))

    tasks = [asyncio.ensure_future(worker(w)) for w in range(clients)]
    while ready[0] < clients and not any(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    start = time.perf_counter()
    stop_at[0] = start + seconds
    if meter is not None:
        meter.start()
    go.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    if meter is not None:
        meter.stop()
    all_lat = np.array(latencies) * 1e3
    rows = sorted(found)
    recall = recall_at_k(ids_to_rows([found[j] for j in rows], k), gt[rows], k) if rows else 0.0
    calls = len(all_lat)
    return LoadResult(
        clients=clients,
        seconds=round(elapsed, 3),
        calls=calls,
        errors=errors[0],
        qps=(calls - errors[0]) / elapsed,
        p50_ms=float(np.percentile(all_lat, 50)) if calls else float("nan"),
        p99_ms=float(np.percentile(all_lat, 99)) if calls else float("nan"),
        max_ms=float(all_lat.max()) if calls else float("nan"),
        recall=recall,
        first_error=first_error[0] if first_error else "",
    )
