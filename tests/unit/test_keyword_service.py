"""Keyword and hybrid search at the public service, without Ray (tests/inproc.py replicas):
results, filters, fusion, the tokenizer in DescribeCollection, and every bad input of issue 18
with its precise status (the shardvec error class the interceptor maps to it) and a message
naming the field, the service answering afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import InvalidArgument, ShardvecError
from shardvec.contract.limits import MAX_TEXT_QUERY_BYTES
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext
from tests.inproc import LocalControls

DIM = 8
N = 240
WORDS = ["kafka", "postgres", "python", "rust", "json", "http"]



class Service:
    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.runtime = CoordinatorRuntime(data_dir, LocalControls(data_dir))
        self.service = VectorSearchService(
            self.runtime, CoordinatorSettings(data_dir=str(data_dir)), MicroBatcher(window_s=0.0)
        )

    def call(self, method: str, request: Any) -> Any:
        return self.loop.run_until_complete(getattr(self.service, method)(request, FakeContext()))


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, np.ndarray]]:
    s = Service(tmp_path_factory.mktemp("kwsvc"))
    for name, tok in (("kw", ""), ("stem", "porter"), ("nodocs", "")):
        s.call("CreateCollection", pb.CreateCollectionRequest(
            name=name, dimension=DIM, metric=common_pb2.COSINE, shards=2, text_tokenizer=tok
        ))
    vectors = np.random.default_rng(7).standard_normal((N, DIM)).astype(np.float32)
    for name in ("kw", "stem", "nodocs"):
        req = pb.UpsertRequest(collection=name, ids=[f"r{i}" for i in range(N)])
        req.metadata_json.extend(f'{{"i": {i}}}' for i in range(N))
        if name != "nodocs":
            req.documents.extend(
                f"row {i} about {WORDS[i % 6]} and {WORDS[(i // 6) % 6]} running"
                + (" zyzzyva" if i == 17 else "")
                for i in range(N)
            )
        req.vectors.dim = DIM
        req.vectors.packed = vectors.astype("<f4").tobytes()
        s.call("Upsert", req)
    yield s, vectors
    s.loop.run_until_complete(s.runtime.shutdown())
    s.loop.close()


def _kw(texts: list[str], name: str = "kw", k: int = 5, **kw: Any) -> Any:
    req = pb.SearchRequest(collection=name, k=k, **kw)
    req.text_query.extend(texts)
    return req


def _answers(s: Service) -> None:
    """The service still answers a keyword search."""
    resp = s.call("Search", _kw(["zyzzyva"]))
    assert list(resp.results[0].ids) == ["r17"]


def test_keyword_search_with_payloads_and_filters(svc: tuple[Service, np.ndarray]) -> None:
    s, _ = svc
    req = _kw(["zyzzyva", "kafka rust"], k=10)
    req.include.documents = req.include.metadata = True
    resp = s.call("Search", req)
    assert list(resp.results[0].ids) == ["r17"] and "zyzzyva" in resp.results[0].documents[0]
    r = resp.results[1]
    assert len(r.ids) == 10 and list(r.scores) == sorted(r.scores, reverse=True)
    assert all("kafka" in d or "rust" in d for d in r.documents)
    req = _kw(["kafka"], k=50)
    req.filter.condition.field, req.filter.condition.op = "i", common_pb2.Condition.LT
    req.filter.condition.value_json = "30"
    ids = list(s.call("Search", req).results[0].ids)
    assert ids and all(int(i[1:]) < 30 for i in ids)
    req = _kw(["kafka"], k=50)
    req.where_document.contains = "postgres"
    req.include.documents = True
    got = s.call("Search", req).results[0]
    assert len(got.ids) == 14  # i % 6 and i // 6 % 6 are 0 and 1, either way round
    assert all("kafka" in d and "postgres" in d for d in got.documents)


def test_porter_collection_stems_and_describe_shows_tokenizers(
    svc: tuple[Service, np.ndarray],
) -> None:
    s, _ = svc
    assert s.call("Search", _kw(["runs"], name="stem")).results[0].ids
    assert not s.call("Search", _kw(["runs"])).results[0].ids
    info = s.call("DescribeCollection", pb.DescribeCollectionRequest(name="stem"))
    assert info.text_tokenizer == "porter"
    info = s.call("DescribeCollection", pb.DescribeCollectionRequest(name="kw"))
    assert info.text_tokenizer == "unicode61"


def test_hybrid_fuses_the_two_legs(svc: tuple[Service, np.ndarray]) -> None:
    s, vectors = svc
    for kw in ({}, {"fusion": "rrf", "rrf_k": 10}, {"fusion": "weighted", "alpha": 0.3}):
        req = _kw(["zyzzyva"], k=5, **kw)
        req.queries.dim = DIM
        req.queries.packed = vectors[3:4].astype("<f4").tobytes()
        req.include.documents = True
        r = s.call("Search", req).results[0]
        # r3 is the vector leg's best, r17 the keyword leg's only hit: both are fused in
        assert {"r3", "r17"} <= set(r.ids) and len(r.ids) == 5
        assert len(r.documents) == 5 and all(r.documents)
    req = _kw(["zyzzyva"], k=3, fusion="weighted", alpha=1.0)
    req.queries.dim = DIM
    req.queries.packed = vectors[3:4].astype("<f4").tobytes()
    assert s.call("Search", req).results[0].ids[0] == "r3"


def test_no_documents_answers_empty(svc: tuple[Service, np.ndarray]) -> None:
    s, _ = svc
    resp = s.call("Search", _kw(["kafka"], name="nodocs"))
    assert len(resp.results) == 1 and not resp.results[0].ids


def test_injection_is_words(svc: tuple[Service, np.ndarray]) -> None:
    s, _ = svc
    for text in ['zyzzyva" OR "kafka', "zyzzyva NEAR(kafka rust)", "document:zyzzyva",
                 "zyzzyva*", "^zyzzyva", "(zyzzyva) AND NOT kafka", '"zyzzyva', "zyzzyva OR"]:
        ids = list(s.call("Search", _kw([text], k=20)).results[0].ids)
        assert "r17" in ids, text
    _answers(s)


def _vector_req(vectors: np.ndarray, **kw: Any) -> Any:
    req = pb.SearchRequest(collection="kw", k=5, **kw)
    req.queries.dim = DIM
    req.queries.packed = vectors[:1].astype("<f4").tobytes()
    return req


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda v: _kw([""]), "text_query[0]: empty text query"),
        (lambda v: _kw(["ok", "   "]), "text_query[1]: empty text query"),
        (lambda v: _kw(["!!! ... ***"]), "text_query[0]: no searchable words"),
        (lambda v: _kw(["a" * (MAX_TEXT_QUERY_BYTES + 1)]), f"{MAX_TEXT_QUERY_BYTES + 1} bytes"),
        (lambda v: _kw([" ".join(f"w{i}" for i in range(65))]), "65 terms, the limit is 64"),
        (lambda v: _kw(["kafka"], fusion="weighted"), "fusion: fusion, alpha and rrf_k need"),
        (lambda v: _vector_req(v, fusion="rrf"), "need a hybrid search"),
        (lambda v: _vector_req(v, alpha=0.5), "need a hybrid search"),
        (lambda v: _vector_req(v, text_query=["kafka"], fusion="max"), "fusion: must be one of"),
        (lambda v: _vector_req(v, text_query=["kafka"], fusion="weighted", alpha=1.5),
         "alpha: must be in [0, 1]"),
        (lambda v: _vector_req(v, text_query=["kafka"], alpha=0.5), "alpha: only with fusion"),
        (lambda v: _vector_req(v, text_query=["kafka"], rrf_k=10_001), "rrf_k: must be in"),
        (lambda v: _vector_req(v, text_query=["kafka", "rust"]), "2 texts for 1 queries"),
        (lambda v: _kw(["kafka"], query_ids=["r1"]), "text_query: not with query_ids"),
        (lambda v: _kw(["kafka"], k=0), "k must be in"),
    ],
)
def test_bad_input_is_a_precise_invalid_argument(
    svc: tuple[Service, np.ndarray], make: Any, fragment: str
) -> None:
    s, vectors = svc
    with pytest.raises(ShardvecError) as info:
        s.call("Search", make(vectors))
    assert type(info.value) is InvalidArgument, info.value
    assert fragment in info.value.message, info.value.message
    _answers(s)


def test_bad_tokenizer_is_refused(svc: tuple[Service, np.ndarray]) -> None:
    s, _ = svc
    with pytest.raises(InvalidArgument, match="text_tokenizer: must be one of unicode61, porter"):
        s.call("CreateCollection", pb.CreateCollectionRequest(
            name="bad", dimension=DIM, text_tokenizer="snowball"
        ))
    _answers(s)


def test_a_restored_snapshot_searches_by_keyword(svc: tuple[Service, np.ndarray]) -> None:
    s, _ = svc

    async def roundtrip() -> Any:
        chunks = [c async for c in s.service.CreateSnapshot(
            pb.CreateSnapshotRequest(collection="stem"), FakeContext()
        )]  # fmt: skip
        chunks[0].restore_as, chunks[0].shards = "stem_copy", 3

        async def feed() -> Any:
            for c in chunks:
                yield c

        return await s.service.RestoreSnapshot(feed(), FakeContext())

    info = s.loop.run_until_complete(roundtrip())
    assert info.text_tokenizer == "porter" and info.shards == 3
    for name in ("stem", "stem_copy"):
        r = s.call("Search", _kw(["zyzzyva runs"], name=name, k=5)).results[0]
        assert r.ids[0] == "r17", name
    a = s.call("Search", _kw(["kafka running"], name="stem", k=10)).results[0]
    b = s.call("Search", _kw(["kafka running"], name="stem_copy", k=10)).results[0]
    assert list(a.scores) == pytest.approx(list(b.scores))  # global statistics: same ranking
