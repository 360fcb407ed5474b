"""`payload_on_disk` as a collection's setting, over in-process replicas (no Ray): set by
CreateCollection and shown by Describe and List, and kept by every replica the collection
gets later: after a coordinator restart, in a snapshot restored under another name, in the
new shards of a reshard and in a replica built from a peer; each such replica holds no text in
memory and answers searches with the rows' own metadata and documents."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from shardvec.cluster.cli import cli
from shardvec.cluster.client import Client
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.coordinator.snapshots import create_archive, restore_archive
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext
from tests.inproc import LocalControls, wait_change
from tests.requests import restore_chunks, search_request, upsert_request
from tests.served import serve_public

DIM = 8
ROWS = 120


def _deadline() -> float:
    return time.monotonic() + 60


def _service(data_dir: Path) -> tuple[CoordinatorRuntime, LocalControls, VectorSearchService]:
    controls = LocalControls(data_dir)
    rt = CoordinatorRuntime(data_dir, controls)
    service = VectorSearchService(
        rt, CoordinatorSettings(data_dir=str(data_dir)), MicroBatcher(window_s=0.0)
    )
    return rt, controls, service


def _on_disk(controls: LocalControls, name: str) -> list[bool]:
    """Per opened replica of `name`: whether its engine keeps payloads on disk (and no text)."""
    out = []
    for (col, _, _), control in sorted(controls.controls.items()):
        engine = control.engine
        if col != name or engine is None:
            continue
        rows = engine._rows
        out.append(rows.on_disk and len(rows._texts) == 0 and len(rows._docs) == 0)
    return out


def test_the_setting_is_shown_and_kept_by_every_copy(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    vecs = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(ROWS)]

    async def search_payloads(service: VectorSearchService, name: str) -> None:
        """Each row's exact search finds it first, with its own metadata and document."""
        req = search_request(name, vecs[:20], k=3, dim=DIM, exact=True)
        req.include.metadata = req.include.documents = True
        res = await service.Search(req, FakeContext())
        for q, r in enumerate(res.results):
            assert r.ids[0] == ids[q]
            assert json.loads(r.metadata_json[0]) == {"i": q}
            assert r.documents[0] == f"document of {ids[q]}"

    async def main() -> None:
        rt, controls, service = _service(tmp_path)
        ctx = FakeContext()
        for name, on in (("src", True), ("plain", False)):
            await service.CreateCollection(pb.CreateCollectionRequest(
                name=name, dimension=DIM, metric=common_pb2.COSINE, shards=2,
                payload_on_disk=on,
            ), ctx)  # fmt: skip
        info = await service.DescribeCollection(pb.DescribeCollectionRequest(name="src"), ctx)
        assert info.payload_on_disk
        listed = await service.ListCollections(pb.ListCollectionsRequest(), ctx)
        assert {c.name: c.payload_on_disk for c in listed.collections} == {
            "src": True, "plain": False
        }
        up = upsert_request("src", ids, vecs, [json.dumps({"i": i}) for i in range(ROWS)],
                            dim=DIM)  # fmt: skip
        up.documents.extend(f"document of {r}" for r in ids)
        await service.Upsert(up, ctx)
        assert _on_disk(controls, "src") == [True, True]
        assert _on_disk(controls, "plain") == [False, False]
        await search_payloads(service, "src")

        archive = b"".join([c async for c in create_archive(rt, "src", _deadline())])
        dst = await restore_archive(rt, restore_chunks(archive, "dst", shards=3), _deadline())
        assert dst.spec.index.payload_on_disk and dst.spec.shards == 3
        assert _on_disk(controls, "dst") == [True] * 3
        await search_payloads(service, "dst")

        await rt.scale("src", 3, None)
        await wait_change(rt, "src")
        assert _on_disk(controls, "src") == [True] * 3
        await rt.scale("src", None, 2)
        await wait_change(rt, "src")
        assert _on_disk(controls, "src") == [True] * 6
        await search_payloads(service, "src")
        await rt.shutdown()

        rt, controls, service = _service(tmp_path)  # the coordinator restarts
        await rt.restore()
        info = await service.DescribeCollection(pb.DescribeCollectionRequest(name="src"), ctx)
        assert info.payload_on_disk and info.shards == 3 and info.replicas == 2
        await search_payloads(service, "src")
        assert True in _on_disk(controls, "src") and set(_on_disk(controls, "src")) == {True}
        await rt.shutdown()

    asyncio.run(main())


def test_the_client_and_the_cli_create_it_and_show_it(tmp_path: Path) -> None:
    """Over the real public service on loopback gRPC: `create_collection(payload_on_disk=)`
    and `shardvec create --payload-on-disk`, shown by describe and `shardvec status`; a
    search through the client returns the rows' own payloads."""
    rng = np.random.default_rng(17)
    vecs = rng.standard_normal((30, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(30)]
    with serve_public(tmp_path) as (address, controls):
        with Client(address, discover=False) as client:
            col = client.create_collection("c", DIM, shards=2, payload_on_disk=True)
            client.create_collection("plain", DIM)
            assert client.describe("c")["payload_on_disk"] is True
            assert client.describe("plain")["payload_on_disk"] is False
            col.upsert(ids, vecs, [{"i": i} for i in range(30)],
                       documents=[f"text {i}" for i in range(30)])  # fmt: skip
            hits = col.search(vecs[:5], k=1, exact=True, include_documents=True)
            for q, row in enumerate(hits):
                assert row[0].id == ids[q] and row[0].metadata == {"i": q}
                assert row[0].document == f"text {q}"
        assert _on_disk(controls, "c") == [True, True]
        runner = CliRunner()
        out = runner.invoke(cli, ["--server", address, "create", "d", "--dim", "4",
                                  "--payload-on-disk"])  # fmt: skip
        assert out.exit_code == 0, out.output
        out = runner.invoke(cli, ["--server", address, "status"])
        assert out.exit_code == 0, out.output
        lines = {line.split(":")[0]: line for line in out.output.splitlines() if ": dim=" in line}
        assert "payload_on_disk" in lines["d"] and "payload_on_disk" in lines["c"]
        assert "payload_on_disk" not in lines["plain"]
