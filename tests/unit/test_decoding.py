"""Requests protobuf cannot parse become InvalidArgument naming the field (coordinator/decoding)."""

from __future__ import annotations

import pytest

from shardvec.contract.errors import InvalidArgument
from shardvec.coordinator.api.decoding import decode_request, describe_problem
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb
from tests.wire_bytes import len_field


def test_a_valid_request_decodes() -> None:
    msg = pb.GetRequest(collection="c", ids=["a", "é"])
    got = decode_request(pb.GetRequest.FromString, msg.SerializeToString(), msg.DESCRIPTOR)
    assert got == msg
    assert decode_request(None, b"raw", None) == b"raw"


def test_bad_utf8_names_the_repeated_field_and_row() -> None:
    data = pb.GetRequest(collection="c", ids=["a", "b"]).SerializeToString()
    data += len_field(2, b"ok\xff")
    with pytest.raises(InvalidArgument, match=r"^ids\[2\]: not valid UTF-8 \(byte 2\)$"):
        decode_request(pb.GetRequest.FromString, data, pb.GetRequest.DESCRIPTOR)


def test_bad_utf8_deep_in_a_filter_names_the_path() -> None:
    cond = common_pb2.Condition(op=common_pb2.Condition.EQ, value_json="1").SerializeToString()
    cond += len_field(1, b"\xed\xa0\x80")  # a UTF-8 encoded surrogate as the field name
    leaf = len_field(1, cond)  # Filter.condition
    good = common_pb2.Filter(condition=common_pb2.Condition(field="x")).SerializeToString()
    all_ = len_field(2, len_field(1, good) + len_field(1, leaf))  # Filter.all.children
    data = pb.CountRequest(collection="c").SerializeToString() + len_field(2, all_)
    problem = describe_problem(pb.CountRequest.DESCRIPTOR, data)
    assert problem == "filter.all.children[1].condition.field: not valid UTF-8 (byte 0)"


def test_corrupt_wire_format_and_nesting() -> None:
    with pytest.raises(InvalidArgument, match="CountRequest wire format is corrupt at byte 0"):
        decode_request(pb.CountRequest.FromString, b"\x12\x50ab", pb.CountRequest.DESCRIPTOR)
    f = common_pb2.Filter(condition=common_pb2.Condition(field="a"))
    data = f.SerializeToString()
    for _ in range(120):
        data = len_field(4, data)  # Filter.negate
    problem = describe_problem(common_pb2.Filter.DESCRIPTOR, data)
    assert problem is not None and problem.endswith("nested deeper than 100 levels")
    assert problem.startswith("negate.negate") and len(problem) < 150


