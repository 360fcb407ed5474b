"""The crasher: kill -9 parts of a live cluster under load, then prove nothing was lost.

After Qdrant's crasher. A writer upserts numbered batches and records which were
acknowledged; a reader searches; a killer sends SIGKILL every few seconds to a random
replica process (mode `replica`), to the coordinator (`coordinator`), to a query front
(`front`: the cluster runs with `--front-port 0`, the clients spread their calls over the
fronts and must fail no read), or to every process of the cluster, which is then brought
back with `shardvec up` on the same data directory (`cluster`). Mode `scale` changes the
shard count up and down over and over (online resharding, coordinator/changes/resharding.py) and
kills a random replica or the coordinator while the changes run. Afterwards: every
acknowledged id is present with its exact vector and metadata, no id that was never sent
exists, no duplicates (in the store, and within any one search result the reader got),
filtered counts equal the matching rows fetched, and all replicas of each shard hold the
same rows.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.cluster.client import Client, Collection
from shardvec.cluster.process import ServerProcess, free_port
from shardvec.contract.errors import ShardvecError

MODES = ("replica", "coordinator", "cluster", "front", "scale")
MAX_SCALE_SHARDS = 4
DIM = 32
COLLECTION = "crasher"
CALL_TIMEOUT_S = 10.0  # each call of the drill's writer, reader and checks
# Creating the drill's collection, and starting a change of its shard count, start replica
# processes, on a server that may have just come back from the previous kills (10 s has been
# too short for each on 2 loaded cores).
SETUP_TIMEOUT_S = 120.0


def batch_rows(batch: int, size: int) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """The ids, vectors and metadata of batch number `batch`: a pure function of it."""
    rng = np.random.default_rng(batch)
    ids = [f"b{batch}-{j}" for j in range(size)]
    vectors = rng.standard_normal((size, DIM)).astype(np.float32)
    metas = [{"batch": batch, "j": j, "even": batch % 2 == 0} for j in range(size)]
    return ids, vectors, metas


@dataclasses.dataclass
class CrasherReport:
    mode: str
    seconds: float
    kills: int = 0
    batches_acked: int = 0
    batches_failed_attempts: int = 0
    rows_acked: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    reads_via_fronts: int = 0  # reads a query front answered (mode front), not the coordinator
    lost_acked: int = 0
    wrong_content: int = 0
    phantoms: int = 0
    partial_batches: int = 0  # batches with some but not all rows stored: never (atomic writes)
    count_total: int = 0
    count_expected_min: int = 0
    count_expected_max: int = 0
    filtered_count: int = 0
    filtered_fetched: int = 0
    duplicate_results: int = 0  # search results that held an id twice
    reads_checked: int = 0  # reads during the drill compared with the writer's model
    read_mismatches: int = 0  # of them, answers the model rules out
    scales: int = 0  # layout changes started (mode scale)
    layout_version: int = 0
    replicas_level: bool = False
    recovery_seconds: float = 0.0
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.lost_acked == 0
            and self.wrong_content == 0
            and self.phantoms == 0
            and self.partial_batches == 0
            and self.duplicate_results == 0
            and self.read_mismatches == 0
            and self.count_expected_min <= self.count_total <= self.count_expected_max
            and self.filtered_count == self.filtered_fetched
            and self.replicas_level
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


class Crasher:
    def __init__(self, mode: str, *, seconds: float = 60, interval: float = 3.0, shards: int = 2,
                 replicas: int = 2, batch: int = 20, data_dir: Path | None = None,
                 seed: int = 0, log: Any = print, server: ServerProcess | None = None,
                 collection: str = COLLECTION) -> None:
        """With `server`, the drill runs on that running `shardvec up` (started as this mode
        would start it) in its own `collection`, dropped after the checks, and leaves the
        server running; `cluster` kills the whole server, so it always starts its own."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if server is not None and mode == "cluster":
            raise ValueError("mode 'cluster' kills and restarts its own server")
        self.mode, self.seconds, self.interval = mode, seconds, interval
        self.shards, self.replicas, self.batch = shards, replicas, batch
        self.collection = collection
        self._shared = server is not None
        self._tmp = None if data_dir or server else tempfile.TemporaryDirectory(
            prefix="shardvec-crasher-")  # fmt: skip
        self.data_dir = Path(data_dir or (self._tmp.name if self._tmp else ".")) / "data"
        self.rng = random.Random(seed)
        self.log = log
        self.port = server.port if server is not None else free_port()
        self.report = CrasherReport(mode, seconds)
        self.server: ServerProcess | None = server
        self._server_lock = threading.Lock()
        self.acked: list[int] = []
        self.attempted: set[int] = set()
        self.tried = 0  # batches attempted so far
        self.read_rng = random.Random(seed + 1)
        self._stop = threading.Event()

    def _client(self, timeout: float = CALL_TIMEOUT_S) -> Client:
        return Client(f"127.0.0.1:{self.port}", timeout=timeout)

    def _start(self) -> ServerProcess:
        extra = ("--front-port", "0") if self.mode == "front" else ()
        return ServerProcess(self.data_dir, self.port, *extra, log_dir=self.data_dir.parent)

    def run(self) -> CrasherReport:
        if not self._shared:
            self.server = self._start()
        try:
            with self._client(SETUP_TIMEOUT_S) as c:
                c.create_collection(self.collection, DIM, "cosine", self.shards, self.replicas)
            threads = [threading.Thread(target=self._writer, name="writer"),
                       threading.Thread(target=self._reader, name="reader")]
            for t in threads:
                t.start()
            try:
                self._killer()
            finally:
                self._stop.set()
                for t in threads:
                    t.join(120)
            self._verify()
            if self._shared:  # the next drill on this server kills only its own replicas
                with self._client() as c:
                    c.drop_collection(self.collection)
        finally:
            if self.server is not None and not self._shared:
                self.server.stop()
            if self._tmp is not None:
                self._tmp.cleanup()
        return self.report

    def _writer(self) -> None:
        batch = 0
        with self._client() as c:
            col = c.get_collection(self.collection)
            while not self._stop.is_set():
                ids, vecs, metas = batch_rows(batch, self.batch)
                self.attempted.add(batch)
                self.tried = batch + 1
                while not self._stop.is_set():
                    try:
                        col.upsert(ids, vecs, metas)
                    except ShardvecError as exc:
                        self.report.batches_failed_attempts += 1
                        if len(self.report.errors) < 20:
                            self.report.errors.append(f"write: {exc.code.name}: {exc.message}")
                        time.sleep(0.2)  # the coordinator or the cluster is coming back
                        continue
                    self.acked.append(batch)
                    break
                batch += 1

    def _reader(self) -> None:
        """Reads during the drill, each compared with what the writer had acknowledged before
        it and attempted after it: counts (all and filtered) within those bounds, an exact
        search for an acknowledged row's own vector finding it first, Get of an acknowledged
        batch whole, and never an id twice or an id never written."""
        q = np.random.default_rng(99).standard_normal((4, DIM)).astype(np.float32)
        with self._client() as c:
            col: Collection | None = None
            while not self._stop.is_set():
                try:
                    col = col or c.get_collection(self.collection)
                    rows, _ = col.search_ids(q, k=10)
                    self.report.duplicate_results += sum(len(r) != len(set(r)) for r in rows)
                    self._check_reads(col)
                    self.report.reads_ok += 1
                    self.report.reads_via_fronts = sum(
                        n for a, n in c.served_by.items() if a != c.address
                    )
                except ShardvecError as exc:
                    self.report.reads_failed += 1
                    if len(self.report.errors) < 20:
                        self.report.errors.append(f"read: {exc.code.name}: {exc.message}")
                    time.sleep(0.1)

    def _check_reads(self, col: Collection) -> None:
        # Bounds: what was acknowledged before a read is its floor, what was attempted by the
        # time it returned its ceiling (a batch attempted during the read may show in it).
        r = self.report
        acked = list(self.acked)
        low_even = sum(1 for b in acked if b % 2 == 0) * self.batch
        n = col.count()
        even = col.count(where={"even": True})
        tried = self.tried  # batches are attempted in order, from 0
        high_even = (tried + 1) // 2 * self.batch
        if not len(acked) * self.batch <= n <= tried * self.batch:
            self._mismatch(f"count {n} outside [{len(acked) * self.batch}, {tried * self.batch}]")
        if not low_even <= even <= high_even:
            self._mismatch(f"filtered count {even} outside [{low_even}, {high_even}]")
        if not acked:
            return
        b = acked[self.read_rng.randrange(len(acked))]
        ids, vecs, _ = batch_rows(b, self.batch)
        j = self.read_rng.randrange(self.batch)
        rows, _ = col.search_ids(vecs[j : j + 1], k=10, exact=True)
        top = rows[0]
        if len(top) != len(set(top)):
            r.duplicate_results += 1
        if not top or top[0] != ids[j]:
            self._mismatch(f"exact search for {ids[j]}'s vector answered {top[:3]}")
        tried = self.tried  # read after the search: its ceiling
        for id_ in top:
            batch = int(id_[1:].split("-")[0]) if id_.startswith("b") else -1
            if not 0 <= batch < tried:
                self._mismatch(f"exact search answered {id_}, never written")
        got = [rec.id for rec in col.get(ids, include_vectors=False)]
        if got != ids:
            self._mismatch(f"get of acknowledged batch {b}: {len(got)} of {len(ids)} rows")
        r.reads_checked += 1

    def _mismatch(self, what: str) -> None:
        self.report.read_mismatches += 1
        if len(self.report.errors) < 20:
            self.report.errors.append(f"read mismatch: {what}")

    def _killer(self) -> None:
        assert self.server is not None
        end = time.monotonic() + self.seconds
        time.sleep(min(self.interval, self.seconds))
        while time.monotonic() < end:
            if self.mode == "cluster":
                self.server.kill()
                self.report.kills += 1
                self.log(f"killed the whole cluster; restarting (kill {self.report.kills})")
                self.server = self._start()
            elif self.mode == "scale":
                self._scale_and_kill(end)
                continue
            else:
                if self.mode == "replica":
                    # One failure at a time: R replicas tolerate R - 1 dead ones per shard.
                    with self._client() as c:
                        self._wait_level(c, timeout=max(5.0, end - time.monotonic()))
                self._kill_one({"replica": "ray::ShardReplica", "front": "ray::Front"}.get(
                    self.mode, "ray::Coordinator"
                ))
            time.sleep(self.interval * (0.5 + self.rng.random()))

    def _scale_and_kill(self, end: float) -> None:
        """Start a change of the shard count (when none runs), then, part way through it,
        kill -9 a replica (one at a time) or the coordinator."""
        assert self.server is not None
        try:
            with self._client(SETUP_TIMEOUT_S) as c:
                info = c.describe(self.collection)
                if info["change"] is None:
                    target = self.rng.choice(
                        [s for s in range(1, MAX_SCALE_SHARDS + 1) if s != info["shards"]]
                    )
                    c.get_collection(self.collection).scale(shards=target, wait=False)
                    self.report.scales += 1
                    self.log(f"scale {info['shards']} -> {target} shards")
        except ShardvecError as exc:  # the coordinator is coming back, or a change runs
            if len(self.report.errors) < 20:
                self.report.errors.append(f"scale: {exc.code.name}: {exc.message}")
        time.sleep(self.interval * self.rng.random())
        if self.rng.random() < 0.5:
            with self._client() as c:
                self._wait_level(c, timeout=max(5.0, end - time.monotonic()))
            self._kill_one("ray::ShardReplica")
        else:
            self._kill_one("ray::Coordinator")
        time.sleep(self.interval * (0.5 + self.rng.random()))

    def _kill_one(self, title: str) -> None:
        """SIGKILL one random process of the server whose title holds `title`."""
        assert self.server is not None
        victims = self.server.processes(title)
        if victims:
            victim = self.rng.choice(victims)
            victim.send_signal(signal.SIGKILL)
            self.report.kills += 1
            self.log(f"kill -9 {title} pid {victim.pid} (kill {self.report.kills})")

    def _wait_level(self, c: Client, timeout: float = 300) -> bool:
        try:
            c.wait_live(self.collection, timeout, level=True, poll=0.5)
        except ShardvecError:
            return False
        return True

    def _verify(self) -> None:
        r = self.report
        start = time.monotonic()
        with self._client() as c:
            if self.mode == "scale":  # the last change runs to its end first
                try:
                    layout = c.wait_layout(self.collection, timeout=300)
                    r.layout_version = int(layout["layout_version"])
                except ShardvecError as exc:
                    r.errors.append(f"layout change did not finish: {exc.message}")
            r.replicas_level = self._wait_level(c)
            r.recovery_seconds = round(time.monotonic() - start, 2)
            col = c.get_collection(self.collection)
            acked = set(self.acked)
            r.batches_acked = len(acked)
            r.rows_acked = len(acked) * self.batch
            present_batches = 0
            for b in sorted(self.attempted):
                ids, vecs, metas = batch_rows(b, self.batch)
                got = {rec.id: rec for rec in col.get(ids)}
                if b in acked and len(got) != len(ids):
                    r.lost_acked += len(ids) - len(got)
                if got:
                    present_batches += 1
                if 0 < len(got) < len(ids):
                    r.partial_batches += 1
                for j, id_ in enumerate(ids):
                    rec = got.get(id_)
                    if rec is None:
                        continue
                    if rec.metadata != metas[j] or rec.vector is None or not np.array_equal(
                        rec.vector, vecs[j]
                    ):
                        r.wrong_content += 1
            r.count_total = col.count()
            r.count_expected_min = len(acked) * self.batch
            r.count_expected_max = len(self.attempted) * self.batch
            # no phantoms: everything counted is an attempted id that get() found
            found_total = 0
            for b in sorted(self.attempted):
                found_total += len(col.get(batch_rows(b, self.batch)[0], include_vectors=False))
            r.phantoms = max(0, r.count_total - found_total)
            r.filtered_count = col.count(where={"even": True})
            r.filtered_fetched = sum(
                len(col.get(batch_rows(b, self.batch)[0], include_vectors=False))
                for b in sorted(self.attempted) if b % 2 == 0
            )


def format_report(rep: CrasherReport) -> str:
    d = rep.to_dict()
    width = max(len(k) for k in d)
    lines = [f"{k:<{width}}  {v}" for k, v in d.items() if k != "errors"]
    lines += [f"  {e}" for e in rep.errors[:5]]
    return "\n".join(lines)
