"""Expiry through the Python client and the CLI, against the real public service on loopback
gRPC over in-process replicas: the collection default, per-row and per-batch ttl_seconds and
expires_at sliced across the client's request batches, update, set_collection_options,
`shardvec create --ttl` shown by `shardvec status`; each row's expiry read back by get and
scroll, and kept by reembed and by export then import."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from shardvec.cluster.cli import cli
from shardvec.cluster.client import Client
from shardvec.cluster.export import export_collection
from shardvec.contract.errors import InvalidArgument
from tests.inproc import LocalControls
from tests.served import serve_public

DIM = 4


@dataclass
class Served:
    address: str
    controls: LocalControls

    def expiry(self, collection: str, rid: str) -> float:
        """The absolute expiry replica 0 of `rid`'s shard holds (0.0: never)."""
        for (name, _, replica), control in self.controls.controls.items():
            engine = control.engine
            if name != collection or replica or engine is None:
                continue
            slot = engine._slots.id_to_slot.get(rid)
            if slot is not None:
                at = float(engine._slots.expires[slot])
                return at if math.isfinite(at) else 0.0
        raise AssertionError(f"{rid} is not held")


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Served]:
    with serve_public(tmp_path) as (address, controls):
        yield Served(address, controls)


def test_the_client_sets_expiry_per_row_and_per_collection(served: Served) -> None:
    vecs = np.random.default_rng(3).standard_normal((10, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(10)]
    with Client(served.address, discover=False) as client:
        col = client.create_collection("c", DIM, shards=2, ttl_seconds=600)
        assert client.describe("c")["ttl_seconds"] == 600
        t = time.time()
        col.upsert(ids[:4], vecs[:4])  # the collection default
        col.upsert(ids[4:8], vecs[4:8], ttl_seconds=[10, 20, 0, 40], batch_size=3)  # per row
        at = t + 5000
        col.upsert(ids[8:], vecs[8:], expires_at=at)  # one absolute time for the batch
        after = time.time()
        for rid in ids[:4]:
            assert t + 600 <= served.expiry("c", rid) <= after + 600
        for rid, ttl in zip(ids[4:8], (10, 20, 0, 40), strict=True):
            got = served.expiry("c", rid)
            assert got == 0.0 if not ttl else t + ttl <= got <= after + ttl
        assert [served.expiry("c", r) for r in ids[8:]] == [at, at]
        # update: naming no expiry keeps it, ttl 0 clears it, expires_at sets it
        col.update(["r0"], [{"k": 1}])
        col.update(["r1"], ttl_seconds=0)
        col.update(["r2", "r3"], expires_at=[at, at + 1])
        assert served.expiry("c", "r0") > t
        assert served.expiry("c", "r1") == 0.0
        assert [served.expiry("c", r) for r in ("r2", "r3")] == [at, at + 1]
        info = client.set_collection_options("c", ttl_seconds=0)
        assert info["ttl_seconds"] == 0
        col.upsert(["late"], vecs[:1])
        assert served.expiry("c", "late") == 0.0
        assert col.count() == 11
        with pytest.raises(InvalidArgument, match="ttl_seconds: 2 values for 3 ids"):
            col.upsert(ids[:3], vecs[:3], ttl_seconds=[1, 2])
        with pytest.raises(InvalidArgument, match="not both"):
            col.upsert(ids[:1], vecs[:1], ttl_seconds=1, expires_at=at)
        with pytest.raises(InvalidArgument, match="expires_at"):
            col.update(["r0"], expires_at=t - 100)
        with pytest.raises(InvalidArgument, match="ttl_seconds"):
            client.create_collection("bad", DIM, ttl_seconds=-5)


def test_the_cli_creates_a_collection_with_a_ttl(served: Served) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["--server", served.address, "create", "s", "--dim", "4",
                              "--ttl", "86400"])  # fmt: skip
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["--server", served.address, "status"])
    assert out.exit_code == 0, out.output
    assert "ttl=86400s" in out.output
    out = runner.invoke(cli, ["--server", served.address, "create", "t", "--dim", "4",
                              "--ttl", "-1"])  # fmt: skip
    assert out.exit_code != 0 and "ttl_seconds" in out.output


