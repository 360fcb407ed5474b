"""The everyday row commands (`add`, `get`, `count`, `update`, `delete`) against the Ray
tier's cluster, through click's runner in process, on a collection that embeds its
documents: an updated document moves its row's vector with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.cli import cli
from shardvec.cluster.client import Client
from shardvec.contract.errors import FailedPrecondition
from shardvec.coordinator.embedding import minilm

pytestmark = pytest.mark.ray

DOCS = {
    "pets": "dogs are loyal pets",
    "fund": "a fund that tracks the S&P 500 index",
    "bike": "read and write GPX tracks from cycling trips",
}


def test_add_get_count_update_delete(cluster: ShardvecCluster, client: Client, name: str,
                                     tmp_path: Path) -> None:  # fmt: skip
    try:
        minilm.shared_model()
    except FailedPrecondition as exc:
        pytest.skip(f"text support not installed: {exc.message}")
    client.create_collection(name, embedding="minilm", shards=2)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(
        json.dumps({"id": k, "document": d, "metadata": {"src": f"{k}.md"}}) + "\n"
        for k, d in DOCS.items()
    ))

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--server", cluster.address, *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert "3 rows added" in run("add", name, "--documents", str(rows))
    assert run("count", name).strip() == "3"
    assert run("count", name, "--where", '{"src": "pets.md"}').strip() == "1"
    got = [json.loads(line) for line in run("get", name, "fund", "pets").splitlines()]
    assert [g["id"] for g in got] == ["fund", "pets"]
    assert got[0] == {"id": "fund", "metadata": {"src": "fund.md"}, "document": DOCS["fund"]}

    new = "how compound interest grows savings"
    assert "updated" in run("update", name, "fund", "--document", new,
                            "--metadata", '{"topic": "savings"}')
    got = json.loads(run("get", name, "fund").strip())
    assert got["document"] == new and got["metadata"] == {"src": "fund.md", "topic": "savings"}
    col = client.get_collection(name)
    top = col.search_texts([new], k=1)[0][0]  # the vector followed its text
    assert top.id == "fund" and top.score == pytest.approx(1, abs=1e-4)
    old = {h.id: h.score for h in col.search_texts([DOCS["fund"]], k=3)[0]}
    assert old["fund"] < 0.9  # no longer the old text's own vector (that scored 1)

    assert "1 rows deleted" in run("delete", name, "--where", '{"src": "bike.md"}')
    assert "1 rows deleted" in run("delete", name, "pets")
    assert run("count", name).strip() == "1"
    missing = CliRunner().invoke(cli, ["--server", cluster.address, "update", name, "gone",
                                       "--document", "x"])
    assert missing.exit_code == 1 and "NOT_FOUND" in missing.output
    client.drop_collection(name)
