"""Tests of shardvec.contract.validation: every rule, with the exact row each message names."""

from __future__ import annotations

import json
import re
import types
from typing import Any

import numpy as np
import pytest

from shardvec.contract.codec import decode_packed, encode_packed
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.limits import MAX_ID_BYTES, MAX_METADATA_BYTES, MAX_METADATA_KEYS
from shardvec.contract.validation import (
    parse_metadata_json,
    validate_ids,
    validate_metadatas,
    validate_vectors,
)


def _fails(message: str) -> Any:
    """pytest.raises for InvalidArgument whose message is exactly `message`."""
    return pytest.raises(InvalidArgument, match=f"^{re.escape(message)}$")


# ---------------------------------------------------------------------------------------------
# ids
# ---------------------------------------------------------------------------------------------


def test_ids_valid() -> None:
    assert validate_ids(["a", "b", "é" * 256]) == ["a", "b", "é" * 256]
    assert validate_ids(("x",)) == ["x"]
    assert validate_ids(["x" * MAX_ID_BYTES]) == ["x" * MAX_ID_BYTES]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([], "ids: batch is empty"),
        ("abc", "ids: expected a list of strings, got str"),
        (["a", "b", "c", ""], "ids[3]: id is empty"),
        (["a", 7], "ids[1]: id must be a string, got int"),
        (["a", None], "ids[1]: id must be a string, got NoneType"),
        (
            ["a"] + [f"x{i}" for i in range(6)] + ["y" * 600],
            "ids[7]: id is 600 bytes, the limit is 512",
        ),
        (["é" * 257], "ids[0]: id is 514 bytes, the limit is 512"),
        (["x" * 513], "ids[0]: id is 513 bytes, the limit is 512"),
        (["ok", "a\x00b"], "ids[1]: id contains a NUL character"),
        (["ok", "\ud800"], "ids[1]: id is not valid UTF-8 (lone surrogate)"),
        (["p", "q", "abc", "r", "s", "abc"], "ids[5]: duplicate of ids[2] ('abc')"),
    ],
)
def test_ids_errors(ids: Any, message: str) -> None:
    with _fails(message):
        validate_ids(ids)


def test_ids_field_name_and_long_duplicate() -> None:
    with _fails("keys[1]: id is empty"):
        validate_ids(["a", ""], field="keys")
    long_id = "z" * 200
    with pytest.raises(
        InvalidArgument, match=r"^ids\[1\]: duplicate of ids\[0\] \('z{64}\.\.\.'\)$"
    ):
        validate_ids([long_id, long_id])


# ---------------------------------------------------------------------------------------------
# metadatas
# ---------------------------------------------------------------------------------------------


def test_metadatas_valid_and_copied() -> None:
    tags = ["a", "b"]
    rows: list[object] = [
        {"s": "x", "i": 3, "f": 2.5, "b": True, "n": None, "tags": tags, "nums": [1, 2.5]},
        types.MappingProxyType({"t": (1, 2)}),
        {"empty": []},
        {},
    ]
    out = validate_metadatas(rows, 4)
    assert out[0] == rows[0]
    assert out[1] == {"t": [1, 2]} and type(out[1]) is dict
    assert out[2] == {"empty": []}
    out[0]["tags"].append("c")
    out[0]["new"] = 1
    assert tags == ["a", "b"] and "new" not in rows[0]  # type: ignore[operator,unused-ignore]


def test_metadatas_empty_means_n_empty_dicts() -> None:
    out = validate_metadatas([], 3)
    assert out == [{}, {}, {}]
    out[0]["a"] = 1
    assert out[1] == {}


def test_metadatas_limits_at_the_boundary() -> None:
    keys = {f"k{i}": i for i in range(MAX_METADATA_KEYS)}
    assert validate_metadatas([keys], 1) == [keys]
    overhead = len(json.dumps({"k": ""}, separators=(",", ":")))
    at_limit = {"k": "x" * (MAX_METADATA_BYTES - overhead)}
    assert validate_metadatas([at_limit], 1) == [at_limit]
    assert validate_metadatas([{"k": "a" * 256}], 1)  # 256-char values are fine, keys too:
    assert validate_metadatas([{"k" * 256: 1}], 1)
    assert validate_metadatas([{"big": 2**63 - 1, "small": -(2**63)}], 1)


