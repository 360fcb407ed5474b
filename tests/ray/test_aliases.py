"""Aliases on a real cluster (coordinator/aliases.py): data calls through an alias, a switch
while a reader loops (no read fails, each sees the old or the new collection whole), a scroll
through an alias staying on its collection across a switch, snapshots and the CLI, and
`reembed` end to end on a small text collection (a client-side function, and `minilm` in the
cluster when the model is installed)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from shardvec.cluster.aio import AsyncClient
from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.cli import cli
from shardvec.cluster.client import Client
from shardvec.contract.errors import FailedPrecondition, ShardvecError
from shardvec.coordinator.embedding import minilm
from tests.waits import until

pytestmark = pytest.mark.ray

DIM = 8


def _fill(client: Client, name: str, n: int, seed: int) -> np.ndarray:
    col = client.create_collection(name, DIM, "cosine", shards=2)
    vecs = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    col.upsert([f"{name}-{i}" for i in range(n)], vecs, [{"src": name} for _ in range(n)])
    return vecs


def test_reads_through_an_alias_never_fail_across_switches(
    client: Client, cluster: ShardvecCluster, name: str, tmp_path: Path
) -> None:
    old, new, alias = f"{name}old", f"{name}new", f"{name}live"
    vecs = _fill(client, old, 60, 1)
    _fill(client, new, 25, 2)
    client.create_alias(alias, old)
    col = client.get_collection(alias)
    assert col.name == alias and col.count() == 60
    assert client.describe(alias)["name"] == old

    # A scroll begun through the alias, on `old`; it keeps going there after the switch.
    pages = col.scroll_pages(page_size=10, include_metadata=True)
    first = next(pages)

    seen: set[int] = set()
    reads = [0]  # the reader's finished reads
    failures: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        with Client(cluster.address, timeout=30) as c:
            rc = c.get_collection(alias)
            while not stop.is_set():
                try:
                    n = rc.count()
                    hits = rc.search(vecs[:1], k=3)
                    seen.add(n)
                    reads[0] += 1
                    if n not in (60, 25) or len(hits[0]) != 3:
                        failures.append(f"count {n}, {len(hits[0])} hits")
                except ShardvecError as exc:
                    failures.append(f"{exc.code.name}: {exc.message}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for target in (new, old, new, old, new):
            client.switch_alias(alias, target)
            # every read started after the switch's answer sees the new target
            assert col.count() == (25 if target == new else 60)
            # the looping reader reads under this target too (a loaded machine can let all
            # the switches pass between two of its reads)
            done = reads[0]
            until(lambda d=done: reads[0] >= d + 2 or bool(failures), 60, "a read after the switch")
    finally:
        stop.set()
        thread.join(60)
    assert not failures, failures[:5]
    assert seen == {60, 25}

    rest = [r for page in pages for r in page.records]
    ids = [r.id for r in first.records] + [r.id for r in rest]
    assert len(ids) == 60 == len(set(ids)) and all(i.startswith(old) for i in ids)

    # Writes, snapshots and the CLI through the alias; the alias is listed.
    col.upsert(["extra"], vecs[:1], [{"src": "extra"}])
    assert client.get_collection(new).count() == 26
    manifest = client.create_snapshot(alias, tmp_path / "snap.tar")
    assert manifest["collection"]["name"] == new  # the archive of the collection named
    env = {"SHARDVEC_SERVER": cluster.address}
    listed = CliRunner().invoke(cli, ["alias", "list", "--json"], env=env)
    assert listed.exit_code == 0 and json.loads(listed.output)[alias] == new, listed.output
    res = CliRunner().invoke(cli, ["alias", "switch", alias, old], env=env)
    assert res.exit_code == 0 and f"alias {alias} -> {old} (was {new})" in res.output, res.output
    res = CliRunner().invoke(cli, ["drop", old], env=env)
    assert res.exit_code == 1 and "FAILED_PRECONDITION" in res.output, res.output
    res = CliRunner().invoke(cli, ["alias", "delete", alias], env=env)
    assert res.exit_code == 0, res.output

    async def through_asyncio() -> dict[str, str]:
        async with AsyncClient(cluster.address) as ac:
            await ac.create_alias(alias, new)
            assert await ac.switch_alias(alias, old) == new
            listed = await ac.list_aliases()
            assert await ac.delete_alias(alias) == old
            return listed

    assert asyncio.run(through_asyncio())[alias] == old
    client.drop_collection(old)
    client.drop_collection(new)
    assert alias not in client.list_aliases()


def _hash_embed(dim: int):  # type: ignore[no-untyped-def]
    """A deterministic client-side embedding: words hashed into `dim` buckets, normalised."""

    def embed(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, sum(map(ord, word)) % dim] += 1.0
        out += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return embed


DOCS = [
    "dogs are loyal pets", "cats purr when happy", "the stock market fell today",
    "rain is expected tomorrow", "a recipe for apple pie", "training for a marathon",
    "the history of rome", "how to plant tomatoes", "new phone released", "jazz in the park",
] * 3  # fmt: skip


def test_reembed_fills_a_new_collection_checks_it_and_switches(
    client: Client, cluster: ShardvecCluster, name: str
) -> None:
    v1, v2, alias = f"{name}v1", f"{name}v2", f"{name}docs"
    first = client.create_collection(
        v1, shards=2, embedding_function=_hash_embed(16), ttl_seconds=86400
    )
    ids = [f"d{i}" for i in range(len(DOCS))]
    first.upsert_documents(ids, DOCS, [{"n": i} for i in range(len(DOCS))])
    client.create_alias(alias, v1)

    # A client-side function of another dimension: NEW made with the source's layout.
    ticks: list[int] = []
    done = client.reembed(alias, into=v2, embed=_hash_embed(24), page_size=7,
                          progress=ticks.append)  # fmt: skip
    assert done == {"alias": alias, "previous": v1, "collection": v2, "rows": len(DOCS)}
    assert sum(ticks) == len(DOCS)
    info = client.describe(alias)
    assert (info["name"], info["dim"], info["shards"], info["count"]) == (v2, 24, 2, len(DOCS))
    assert info["ttl_seconds"] == 86400  # the source's default expiry
    got = client.get_collection(alias).get(["d3"], include_documents=True)
    assert got[0].document == DOCS[3] and got[0].metadata == {"n": 3}

    # Bad runs switch nothing: NEW exists already; a plain collection without --alias.
    with pytest.raises(ShardvecError, match="already exists"):
        client.reembed(alias, into=v2, embed=_hash_embed(24))
    with pytest.raises(ShardvecError, match=r"alias: .* is a collection, not an alias"):
        client.reembed(v1, into=f"{name}v9", embed=_hash_embed(24))
    assert client.list_aliases()[alias] == v2

    # A source row without a document stops the run before any switch.
    client.get_collection(v2).upsert(["bare"], np.ones((1, 24), np.float32))
    with pytest.raises(FailedPrecondition, match="'bare' has no document"):
        client.reembed(alias, into=f"{name}v3", embed=_hash_embed(8))
    assert client.list_aliases()[alias] == v2
    client.get_collection(v2).delete(["bare"])
    client.drop_collection(f"{name}v3")  # left for inspection by the stopped run

    # NAME a plain collection: `alias` is created naming NEW once it is filled.
    other = client.reembed(v1, into=f"{name}v5", embed=_hash_embed(8), alias=f"{name}alt")
    assert (other["previous"], client.list_aliases()[f"{name}alt"]) == ("", f"{name}v5")
    assert client.describe(f"{name}alt")["count"] == len(DOCS)
    client.delete_alias(f"{name}alt")
    client.drop_collection(f"{name}v5")

    try:
        minilm.model_dir()
    except FailedPrecondition:
        client.delete_alias(alias)
        return  # the minilm half needs the text extra
    # The CLI with the cluster's model, with its progress bar.
    v4 = f"{name}v4"
    res = CliRunner().invoke(
        cli, ["reembed", alias, "--into", v4, "--embedding", "minilm"],
        env={"SHARDVEC_SERVER": cluster.address},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"reembedded {len(DOCS)} rows: alias {alias} -> {v4} (was {v2})" in res.output
    live = client.get_collection(alias)
    assert (live.dim, live.embedding) == (384, "minilm")
    hits = live.search_texts(["faithful companion animals"], k=1)
    assert hits[0][0].id in {i for i, d in zip(ids, DOCS, strict=True) if "dogs" in d}
    client.delete_alias(alias)
    for n in (v1, v2, v4):
        client.drop_collection(n)
