"""Tests of the filter language (shardvec.contract.filters) and its columnar evaluator
(shard.columns): the parser, the tree checks and the masks."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.filters import (
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_NODES,
    OPS,
    And,
    Cond,
    Filter,
    Not,
    Or,
    filter_fields,
    parse_where,
    validate_filter,
    where_to_dict,
)
from shardvec.shard.columns import MetadataColumns

# ---------------------------------------------------------------------------------------------
# A straightforward pure-Python evaluator: the specification the columns are checked against.
# ---------------------------------------------------------------------------------------------

_MISSING = object()


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ref_eq(v: object, x: object) -> bool:
    if v is _MISSING or isinstance(v, list):
        return False
    if x is None:
        return v is None
    if isinstance(x, bool):
        return isinstance(v, bool) and v == x
    if _is_num(x):
        return _is_num(v) and float(v) == float(x)  # type: ignore[arg-type]
    return isinstance(v, str) and v == x


def _ref_cond(md: Mapping[str, Any], c: Cond) -> bool:
    v = md.get(c.field, _MISSING)
    if c.op == "eq":
        return _ref_eq(v, c.value)
    if c.op == "ne":
        return not _ref_eq(v, c.value)
    if c.op == "in":
        return any(_ref_eq(v, x) for x in c.value)
    if c.op == "nin":
        return not any(_ref_eq(v, x) for x in c.value)
    if c.op == "exists":
        return bool((v is not _MISSING) == c.value)
    if c.op == "contains":
        return isinstance(v, list) and any(_ref_eq(item, c.value) for item in v)
    if not _is_num(v):
        return False
    a, b = float(v), float(c.value)  # type: ignore[arg-type,unused-ignore]
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[c.op]


def _ref(md: Mapping[str, Any], f: Filter) -> bool:
    if isinstance(f, Cond):
        return _ref_cond(md, f)
    if isinstance(f, And):
        return all(_ref(md, c) for c in f.children)
    if isinstance(f, Or):
        return any(_ref(md, c) for c in f.children)
    return not _ref(md, f.child)


def _columns(rows: list[dict[str, Any]]) -> MetadataColumns:
    cols = MetadataColumns()
    cols.set(np.arange(len(rows)), rows)
    return cols


def _hits(cols: MetadataColumns, where: Mapping[str, Any], n: int) -> set[int]:
    mask = cols.mask(parse_where(where), n)
    assert mask.dtype == np.bool_ and mask.shape == (n,)
    return {int(i) for i in np.flatnonzero(mask)}


# ---------------------------------------------------------------------------------------------
# Every operator on every kind of value
# ---------------------------------------------------------------------------------------------

ROWS: list[dict[str, Any]] = [
    {},  # 0: missing
    {"v": None},  # 1: null
    {"v": True},  # 2
    {"v": False},  # 3
    {"v": 1},  # 4: int
    {"v": 1.0},  # 5: float equal to the int
    {"v": 2.5},  # 6
    {"v": "a"},  # 7
    {"v": "1"},  # 8: a string that looks like a number
    {"v": ["a", "b"]},  # 9: list of str
    {"v": [1, 2.5]},  # 10: list of numbers
    {"v": []},  # 11: empty list
]
ALL = set(range(len(ROWS)))

CASES: list[tuple[dict[str, Any], set[int]]] = [
    ({"v": 1}, {4, 5}),
    ({"v": 1.0}, {4, 5}),
    ({"v": {"$eq": 2.5}}, {6}),
    ({"v": True}, {2}),
    ({"v": False}, {3}),
    ({"v": 0}, set()),
    ({"v": None}, {1}),
    ({"v": "a"}, {7}),
    ({"v": "1"}, {8}),
    ({"v": "zzz"}, set()),
    ({"v": {"$ne": 1}}, ALL - {4, 5}),
    ({"v": {"$ne": None}}, ALL - {1}),
    ({"v": {"$ne": True}}, ALL - {2}),
    ({"v": {"$ne": "a"}}, ALL - {7}),
    ({"v": {"$gt": 1}}, {6}),
    ({"v": {"$gte": 1}}, {4, 5, 6}),
    ({"v": {"$lt": 2.5}}, {4, 5}),
    ({"v": {"$lte": 2.5}}, {4, 5, 6}),
    ({"v": {"$gt": 0}}, {4, 5, 6}),
    ({"v": {"$lt": 100}}, {4, 5, 6}),
    ({"v": {"$gt": 100}}, set()),
    ({"v": {"$in": [1, "a"]}}, {4, 5, 7}),
    ({"v": {"$in": [None, True]}}, {1, 2}),
    ({"v": {"$in": [2.5, False]}}, {3, 6}),
    ({"v": {"$in": ["zzz", 7]}}, set()),
    ({"v": {"$nin": [1, "a"]}}, ALL - {4, 5, 7}),
    ({"v": {"$nin": [None]}}, ALL - {1}),
    ({"v": {"$exists": True}}, ALL - {0}),
    ({"v": {"$exists": False}}, {0}),
    ({"v": {"$contains": "a"}}, {9}),
    ({"v": {"$contains": "c"}}, set()),
    ({"v": {"$contains": 1}}, {10}),
    ({"v": {"$contains": 1.0}}, {10}),
    ({"v": {"$contains": 2.5}}, {10}),
    ({"v": {"$contains": True}}, set()),
    ({"v": {"$contains": "1"}}, set()),
    ({"other": {"$exists": False}}, ALL),
    ({"other": {"$ne": 1}}, ALL),
    ({"other": 1}, set()),
    ({"other": {"$contains": 1}}, set()),
]


@pytest.mark.parametrize(("where", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
def test_operator_on_every_kind(where: dict[str, Any], expected: set[int]) -> None:
    cols = _columns(ROWS)
    assert _hits(cols, where, len(ROWS)) == expected
    # The reference evaluator agrees, so the property test below checks the same semantics.
    f = parse_where(where)
    assert {i for i, md in enumerate(ROWS) if _ref(md, f)} == expected


def test_bool_list_items_are_not_numbers() -> None:
    cols = _columns([{"v": [True]}, {"v": [1]}, {"v": [0.0]}])
    assert _hits(cols, {"v": {"$contains": True}}, 3) == {0}
    assert _hits(cols, {"v": {"$contains": 1}}, 3) == {1}
    assert _hits(cols, {"v": {"$contains": False}}, 3) == set()
    assert _hits(cols, {"v": {"$contains": 0}}, 3) == {2}


def test_multi_key_is_implicit_and() -> None:
    rows: list[dict[str, Any]] = [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}]
    rows.append({"b": "x"})
    cols = _columns(rows)
    assert _hits(cols, {"a": 1, "b": "x"}, 4) == {0}
    assert parse_where({"a": 1, "b": "x"}) == And((Cond("a", "eq", 1), Cond("b", "eq", "x")))


def test_several_operators_on_one_field_are_anded() -> None:
    cols = _columns([{"y": y} for y in range(10)])
    assert _hits(cols, {"y": {"$gte": 3, "$lt": 6}}, 10) == {3, 4, 5}
    assert parse_where({"y": {"$gte": 3, "$lt": 6}}) == And(
        (Cond("y", "gte", 3), Cond("y", "lt", 6))
    )


def test_nested_and_or_not() -> None:
    rows = [{"y": y, "g": "ab"[y % 2], "t": ["even" if y % 2 == 0 else "odd"]} for y in range(10)]
    cols = _columns(rows)
    where = {
        "$or": [
            {"$and": [{"y": {"$gte": 7}}, {"g": "a"}]},
            {"$not": {"t": {"$contains": "odd"}}},
        ]
    }
    assert _hits(cols, where, 10) == {0, 2, 4, 6, 8}
    where2 = {"$and": [{"$not": {"y": {"$in": [1, 2, 3]}}}, {"$or": [{"g": "b"}, {"y": 0}]}]}
    assert _hits(cols, where2, 10) == {0, 5, 7, 9}
    assert _hits(cols, {"$not": {"$not": {"y": 4}}}, 10) == {4}


def test_parse_shapes() -> None:
    assert parse_where({"year": 2024}) == Cond("year", "eq", 2024)
    assert parse_where({"year": {"$gte": 2024}}) == Cond("year", "gte", 2024)
    assert parse_where({"x": {"$in": [1, "a"]}}) == Cond("x", "in", (1, "a"))
    assert parse_where({"$and": [{"a": 1}]}) == And((Cond("a", "eq", 1),))
    assert parse_where({"$or": [{"a": 1}, {"b": 2}]}) == Or(
        (Cond("a", "eq", 1), Cond("b", "eq", 2))
    )
    assert parse_where({"$not": {"a": None}}) == Not(Cond("a", "eq", None))
    mixed = parse_where({"$or": [{"a": 1}], "b": 2})
    assert mixed == And((Or((Cond("a", "eq", 1),)), Cond("b", "eq", 2)))


@pytest.mark.parametrize(
    "where",
    [
        {"a": 1},
        {"a": {"$in": [1, "x", None, True]}},
        {"a": {"$exists": False}},
        {"a": 1, "b": {"$lt": 2.5}},
        {"$or": [{"a": {"$contains": "x"}}, {"$not": {"b": {"$nin": ["q"]}}}]},
        {"$and": [{"$and": [{"a": {"$ne": None}}]}, {"c": {"$gt": -1, "$lte": 9}}]},
    ],
)
def test_where_to_dict_round_trip(where: dict[str, Any]) -> None:
    f = parse_where(where)
    d = where_to_dict(f)
    assert parse_where(d) == f
    assert where_to_dict(parse_where(d)) == d
    validate_filter(f)


def test_filter_fields() -> None:
    f = parse_where({"$or": [{"a": 1}, {"$not": {"b": {"$exists": True}}}], "c": {"$gt": 1}})
    assert filter_fields(f) == {"a", "b", "c"}
    assert filter_fields(Cond("z", "eq", 1)) == {"z"}


# ---------------------------------------------------------------------------------------------
# Errors: every message names the path
# ---------------------------------------------------------------------------------------------

ERRORS: list[tuple[object, str]] = [
    ({}, "filter: empty object at where (pass None for no filter)"),
    ("year", "filter: expected an object at where, got 'year'"),
    ({"year": {"$foo": 1}}, "filter: unknown operator '$foo' at where.year"),
    ({"$foo": 1}, "filter: unknown operator '$foo' at where"),
    ({"tags": {"$gt": "a"}}, "filter: $gt needs a number at where.tags, got 'a'"),
    ({"x": {"$gte": True}}, "filter: $gte needs a number at where.x, got True"),
    ({"x": {"$lt": None}}, "filter: $lt needs a number at where.x, got None"),
    ({"x": {"$lte": float("inf")}}, "filter: $lte needs a number at where.x, got inf"),
    ({"x": {"$gt": [1]}}, "filter: $gt needs a number at where.x, got list"),
    ({"x": {"$eq": float("nan")}}, "filter: $eq needs a finite number at where.x, got nan"),
    ({"x": {"$eq": 10**400}}, "filter: $eq needs a finite number at where.x"),
    ({"x": {"$in": []}}, "filter: $in needs a non-empty list at where.x"),
    ({"x": {"$in": "abc"}}, "filter: $in needs a non-empty list at where.x"),
    ({"x": {"$nin": 3}}, "filter: $nin needs a non-empty list at where.x"),
    ({"x": {"$nin": [1, [1]]}}, "filter: $nin needs a scalar at where.x[1], got list"),
    ({"x": {"$in": [{"a": 1}]}}, "filter: $in needs a scalar at where.x[0], got dict"),
    (
        {"x": {"$in": list(range(MAX_IN_VALUES + 1))}},
        f"filter: $in takes at most {MAX_IN_VALUES} values at where.x, got {MAX_IN_VALUES + 1}",
    ),
    ({"x": {"$exists": 1}}, "filter: $exists needs true or false at where.x, got 1"),
    ({"x": {"$contains": None}}, "filter: $contains needs a string, number or bool at where.x"),
    ({"x": {"$contains": [1]}}, "filter: $contains needs a scalar at where.x, got list"),
    ({"x": [1, 2]}, "filter: $eq needs a scalar at where.x, got list"),
    ({"x": {"$ne": {"a": 1}}}, "filter: $ne needs a scalar at where.x, got dict"),
    ({"x": {"a": 1}}, "filter: unknown operator 'a' at where.x (nested objects are not supported)"),
    ({"x": {"$eq": 1, "b": 1}}, "filter: unknown operator 'b' at where.x"),
    ({"x": {}}, "filter: empty operator object at where.x"),
    ({"$and": []}, "filter: $and needs a non-empty list at where.$and"),
    ({"$or": {"a": 1}}, "filter: $or needs a non-empty list at where.$or"),
    ({"$and": [{"a": 1}, 5]}, "filter: expected an object at where.$and[1], got 5"),
    ({"$and": [{"a": 1}, {}]}, "filter: empty object at where.$and[1]"),
    ({"$not": [{"a": 1}]}, "filter: expected an object at where.$not, got list"),
    ({"": 1}, "filter: field name is empty at where"),
    ({"a" * 257: 1}, "filter: field name is longer than 256 characters at where, got 257"),
    ({1: 2}, "filter: field name must be a string at where, got 1"),
    (
        {"$and": [{"a": 1}, {"$or": [{"b": 1}, {"y": {"$lt": "z"}}]}]},
        "filter: $lt needs a number at where.$and[1].$or[1].y, got 'z'",
    ),
    ({"$not": {"$and": [{"q": {"$bad": 1}}]}}, "unknown operator '$bad' at where.$not.$and[0].q"),
]


@pytest.mark.parametrize(("where", "message"), ERRORS, ids=[m for _, m in ERRORS])
def test_parse_errors_name_the_path(where: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_where(where)
    assert message in info.value.message


def _nested_not(levels: int) -> dict[str, Any]:
    where: dict[str, Any] = {"a": 1}
    for _ in range(levels):
        where = {"$not": where}
    return where


def test_depth_limit() -> None:
    parse_where(_nested_not(MAX_DEPTH - 1))  # the leaf sits at depth MAX_DEPTH
    with pytest.raises(InvalidArgument, match=f"nested deeper than {MAX_DEPTH} levels at where"):
        parse_where(_nested_not(MAX_DEPTH))
    tree: Filter = Cond("a", "eq", 1)
    for _ in range(MAX_DEPTH):
        tree = Not(tree)
    with pytest.raises(InvalidArgument, match="nested deeper than"):
        validate_filter(tree)


def test_node_limit() -> None:
    parse_where({"$or": [{"a": i} for i in range(MAX_NODES - 1)]})
    message = f"more than {MAX_NODES} nodes at where.$or[{MAX_NODES - 1}].a"
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        parse_where({"$or": [{"a": i} for i in range(MAX_NODES)]})
    with pytest.raises(InvalidArgument, match=f"more than {MAX_NODES} nodes"):
        validate_filter(Or(tuple(Cond("a", "eq", i) for i in range(MAX_NODES))))


VALIDATE_ERRORS: list[tuple[Any, str]] = [
    (Cond("", "eq", 1), "filter: field name is empty at where"),
    (Cond("$a", "eq", 1), "filter: field name must not start with '$' at where"),
    (Cond("a", "foo", 1), "filter: unknown operator '$foo' at where.a"),
    (Cond("a", "gt", "x"), "filter: $gt needs a number at where.a, got 'x'"),
    (Cond("a", "in", ()), "filter: $in needs a non-empty list at where.a"),
    (Cond("a", "exists", None), "filter: $exists needs true or false at where.a"),
    (And(()), "filter: $and needs a non-empty list at where.$and"),
    (Or([]), "filter: $or needs a non-empty list at where.$or"),  # type: ignore[arg-type]
    (And((1,)), "filter: expected a filter node at where.$and[0], got 1"),  # type: ignore[arg-type]
    (Not(Cond("b", "lt", None)), "filter: $lt needs a number at where.$not.b, got None"),
    (Or((Cond("a", "eq", 1), And((Cond("b", "in", ([1],)),)))), "at where.$or[1].$and[0].b[0]"),
    ({"a": 1}, "filter: expected a filter node at where, got dict"),
]


@pytest.mark.parametrize(("tree", "message"), VALIDATE_ERRORS, ids=[m for _, m in VALIDATE_ERRORS])
def test_validate_filter_errors(tree: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_filter(tree)
    assert message in info.value.message


def test_validate_filter_accepts_good_trees() -> None:
    validate_filter(Cond("a", "in", [1, 2]))  # a list from the wire is as good as a tuple
    validate_filter(And((Cond("a", "exists", True), Not(Cond("b", "contains", 2.5)))))
    for op in OPS:
        value: Any = {"in": (1,), "nin": ("x",), "exists": False}.get(op, 3)
        validate_filter(Cond("k", op, value))


# ---------------------------------------------------------------------------------------------
# MetadataColumns: rewrites, clears, growth, bounds
# ---------------------------------------------------------------------------------------------


def test_set_overwrites_slot_and_changes_type() -> None:
    cols = MetadataColumns()
    cols.set(np.array([0, 1]), [{"v": "a", "w": 1}, {"v": "a"}])
    assert _hits(cols, {"v": "a"}, 2) == {0, 1}
    cols.set(np.array([0]), [{"v": 3}])  # str -> number; "w" is gone
    assert _hits(cols, {"v": "a"}, 2) == {1}
    assert _hits(cols, {"v": 3}, 2) == {0}
    assert _hits(cols, {"v": {"$gt": 2}}, 2) == {0}
    assert _hits(cols, {"w": {"$exists": True}}, 2) == set()
    cols.set(np.array([0]), [{"v": ["a", 3]}])  # number -> list
    assert _hits(cols, {"v": 3}, 2) == set()
    assert _hits(cols, {"v": {"$gt": 2}}, 2) == set()
    assert _hits(cols, {"v": {"$contains": "a"}}, 2) == {0}
    cols.set(np.array([0]), [{"v": True}])  # list -> bool: postings forget the slot
    assert _hits(cols, {"v": {"$contains": "a"}}, 2) == set()
    assert _hits(cols, {"v": True}, 2) == {0}
    cols.set(np.array([0]), [{"v": None}])  # bool -> null
    assert _hits(cols, {"v": True}, 2) == set()
    assert _hits(cols, {"v": None}, 2) == {0}
    cols.set(np.array([0]), [{}])
    assert _hits(cols, {"v": {"$exists": False}}, 2) == {0}


def test_clear_forgets_rows() -> None:
    rows = [{"v": i, "s": str(i), "t": [i], "b": bool(i % 2)} for i in range(6)]
    cols = _columns(rows)
    cols.clear(np.array([1, 4]))
    assert _hits(cols, {"v": {"$gte": 0}}, 6) == {0, 2, 3, 5}
    assert _hits(cols, {"s": {"$in": ["1", "2"]}}, 6) == {2}
    assert _hits(cols, {"t": {"$contains": 4}}, 6) == set()
    assert _hits(cols, {"b": True}, 6) == {3, 5}
    assert _hits(cols, {"v": {"$exists": True}}, 6) == {0, 2, 3, 5}
    # Negations include cleared slots; the engine ANDs with its alive mask.
    assert _hits(cols, {"v": {"$ne": 0}}, 6) == {1, 2, 3, 4, 5}
    cols.clear(np.array([1, 100]))  # clearing twice or out of range is harmless
    cols.clear(np.array([], dtype=np.int64))
    cols.set(np.array([4]), [{"v": 40}])
    assert _hits(cols, {"v": 40}, 6) == {4}


def test_growth_past_initial_capacity_keeps_values() -> None:
    cols = MetadataColumns()
    for slot in range(300):
        cols.set(np.array([slot]), [{"n": slot, "s": f"s{slot % 7}", "b": slot % 2 == 0}])
    cols.set(np.array([50_000]), [{"n": -1, "s": "far", "t": ["x"]}])
    n = 50_010
    assert _hits(cols, {"n": {"$lt": 3}}, n) == {0, 1, 2, 50_000}
    assert _hits(cols, {"s": "s3"}, n) == {s for s in range(300) if s % 7 == 3}
    assert _hits(cols, {"b": False}, n) == {s for s in range(300) if s % 2}
    assert _hits(cols, {"t": {"$contains": "x"}}, n) == {50_000}
    assert _hits(cols, {"s": "far"}, n) == {50_000}


def test_mask_length_is_n() -> None:
    cols = _columns([{"v": 1}, {"v": 2}, {"v": 1, "t": ["q"]}])
    f_pos = parse_where({"v": 1})
    assert cols.mask(f_pos, 6).tolist() == [True, False, True, False, False, False]
    assert cols.mask(parse_where({"v": {"$ne": 1}}), 5).tolist() == [False, True, False, True, True]
    assert cols.mask(f_pos, 2).tolist() == [True, False]
    assert cols.mask(parse_where({"t": {"$contains": "q"}}), 2).tolist() == [False, False]
    assert cols.mask(f_pos, 0).shape == (0,)
    assert MetadataColumns().mask(f_pos, 4).tolist() == [False] * 4
    with pytest.raises(InvalidArgument):
        cols.mask(f_pos, -1)


def test_mask_returns_fresh_arrays() -> None:
    cols = _columns([{"v": 1}, {"v": 2}])
    f = parse_where({"v": {"$exists": True}})
    first = cols.mask(f, 2)
    first[:] = False
    assert cols.mask(f, 2).tolist() == [True, True]


def test_duplicate_slots_last_wins() -> None:
    cols = MetadataColumns()
    cols.set(np.array([3, 3]), [{"a": 1}, {"b": 2}])
    assert _hits(cols, {"a": {"$exists": True}}, 4) == set()
    assert _hits(cols, {"b": 2}, 4) == {3}


def test_bad_set_changes_nothing() -> None:
    cols = _columns([{"v": 1}])
    with pytest.raises(InvalidArgument, match="not supported"):
        cols.set(np.array([0, 1]), [{"v": 5}, {"v": {"nested": 1}}])
    assert _hits(cols, {"v": 1}, 2) == {0}
    with pytest.raises(InvalidArgument):
        cols.set(np.array([0]), [{"v": [[1]]}])
    with pytest.raises(InvalidArgument, match="2 slots but 1 metadatas"):
        cols.set(np.array([0, 1]), [{"v": 1}])
    with pytest.raises(InvalidArgument, match=">= 0"):
        cols.set(np.array([-1]), [{"v": 1}])
    with pytest.raises(InvalidArgument, match="integers"):
        cols.set(np.array([0.5]), [{"v": 1}])
    with pytest.raises(InvalidArgument, match="keys must be strings"):
        cols.set(np.array([0]), [{1: 1}])  # type: ignore[dict-item]
    assert _hits(cols, {"v": 1}, 1) == {0}


def test_nbytes_grows_with_data() -> None:
    cols = MetadataColumns()
    empty = cols.nbytes()
    cols.set(np.arange(1000), [{"n": i, "s": f"x{i}", "t": ["a", "b"]} for i in range(1000)])
    assert cols.nbytes() > empty + 1000 * (1 + 8 + 4)


def test_mask_is_fast_on_100k_rows() -> None:
    rng = np.random.default_rng(7)
    n = 100_000
    years = rng.integers(1990, 2025, n).tolist()
    genres = rng.choice(["rock", "jazz", "pop", "folk"], n).tolist()
    cols = MetadataColumns()
    cols.set(np.arange(n), [{"year": y, "genre": g} for y, g in zip(years, genres, strict=True)])
    f = parse_where(
        {"$or": [{"year": {"$gte": 2020}}, {"genre": {"$in": ["jazz", "folk"]}}], "x": {"$ne": 1}}
    )
    cols.mask(f, n)
    timings = []
    for _ in range(7):
        start = time.perf_counter()
        mask = cols.mask(f, n)
        timings.append(time.perf_counter() - start)
    expected = (np.asarray(years) >= 2020) | np.isin(np.asarray(genres), ["jazz", "folk"])
    assert np.array_equal(mask, expected)
    assert sorted(timings)[3] < 0.025  # typically ~1 ms; a Python loop over rows takes ~50 ms


# ---------------------------------------------------------------------------------------------
# Property: the columns agree with the pure-Python evaluator
# ---------------------------------------------------------------------------------------------

KEYS = ["a", "b"]
SCALARS = st.sampled_from([None, True, False, 0, 1, 1.0, 2.5, -3, "a", "b", "1"])
NUMBERS = st.sampled_from([0, 1, 1.0, 2.5, -3]) | st.integers(-3, 3)
ROW_VALUES = (
    SCALARS
    | NUMBERS
    | st.lists(st.sampled_from(["a", "b", "c", "1"]), max_size=3)
    | st.lists(NUMBERS, max_size=3)
)
ROW = st.dictionaries(st.sampled_from(KEYS), ROW_VALUES, max_size=2)


def _leaf() -> st.SearchStrategy[Filter]:
    key = st.sampled_from([*KEYS, *KEYS, "zz"])  # "zz" is in no row
    scalar_ops = st.builds(Cond, key, st.sampled_from(["eq", "ne"]), SCALARS)
    range_ops = st.builds(Cond, key, st.sampled_from(["gt", "gte", "lt", "lte"]), NUMBERS)
    set_ops = st.builds(
        Cond,
        key,
        st.sampled_from(["in", "nin"]),
        st.lists(SCALARS, min_size=1, max_size=4).map(tuple),
    )
    exists = st.builds(Cond, key, st.just("exists"), st.booleans())
    contains = st.builds(Cond, key, st.just("contains"), SCALARS.filter(lambda v: v is not None))
    return scalar_ops | range_ops | set_ops | exists | contains


FILTERS: st.SearchStrategy[Filter] = st.recursive(
    _leaf(),
    lambda kids: (
        st.lists(kids, min_size=1, max_size=3).map(lambda c: And(tuple(c)))
        | st.lists(kids, min_size=1, max_size=3).map(lambda c: Or(tuple(c)))
        | kids.map(Not)
    ),
    max_leaves=6,
)
# Mostly plain conditions, so each example tests many operator/value pairs directly.
FILTERS = _leaf() | _leaf() | FILTERS


@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    rows=st.lists(ROW, min_size=10, max_size=40),
    rewrites=st.lists(st.tuples(st.integers(0, 30), ROW), max_size=5),
    cleared=st.lists(st.integers(0, 30), max_size=5),
    filters=st.lists(FILTERS, min_size=1, max_size=12),
)
def test_mask_matches_reference(
    rows: list[dict[str, Any]],
    rewrites: list[tuple[int, dict[str, Any]]],
    cleared: list[int],
    filters: list[Filter],
) -> None:
    cols = _columns(rows)
    model: dict[int, dict[str, Any]] = dict(enumerate(rows))
    for slot, md in rewrites:
        cols.set(np.array([slot]), [md])
        model[slot] = md
    cols.clear(np.asarray(cleared, dtype=np.int64))
    for slot in cleared:
        model.pop(slot, None)
    n = max([len(rows), *[s + 1 for s, _ in rewrites]]) + 2
    for f in filters:
        validate_filter(f)
        assert parse_where(where_to_dict(f)) == f
        expected = [_ref(model.get(i, {}), f) for i in range(n)]
        assert cols.mask(f, n).tolist() == expected, where_to_dict(f)