def _embed(dim: int) -> Callable[[list[str]], np.ndarray]:
    """A deterministic client-side embedding: words hashed into `dim` buckets, normalised."""

    def embed(texts: list[str]) -> np.ndarray:
        out = np.full((len(texts), dim), 1e-3, dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.split():
                out[i, sum(map(ord, word)) % dim] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return embed


def test_expiry_is_read_back_and_kept_by_reembed_export_and_import(
    served: Served, tmp_path: Path
) -> None:
    ids = [f"d{i}" for i in range(12)]
    docs = [f"word{i} other{i % 4}" for i in range(12)]
    with Client(served.address, discover=False) as client:
        src = client.create_collection("src", shards=2, embedding_function=_embed(DIM),
                                       ttl_seconds=600)  # fmt: skip
        t = time.time()
        src.upsert_documents(ids[:4], docs[:4])  # the collection default
        own = [0.0 if i % 2 else t + 1000 + i for i in range(4, 12)]  # per row, some never
        src.upsert_documents(ids[4:], docs[4:], [{"n": i} for i in range(4, 12)],
                             batch_size=3, expires_at=own)  # fmt: skip
        truth = {rid: served.expiry("src", rid) for rid in ids}
        assert [truth[r] for r in ids[4:]] == own and all(truth[r] > t for r in ids[:4])

        # get and scroll give each row's absolute expiry exactly; the repr shows it when set
        got = src.get([*ids, "missing"], include_vectors=False)
        assert {r.id: r.expires_at for r in got} == truth
        assert {r.id: r.expires_at for r in src.scroll(page_size=5)} == truth
        assert {r.id: r.expires_at for r in src.get(where={"n": {"$gte": 0}})} == {
            r: truth[r] for r in ids[4:]
        }
        by_id = {r.id: r for r in got}
        assert f"expires_at={own[0]!r}" in repr(by_id["d4"])
        assert "expires_at" not in repr(by_id["d5"])  # never expires

        # reembed carries each row's own expiry into NEW (never stays never, whatever the
        # default), and gives NEW the source's default
        client.create_alias("docs", "src")
        done = client.reembed("docs", into="dst", embed=_embed(6), page_size=5)
        assert done["rows"] == len(ids)
        dst = client.get_collection("docs")
        info = client.describe("docs")
        assert (info["name"], info["dim"], info["ttl_seconds"]) == ("dst", 6, 600)
        assert {r.id: r.expires_at for r in dst.get(ids, include_vectors=False)} == truth
        assert {rid: served.expiry("dst", rid) for rid in ids} == truth

        # export writes expires_at for the rows that expire; import keeps it (a line without
        # one never expires, even in a collection with a default) and leaves out a row whose
        # expiry has passed
        out = tmp_path / "rows.jsonl"
        assert export_collection(src, out, tmp_path / "rows.npy", page_size=5) == len(ids)
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert {x["id"]: x.get("expires_at", 0.0) for x in lines} == truth
        assert all("expires_at" not in x for x in lines if not truth[x["id"]])
        gone = next(x for x in lines if x["id"] == "d6")
        gone["expires_at"] = time.time() - 5  # already past: left out
        out.write_text("".join(json.dumps(x) + "\n" for x in lines))
        client.create_collection("copy", DIM, ttl_seconds=60)
    runner = CliRunner()
    res = runner.invoke(cli, ["--server", served.address, "import", "copy", "--in", str(out)])
    assert res.exit_code == 0, res.output
    assert f"imported {len(ids) - 1} rows" in res.output and "1 rows left out" in res.output
    assert {rid: served.expiry("copy", rid) for rid in ids if rid != "d6"} == {
        rid: e for rid, e in truth.items() if rid != "d6"
    }
    with Client(served.address, discover=False) as client:
        assert client.get_collection("copy").count() == len(ids) - 1
    res = runner.invoke(cli, ["--server", served.address, "get", "copy", "d4", "d5"])
    assert res.exit_code == 0, res.output
    shown = {x["id"]: x for x in map(json.loads, res.output.splitlines())}
    assert shown["d4"]["expires_at"] == truth["d4"] and "expires_at" not in shown["d5"]
    lines[0]["expires_at"] = "soon"
    out.write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = runner.invoke(cli, ["--server", served.address, "import", "copy", "--in", str(out)])
    assert res.exit_code != 0 and "expires_at is not a number" in res.output
