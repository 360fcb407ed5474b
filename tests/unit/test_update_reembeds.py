"""Updating the document of a row in a collection that embeds its documents gives the row the
new document's vector in the same atomic batch, on 1 and on 4 shards: the old text no longer
finds it, the new one does with a cosine of 1, its metadata is merged (or replaced) as any
Update's, and rows whose document is not given keep theirs. Without Ray: the public service
over in-process replicas and an in-process embedder pool (tests/unit/test_text_in.py).

Skipped when the text extra or the weights are not installed (`make text`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.errors import InvalidArgument
from shardvec.coordinator.embedding import minilm
from shardvec.v1 import vector_search_pb2 as pb
from tests.text_service import DOCS, Service, text_search

NEW = "How compound interest grows savings over decades"


@pytest.fixture(params=[1, 4], ids=["1-shard", "4-shards"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    try:
        minilm.shared_model()
    except Exception as exc:  # the text extra or the weights are absent
        pytest.skip(f"text support not installed: {exc}")
    s = Service(tmp_path)
    s.call("CreateCollection",
           pb.CreateCollectionRequest(name="t", embedding="minilm", shards=request.param))
    metas = [json.dumps({"i": i, "tag": "x"}) for i in range(len(DOCS))]
    up = pb.UpsertRequest(collection="t", ids=[f"d{i}" for i in range(len(DOCS))],
                          metadata_json=metas)
    up.documents.extend(DOCS)
    s.call("Upsert", up)
    yield s
    s.close()


def _get(svc: Service, ids: list[str]) -> pb.GetResponse:
    req = pb.GetRequest(collection="t", ids=ids)
    req.include.metadata = req.include.vectors = req.include.documents = True
    return svc.call("Get", req)


def _vectors(resp: pb.GetResponse) -> np.ndarray:
    return np.frombuffer(resp.vectors.packed, dtype="<f4").reshape(len(resp.ids), -1)


def test_a_new_document_brings_its_own_vector(svc: Service) -> None:
    before = _vectors(_get(svc, ["d1", "d2"]))
    upd = pb.UpdateRequest(collection="t", ids=["d0", "d1"],
                           metadata_json=["", json.dumps({"tag": "y"})])
    upd.documents.extend([NEW, ""])  # d0: a new text; d1: only its metadata
    resp = svc.call("Update", upd)
    assert (resp.updated, list(resp.missing_ids), resp.inserted) == (2, [], 0)

    got = _get(svc, ["d0", "d1", "d2"])
    want = minilm.shared_model().embed([NEW])[0]
    vectors = _vectors(got)
    np.testing.assert_allclose(vectors[0], want, atol=1e-5)  # d0: the new text's vector
    np.testing.assert_array_equal(vectors[1:], before)  # d1, d2 keep theirs
    assert list(got.documents) == [NEW, DOCS[1], DOCS[2]]
    metas = [json.loads(m) for m in got.metadata_json]
    assert metas == [{"i": 0, "tag": "x"}, {"i": 1, "tag": "y"}, {"i": 2, "tag": "x"}]

    # The old text finds the row no longer first; the new one finds it with a cosine of 1.
    old = svc.call("Search", text_search("t", DOCS[0], k=1)).results[0]
    assert old.ids[0] != "d0"
    hit = svc.call("Search", text_search("t", NEW, k=1)).results[0]
    assert hit.ids[0] == "d0" and hit.scores[0] == pytest.approx(1, abs=1e-5)
    count = svc.call("Count", pb.CountRequest(collection="t")).count
    assert count == len(DOCS)


def test_replaced_metadata_and_upsert_missing_are_embedded_too(svc: Service) -> None:
    upd = pb.UpdateRequest(collection="t", ids=["d3", "new"], replace_metadata=True,
                           upsert_missing=True,
                           metadata_json=[json.dumps({"only": 1}), json.dumps({"fresh": True})])
    upd.documents.extend([NEW, "Plot a histogram of words"])
    resp = svc.call("Update", upd)
    assert (resp.updated, resp.inserted) == (1, 1)
    got = _get(svc, ["d3", "new"])
    assert [json.loads(m) for m in got.metadata_json] == [{"only": 1}, {"fresh": True}]
    want = minilm.shared_model().embed([NEW, "Plot a histogram of words"])
    np.testing.assert_allclose(_vectors(got), want, atol=1e-5)


def test_a_missing_row_without_a_document_still_needs_its_vector(svc: Service) -> None:
    upd = pb.UpdateRequest(collection="t", ids=["d0", "gone"], upsert_missing=True)
    upd.documents.extend([NEW, ""])
    svc.reject("Update", upd, InvalidArgument, "ids[1]", "'gone'")
    got = _get(svc, ["d0"])  # nothing changed anywhere
    assert list(got.documents) == [DOCS[0]]
