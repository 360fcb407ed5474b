"""Callers against callers: misbehaving clients (5 ms deadlines, searches cancelled in
flight, streams abandoned mid-way, thousands of query texts abandoned, tokenless large
messages to every replica) run against one patient client on the Ray tier's real cluster.
The patient client's every call succeeds within its normal latency bound, and no replica
leaves the live set."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from shardvec.coordinator.embedding import minilm
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc
from tests.wire_bytes import tokenless_stage

DIM = 384  # minilm's, so one collection takes both vectors and texts
SECONDS = 6.0  # at least 20 patient calls are made under attack however long they take
PATIENT_BOUND_S = 3.0  # a single search's bound on this 2-core machine under the attack


def _text_support() -> bool:
    try:
        minilm.model_dir()
    except Exception:
        return False
    return True


def _loop(stop: threading.Event, errors: list[str], what: str, body: Callable[[], None]) -> None:
    while not stop.is_set():
        try:
            body()
        except grpc.RpcError:
            pass  # the attacker's own failures are expected
        except Exception as exc:
            errors.append(f"{what}: {type(exc).__name__}: {exc}")
            return


def test_misbehaving_callers_never_fail_a_patient_one(
    cluster: ShardvecCluster, client: Client, name: str
) -> None:
    texts = _text_support()
    col = client.create_collection(name, dim=DIM, shards=2, replicas=2,
                                   embedding="minilm" if texts else "")  # fmt: skip
    client.wait_live(name, 180)
    rng = np.random.default_rng(24)
    vecs = rng.standard_normal((400, DIM)).astype(np.float32)
    col.upsert([f"r{i}" for i in range(400)], vecs)
    live_before = {(r["shard"], r["replica"]) for r in client.describe(name)["replica_states"]
                   if r["state"] == "live"}  # fmt: skip
    assert len(live_before) == 4
    replica_addresses = [r["address"] for r in client.describe(name)["replica_states"]]

    channel = grpc.insecure_channel(cluster.address)
    stub = pb_grpc.VectorSearchStub(channel)
    query = pb.SearchRequest(collection=name, k=10)
    query.queries.dim = DIM
    query.queries.packed = vecs[:1].astype("<f4").tobytes()
    stop = threading.Event()
    errors: list[str] = []

    def short_deadlines() -> None:
        stub.Search(query, timeout=0.005)

    def cancelled_in_flight() -> None:
        call = stub.Search.future(query, timeout=10)
        time.sleep(0.001)
        call.cancel()

    def abandoned_stream() -> None:
        it = stub.Scroll(pb.ScrollRequest(collection=name, limit=50), timeout=10)  # unary
        del it
        stream = stub.CreateSnapshot(pb.CreateSnapshotRequest(collection=name), timeout=10)
        next(iter(stream), None)
        stream.cancel()  # mid-way

    def abandoned_texts() -> None:
        req = pb.SearchRequest(collection=name, k=5, query_texts=["a package"] * 2000)
        stub.Search(req, timeout=0.5)

    big = b"\x00" * (20 * 1024 * 1024)

    def tokenless_large() -> None:
        for address in replica_addresses:
            code = tokenless_stage(address, big, timeout=5)
            assert code in (grpc.StatusCode.UNAUTHENTICATED,
                            grpc.StatusCode.RESOURCE_EXHAUSTED), code  # fmt: skip
        time.sleep(0.2)

    attackers: list[tuple[str, Callable[[], None]]] = [
        ("short deadlines", short_deadlines),
        ("short deadlines 2", short_deadlines),
        ("cancelled in flight", cancelled_in_flight),
        ("abandoned stream", abandoned_stream),
        ("tokenless large", tokenless_large),
    ]
    if texts:
        attackers.append(("abandoned texts", abandoned_texts))
    threads = [threading.Thread(target=_loop, args=(stop, errors, what, body), daemon=True)
               for what, body in attackers]  # fmt: skip
    for t in threads:
        t.start()
    patient: list[float] = []
    failures: list[str] = []
    left_live: list[Any] = []
    try:
        with Client(cluster.address, timeout=10) as c:
            pcol = c.get_collection(name)
            # At least SECONDS under attack and at least 20 patient calls (a loaded machine
            # answers fewer a second), at most 60 s.
            end, cap = time.monotonic() + SECONDS, time.monotonic() + 60
            i = 0
            while time.monotonic() < cap and (time.monotonic() < end or len(patient) < 20):
                start = time.monotonic()
                try:
                    if texts and i % 4 == 3:
                        hits = pcol.search_texts(["parse json files"], k=5)
                        assert len(hits[0]) == 5
                    else:
                        ids, _ = pcol.search_ids(vecs[i % 400 : i % 400 + 1], k=5, exact=True)
                        assert ids[0][0] == f"r{i % 400}"
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                patient.append(time.monotonic() - start)
                if i % 10 == 0:
                    states = c.describe(name)["replica_states"]
                    gone = [r for r in states if r["state"] != "live"]
                    if gone:
                        left_live.append(gone)
                i += 1
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        channel.close()
    assert not errors, errors[:3]
    assert not failures, (len(failures), len(patient), failures[:3])
    assert not left_live, left_live[:1]
    assert len(patient) >= 20
    assert max(patient) < PATIENT_BOUND_S, sorted(patient)[-5:]
    client.drop_collection(name)


# `solo`: run alone, after the Makefile's three-worker run. The bound is a patient caller's
# latency under the attackers here, not under another cluster on the same two cores.
pytestmark = [pytest.mark.timeout(300), pytest.mark.solo]
