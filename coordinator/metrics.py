"""The coordinator's Prometheus metrics, on a registry of their own (not the global one).

Series (all prefixed `shardvec_`):

    requests_total{method,code}                 counter    public RPCs by status code
    request_seconds{method}                     histogram  public RPC latency
    shard_search_seconds{collection,shard}      histogram  one shard's part of a search
    batch_size                                  histogram  queries per micro-batch
    rows{collection,shard}                      gauge      live rows of the shard
    replica_state{collection,shard,replica,state} gauge    1 for the replica's current state
    replica_applied_seq{collection,shard,replica} gauge    the replica's applied seq
    replica_dirty_rows{collection,shard,replica} gauge     rows changed since its checkpoint
    checkpoint_age_seconds{collection,shard,replica} gauge seconds since its index checkpoint
    rows_expired{collection,shard,replica}      gauge      rows past their expiry, invisible to
                                                           reads, awaiting the replica's sweep
    rows_swept_total{collection,shard,replica}  counter    expired rows the replica's sweep
                                                           removed (since its process started)
    replica_repairs_total{collection,shard,replica} counter damaged replica quarantined and
                                                           rebuilt from a live peer
    recall_estimate{collection}                 gauge      recall@10 the recall tuner measured
                                                           at the breadth in force
    recall_target{collection}                   gauge      the collection's target recall
    search_ef{collection}                       gauge      per-shard ef of searches without one
                                                           (the tuned breadth; absent: untuned)

Counters and histograms are fed by hooks (the guard interceptor's `observe`, the batcher's
`on_batch`, the collection's per-shard timer). Gauges are read at scrape time: the scrape
thread asks the coordinator's event loop for every replica's figures (at most once a second).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shardvec.coordinator.replicas.replica_set import ReplicaState
from shardvec.coordinator.runtime import CoordinatorRuntime

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
REFRESH_S = 1.0  # scrapes closer together than this reuse the last figures
INFO_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ReplicaFigures:
    """One replica as a scrape sees it; count/seq/checkpoint are None when it did not answer."""

    collection: str
    shard: int
    replica: int
    state: str
    count: int | None
    applied_seq: int | None
    checkpoint_unix: float | None
    dirty_rows: int | None = None
    repairs: int = 0
    expired_rows: int | None = None
    swept_rows: int | None = None


class CoordinatorMetrics:
    """Every coordinator metric, and the HTTP endpoint that serves them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "shardvec_requests", "Public RPCs handled, by method and status code.",
            ["method", "code"], registry=r,
        )
        self.request_seconds = Histogram(
            "shardvec_request_seconds", "Latency of public RPCs in seconds.",
            ["method"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.shard_search_seconds = Histogram(
            "shardvec_shard_search_seconds",
            "Latency of one shard's part of a search (one replica, failover included).",
            ["collection", "shard"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.batch_size = Histogram(
            "shardvec_batch_size", "Queries per micro-batch sent to the shards.",
            buckets=BATCH_BUCKETS, registry=r,
        )
        self._cluster = _ClusterCollector()
        r.register(self._cluster)
        self._recall = _RecallCollector()
        r.register(self._recall)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # hooks ---------------------------------------------------------------------------

    def observe(self, method: str, code: str, seconds: float) -> None:
        """The guard interceptor's per-RPC hook."""
        self.requests.labels(method, code).inc()
        self.request_seconds.labels(method).observe(seconds)

    def observe_shard_search(self, collection: str, shard: int, seconds: float) -> None:
        self.shard_search_seconds.labels(collection, str(shard)).observe(seconds)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    # serving -------------------------------------------------------------------------

    def attach(self, runtime: CoordinatorRuntime, loop: asyncio.AbstractEventLoop) -> None:
        """Read replica figures from `runtime` on `loop` at scrape time."""
        self._cluster.runtime = runtime
        self._cluster.loop = loop
        self._recall.runtime = runtime

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP on host:port (a daemon thread; port 0: a free one).
        Returns the port bound."""
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        bound = int(self._server.server_port)
        log.info("metrics endpoint listening", extra={"address": f"{host}:{bound}"})
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _ClusterCollector(Collector):
    """Gauges of rows, replica states, seqs and checkpoint ages, read at scrape time."""

    def __init__(self) -> None:
        self.runtime: CoordinatorRuntime | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._figures: list[ReplicaFigures] = []
        self._at = 0.0

    def describe(self) -> list[Metric]:
        return list(self._families([], time.time()))

    def collect(self) -> Iterator[Metric]:
        return iter(list(self._families(self._refresh(), time.time())))

    def _refresh(self) -> list[ReplicaFigures]:
        with self._lock:
            if self.runtime is None or self.loop is None:
                return []
            if time.monotonic() - self._at < REFRESH_S:
                return self._figures
            fut = asyncio.run_coroutine_threadsafe(gather_figures(self.runtime), self.loop)
            try:
                self._figures = fut.result(timeout=INFO_TIMEOUT_S + 3)
            except Exception as exc:  # a slow or stopping coordinator: serve what we had
                fut.cancel()
                log.warning("metrics: reading replica figures failed: %r", exc)
            self._at = time.monotonic()
            return self._figures

    @staticmethod
    def _families(figures: list[ReplicaFigures], now: float) -> Iterator[Metric]:
        rows = GaugeMetricFamily(
            "shardvec_rows", "Live rows per shard (the largest count among its live replicas).",
            labels=["collection", "shard"],
        )
        state = GaugeMetricFamily(
            "shardvec_replica_state", "1 for the replica's current state, 0 for the others.",
            labels=["collection", "shard", "replica", "state"],
        )
        seq = GaugeMetricFamily(
            "shardvec_replica_applied_seq", "The newest write sequence number a replica applied.",
            labels=["collection", "shard", "replica"],
        )
        dirty = GaugeMetricFamily(
            "shardvec_replica_dirty_rows",
            "Rows a replica changed since its last index checkpoint (replayed on restart).",
            labels=["collection", "shard", "replica"],
        )
        age = GaugeMetricFamily(
            "shardvec_checkpoint_age_seconds",
            "Seconds since the replica last wrote its index checkpoint.",
            labels=["collection", "shard", "replica"],
        )
        repairs = CounterMetricFamily(
            "shardvec_replica_repairs",
            "Times a damaged replica was quarantined and rebuilt from a live peer.",
            labels=["collection", "shard", "replica"],
        )
        expired = GaugeMetricFamily(
            "shardvec_rows_expired",
            "Rows past their expiry: invisible to every read, awaiting the replica's sweep.",
            labels=["collection", "shard", "replica"],
        )
        swept = CounterMetricFamily(
            "shardvec_rows_swept",
            "Expired rows the replica's background sweep removed since its process started.",
            labels=["collection", "shard", "replica"],
        )
        per_shard: dict[tuple[str, int], int] = {}
        for f in figures:
            labels = [f.collection, str(f.shard), str(f.replica)]
            repairs.add_metric(labels, f.repairs)
            for s in ReplicaState:
                state.add_metric([*labels, s.value], 1.0 if s.value == f.state else 0.0)
            if f.applied_seq is not None:
                seq.add_metric(labels, f.applied_seq)
            if f.dirty_rows is not None:
                dirty.add_metric(labels, f.dirty_rows)
            if f.expired_rows is not None:
                expired.add_metric(labels, f.expired_rows)
            if f.swept_rows is not None:
                swept.add_metric(labels, f.swept_rows)
            if f.checkpoint_unix is not None:
                age.add_metric(labels, max(0.0, now - f.checkpoint_unix))
            if f.count is not None and f.state == ReplicaState.LIVE.value:
                key = (f.collection, f.shard)
                per_shard[key] = max(per_shard.get(key, 0), f.count)
        for (collection, shard), count in sorted(per_shard.items()):
            rows.add_metric([collection, str(shard)], count)
        yield from (rows, state, seq, dirty, age, repairs, expired, swept)


class _RecallCollector(Collector):
    """Per collection, the recall tuner's figures (coordinator/queries/recall_tuner.py), read
    from the collections' tuned breadths at scrape time (plain attribute reads)."""

    def __init__(self) -> None:
        self.runtime: CoordinatorRuntime | None = None

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        return iter(list(self._families()))

    def _families(self) -> Iterator[Metric]:
        estimate = GaugeMetricFamily(
            "shardvec_recall_estimate",
            "Recall@10 the recall tuner measured at the search breadth in force.",
            labels=["collection"],
        )
        target = GaugeMetricFamily(
            "shardvec_recall_target", "The collection's target recall@10.", labels=["collection"]
        )
        ef = GaugeMetricFamily(
            "shardvec_search_ef",
            "Per-shard ef that searches without an ef use (the tuned breadth).",
            labels=["collection"],
        )
        for name, col in sorted((self.runtime.collections if self.runtime else {}).items()):
            target.add_metric([name], col.spec.target_recall)
            tuned = col.tuned
            if tuned is not None:
                estimate.add_metric([name], tuned.recall)
                ef.add_metric([name], tuned.ef)
        yield from (estimate, target, ef)


async def gather_figures(runtime: CoordinatorRuntime) -> list[ReplicaFigures]:
    """Every replica's state, and the figures of those LIVE ones that answer Info in time."""

    async def info(collection: str, replica: Any) -> ReplicaFigures:
        count = applied = dirty = expired = swept = None
        ckpt = None
        if replica.state is ReplicaState.LIVE and replica.client is not None:
            try:
                resp = await replica.client.info(INFO_TIMEOUT_S)
                count, applied = resp.count, resp.applied_seq
                info = resp.figures
                ckpt, dirty = info.get("last_checkpoint_unix"), info.get("dirty_rows")
                expired, swept = info.get("expired_rows"), info.get("swept_rows")
            except Exception as exc:  # down or slow: its state says so
                log.debug("metrics: info of %s failed: %s", replica.name, exc)
        return ReplicaFigures(
            collection, replica.shard, replica.index, replica.state.value, count, applied,
            float(ckpt) if isinstance(ckpt, (int, float)) else None,
            int(dirty) if isinstance(dirty, int) else None,
            replica.repairs,
            int(expired) if isinstance(expired, int) else None,
            int(swept) if isinstance(swept, int) else None,
        )

    jobs = [
        info(name, r)
        for name, col in sorted(runtime.collections.items())
        for rs in col.shard_sets
        for r in rs.replicas
    ]
    return list(await asyncio.gather(*jobs))