@pytest.mark.parametrize(
    ("rows", "n", "message"),
    [
        ([{}, {}], 3, "metadatas: expected 3 rows (one per id), got 2"),
        ({"a": 1}, 1, "metadatas: expected a list of objects, got dict"),
        ([{}, None], 2, "metadatas[1]: metadata must be an object, got NoneType"),
        ([{}, [("a", 1)]], 2, "metadatas[1]: metadata must be an object, got list"),
        ([{}, {"": 1}], 2, "metadatas[1]: key is empty"),
        ([{}, {1: 1}], 2, "metadatas[1]: key must be a string, got int"),
        ([{"$a": 1}], 1, "metadatas[0]: key '$a' must not start with '$'"),
        ([{"k" * 257: 1}], 1, "is 257 characters, the limit is 256"),
        ([{"\udc80": 1}], 1, "metadatas[0]: key '\\udc80' is not valid UTF-8 (lone surrogate)"),
        (
            [{}, {}, {}, {}, {"author": {"name": "x"}}],
            5,
            "metadatas[4].author: nested objects are not supported",
        ),
        ([{"t": [[1]]}], 1, "metadatas[0].t: nested lists are not supported"),
        ([{"t": [{"a": 1}]}], 1, "metadatas[0].t: nested objects are not supported"),
        (
            [{"t": ["a", 1]}],
            1,
            "metadatas[0].t: list items must be all strings or all numbers, not both",
        ),
        (
            [{"t": [1, True]}],
            1,
            "metadatas[0].t: list items must be all strings or all numbers, got bool",
        ),
        (
            [{"t": [True]}],
            1,
            "metadatas[0].t: list items must be all strings or all numbers, got bool",
        ),
        (
            [{"t": [None]}],
            1,
            "metadatas[0].t: list items must be all strings or all numbers, got NoneType",
        ),
        ([{"t": [1.0, float("nan")]}], 1, "metadatas[0].t: NaN or infinity is not allowed"),
        (
            [{"t": ["ok", "\ud800"]}],
            1,
            "metadatas[0].t: string is not valid UTF-8 (lone surrogate)",
        ),
        ([{}, {"f": float("nan")}], 2, "metadatas[1].f: NaN or infinity is not allowed"),
        ([{}, {"f": float("-inf")}], 2, "metadatas[1].f: NaN or infinity is not allowed"),
        ([{"i": 2**63}], 1, f"metadatas[0].i: integer {2**63} does not fit in 64 bits"),
        ([{"s": "\ud800"}], 1, "metadatas[0].s: string is not valid UTF-8 (lone surrogate)"),
        ([{"b": b"bytes"}], 1, "metadatas[0].b: unsupported value type bytes"),
        ([{"s": {1, 2}}], 1, "metadatas[0].s: unsupported value type set"),
    ],
)
def test_metadatas_errors(rows: Any, n: int, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_metadatas(rows, n)
    assert message in info.value.message
    if message.startswith("metadatas"):
        assert info.value.message == message


def test_metadatas_too_many_keys_and_too_big() -> None:
    many = {f"k{i}": i for i in range(MAX_METADATA_KEYS + 1)}
    with _fails("metadatas[1]: 257 keys, the limit is 256"):
        validate_metadatas([{}, many], 2)
    overhead = len(json.dumps({"k": ""}, separators=(",", ":")))
    big = {"k": "x" * (MAX_METADATA_BYTES - overhead + 1)}
    with _fails("metadatas[2]: metadata is 65537 bytes as JSON, the limit is 65536"):
        validate_metadatas([{}, {}, big], 3)
    wide = {"k": "é" * 40_000}  # counted in UTF-8 bytes, not characters
    with _fails("metadatas[0]: metadata is 80008 bytes as JSON, the limit is 65536"):
        validate_metadatas([wide], 1)


def test_metadatas_field_name() -> None:
    with _fails("docs[0].x: nested objects are not supported"):
        validate_metadatas([{"x": {}}], 1, field="docs")


# ---------------------------------------------------------------------------------------------
# metadata JSON (the wire form)
# ---------------------------------------------------------------------------------------------


def test_metadata_json_valid() -> None:
    texts = ['{"a": 1, "t": ["x"]}', "", '{"f": 2.5, "n": null, "b": false}']
    assert parse_metadata_json(texts, 3) == [
        {"a": 1, "t": ["x"]},
        {},
        {"f": 2.5, "n": None, "b": False},
    ]
    assert parse_metadata_json([], 2) == [{}, {}]


@pytest.mark.parametrize(
    ("texts", "n", "message"),
    [
        (["{}"], 2, "metadata_json: expected 2 rows (one per id), got 1"),
        ("{}", 2, "metadata_json: expected a list of strings, got str"),
        (["{}", b"{}"], 2, "metadata_json[1]: expected JSON text, got bytes"),
        (["{}", "{bad"], 2, "metadata_json[1]: invalid JSON: "),
        (["{}", '{"a": 1} x'], 2, "metadata_json[1]: invalid JSON: Extra data"),
        (["[1, 2]"], 1, "metadata_json[0]: expected a JSON object, got array"),
        (["3"], 1, "metadata_json[0]: expected a JSON object, got int"),
        (['"s"'], 1, "metadata_json[0]: expected a JSON object, got str"),
        (["null"], 1, "metadata_json[0]: expected a JSON object, got NoneType"),
        (["{}", '{"a": NaN}'], 2, "metadata_json[1]: invalid JSON: NaN is not valid JSON"),
        (['{"a": Infinity}'], 1, "metadata_json[0]: invalid JSON: Infinity is not valid JSON"),
        (['{"a": [-Infinity]}'], 1, "metadata_json[0]: invalid JSON: -Infinity is not valid JSON"),
        (['{"a": 1e400}'], 1, "metadata_json[0].a: NaN or infinity is not allowed"),
        (['{"a": 1, "a": 2}'], 1, "metadata_json[0]: invalid JSON: duplicate key 'a'"),
        (['{"a": {"b": 1}}'], 1, "metadata_json[0].a: nested objects are not supported"),
        (['{"$a": 1}'], 1, "metadata_json[0]: key '$a' must not start with '$'"),
        (['{"a": "\\ud800"}'], 1, "metadata_json[0].a: string is not valid UTF-8 (lone surrogate)"),
        (["[" * 100_000 + "]" * 100_000], 1, "metadata_json[0]: invalid JSON: nested too deeply"),
    ],
)
def test_metadata_json_errors(texts: Any, n: int, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_metadata_json(texts, n)
    assert info.value.message.startswith(message)


# ---------------------------------------------------------------------------------------------
# vectors
# ---------------------------------------------------------------------------------------------


def test_vectors_valid() -> None:
    rng = np.random.default_rng(3)
    v64 = rng.standard_normal((5, 8))
    out = validate_vectors(v64, 8, "cosine")
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (5, 8)
    assert np.allclose(out, v64, atol=1e-6)
    v32 = rng.standard_normal((5, 8)).astype(np.float32)
    assert np.shares_memory(validate_vectors(v32, 8, "dot"), v32)  # no copy when already fine
    fortran = np.asfortranarray(v32)
    assert validate_vectors(fortran, 8, "euclidean").flags.c_contiguous
    assert validate_vectors(np.arange(8), 8, "cosine").shape == (1, 8)  # 1-D ints: one row
    assert validate_vectors([[1, 0], [0, 1]], 2, "cosine").shape == (2, 2)  # type: ignore[arg-type]
    zeros = np.zeros((2, 3))
    assert validate_vectors(zeros, 3, "dot").shape == (2, 3)  # zero vectors are fine for dot
    assert validate_vectors(zeros, 3, "euclidean").shape == (2, 3)


def _with_bad_row(row: int, value: float, n: int = 20, dim: int = 4) -> np.ndarray:
    arr = np.ones((n, dim))
    arr[row, 2] = value
    return arr


@pytest.mark.parametrize(
    ("vectors", "dim", "metric", "message"),
    [
        (np.ones((3, 383)), 384, "cosine", "vectors: expected dimension 384, got 383"),
        (np.ones(383), 384, "cosine", "vectors: expected dimension 384, got 383"),
        (
            np.ones((2, 2, 2)),
            2,
            "cosine",
            "vectors: expected a 2-D array (n, 2), got shape (2, 2, 2)",
        ),
        (np.float32(1.0), 1, "cosine", "vectors: expected a 2-D array (n, 1), got shape ()"),
        (np.ones((0, 4)), 4, "cosine", "vectors: batch is empty"),
        (np.ones(0), 4, "cosine", "vectors: batch is empty"),
        (_with_bad_row(12, np.nan), 4, "dot", "vectors[12]: contains NaN or infinity"),
        (
            _with_bad_row(7, -np.inf).astype(np.float32),
            4,
            "dot",
            "vectors[7]: contains NaN or infinity",
        ),
        (_with_bad_row(5, 1e300), 4, "euclidean", "vectors[5]: value out of float32 range"),
        (np.zeros((3, 4)), 4, "cosine", "vectors[0]: zero vector has no cosine direction"),
        (np.array([["a", "b"]]), 2, "cosine", "vectors: expected numbers, got dtype <U1"),
        (np.ones((1, 2), dtype=bool), 2, "cosine", "vectors: expected numbers, got dtype bool"),
        (
            np.ones((1, 2), dtype=complex),
            2,
            "cosine",
            "vectors: expected numbers, got dtype complex128",
        ),
        (
            np.ones((1, 2)),
            2,
            "hamming",
            "metric must be one of cosine, dot, euclidean, got 'hamming'",
        ),
    ],
)
def test_vectors_errors(vectors: Any, dim: int, metric: str, message: str) -> None:
    with _fails(message):
        validate_vectors(vectors, dim, metric)


def test_vectors_ragged_lists() -> None:
    with _fails("vectors: rows must all have dimension 2"):
        validate_vectors([[1.0, 2.0], [3.0]], 2, "dot")  # type: ignore[arg-type]


def test_vectors_cosine_zero_rows() -> None:
    arr = np.ones((6, 4), dtype=np.float32)
    arr[3] = 0
    with _fails("vectors[3]: zero vector has no cosine direction"):
        validate_vectors(arr, 4, "cosine")
    arr[3] = 1e-30  # non-zero, but its squared norm underflows float32 to zero
    with _fails("vectors[3]: zero vector has no cosine direction"):
        validate_vectors(arr, 4, "cosine")
    arr[3] = 1e30  # finite, but its squared norm overflows float32
    with _fails("vectors[3]: vector norm overflows float32"):
        validate_vectors(arr, 4, "cosine")
    assert validate_vectors(arr, 4, "dot").shape == (6, 4)


def test_vectors_first_bad_row_is_named_and_field_used() -> None:
    arr = np.ones((10, 2))
    arr[8, 0] = np.nan
    arr[4, 1] = np.inf
    with _fails("queries[4]: contains NaN or infinity"):
        validate_vectors(arr, 2, "dot", field="queries")


# ---------------------------------------------------------------------------------------------
# packed vectors
# ---------------------------------------------------------------------------------------------


def test_packed_round_trip() -> None:
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((7, 5)).astype(np.float32)
    data = encode_packed(vecs)
    assert len(data) == 7 * 5 * 4
    out = decode_packed(data, 5)
    assert out.shape == (7, 5) and np.array_equal(out, vecs)
    assert encode_packed(np.array([1.0], dtype=">f4")) == b"\x00\x00\x80\x3f"  # little-endian
    assert encode_packed(np.array([[1.0, 2.0]])) == np.array([1, 2], dtype="<f4").tobytes()


def test_decode_packed_is_zero_copy() -> None:
    buf = bytearray(encode_packed(np.arange(6, dtype=np.float32)))
    out = decode_packed(buf, 3)
    assert out.shape == (2, 3)
    assert np.shares_memory(out, np.frombuffer(buf, dtype="<f4"))
    buf[0:4] = np.array([42.0], dtype="<f4").tobytes()
    assert out[0, 0] == 42.0  # a view of the caller's buffer, not a copy
    view = decode_packed(memoryview(bytes(buf)), 3)
    assert view[0, 0] == 42.0 and not view.flags.writeable


@pytest.mark.parametrize(
    ("size", "dim", "message"),
    [
        (0, 4, "vectors: packed data is 0 bytes, not a positive multiple of 4 * dim = 16 (dim 4)"),
        (5, 1, "vectors: packed data is 5 bytes, not a positive multiple of 4 * dim = 4 (dim 1)"),
        (
            24,
            4,
            "vectors: packed data is 24 bytes, not a positive multiple of 4 * dim = 16 (dim 4)",
        ),
        (16, 0, "vectors: dimension must be a positive integer, got 0"),
    ],
)
def test_decode_packed_bad_lengths(size: int, dim: int, message: str) -> None:
    with _fails(message):
        decode_packed(bytes(size), dim)


def test_decode_packed_field_name() -> None:
    with pytest.raises(InvalidArgument, match=r"^queries: packed data is 3 bytes"):
        decode_packed(b"abc", 2, field="queries")
