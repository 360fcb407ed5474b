"""The filter language: a small tree, a Chroma-style `where` parser, and its checks.

A filter is a tree of `Cond` leaves joined by `And`, `Or` and `Not`. `parse_where` builds one
from a Chroma-style dict and `where_to_dict` turns it back. The shard engine evaluates a tree
over typed NumPy columns (`shard/columns.py`); these are the semantics it implements.

Semantics, over one row's metadata (a missing key is distinct from a key holding null):

- `eq`: scalar equality, type-strict, except that ints and floats compare numerically
  (1 == 1.0, both as float64). A bool is not a number (True != 1). `eq None` matches rows
  where the key is present with value null. A list-valued row never matches `eq`.
- `ne`: the logical NOT of `eq`, so rows missing the key (and list rows) match.
- `gt`/`gte`/`lt`/`lte`: the operand is a finite int or float (not a bool); matches rows whose
  value is a number satisfying it. Missing keys, nulls, bools, strings and lists never match.
- `in`: a non-empty list (at most 1024) of scalars; the OR of `eq` over them. `nin`: NOT `in`.
- `exists`: true matches rows that have the key (even with null); false the opposite.
- `contains`: the operand is a str, number or bool; matches rows whose value is a list holding
  an equal item (numbers compare numerically, bools are not numbers).
- `Not` negates over all `n` slots; the engine ANDs every mask with its alive mask, so cleared
  or never-written slots (which hold no keys) only ever surface through that AND.

Limits: field names are non-empty strings of at most 256 characters that do not start with
'$'; a tree is at most 32 levels deep and 4096 nodes in all. Every violation raises
InvalidArgument naming the path, e.g. `filter: unknown operator '$foo' at where.year`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.limits import (
    MAX_DOCUMENT_FILTER_CHARS,
    MAX_FIELD_CHARS,
    MAX_FILTER_DEPTH,
    MAX_FILTER_NODES,
    MAX_IN_VALUES,
)

Scalar: TypeAlias = str | int | float | bool | None

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "exists", "contains")
MAX_DEPTH = MAX_FILTER_DEPTH
MAX_NODES = MAX_FILTER_NODES

RANGE_OPS = ("gt", "gte", "lt", "lte")
ROOT = "where"


@dataclass(frozen=True)
class Cond:
    """One test on one metadata key: `value` is a scalar, a tuple for in/nin, a bool for exists."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    """Matches rows every child matches."""

    children: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    """Matches rows at least one child matches."""

    children: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    """Matches rows the child does not match."""

    child: Filter


Filter: TypeAlias = Cond | And | Or | Not


# Parsing and validation.


def _fail(what: str, path: str, *got: object) -> NoReturn:
    """Raise this module's one error shape: `filter: <what> at <path>[, got <value>]`."""
    tail = f", got {describe_value(got[0])}" if got else ""
    raise InvalidArgument(f"filter: {what} at {path}{tail}")


class _Budget:
    """Counts nodes and checks depth while a tree is parsed or walked."""

    def __init__(self) -> None:
        self.nodes = 0

    def enter(self, depth: int, path: str) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            _fail(f"more than {MAX_NODES} nodes", path)
        if depth > MAX_DEPTH:
            _fail(f"nested deeper than {MAX_DEPTH} levels", path)


def describe_value(value: object) -> str:
    """A short rendering of a bad operand for error messages."""
    if isinstance(value, (list, tuple, set, Mapping)):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_float(value: int | float) -> float:
    """float(value), with ints too large for a float clamped to +-inf."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _finite_number(value: object) -> bool:
    return is_number(value) and math.isfinite(as_float(value))  # type: ignore[arg-type]


def _check_scalar(op: str, value: object, path: str) -> None:
    if is_number(value) and not _finite_number(value):
        _fail(f"${op} needs a finite number", path, value)
    if not (value is None or isinstance(value, (bool, str)) or is_number(value)):
        _fail(f"${op} needs a scalar", path, value)


def _check_value(op: str, value: object, path: str) -> None:
    """Raise InvalidArgument unless `value` is a legal operand of `op`."""
    if op in ("eq", "ne"):
        _check_scalar(op, value, path)
    elif op in RANGE_OPS:
        if not _finite_number(value):
            _fail(f"${op} needs a number", path, value)
    elif op in ("in", "nin"):
        if not isinstance(value, (list, tuple)) or not value:
            _fail(f"${op} needs a non-empty list", path)
        if len(value) > MAX_IN_VALUES:
            _fail(f"${op} takes at most {MAX_IN_VALUES} values", path, len(value))
        for i, item in enumerate(value):
            _check_scalar(op, item, f"{path}[{i}]")
    elif op == "exists":
        if not isinstance(value, bool):
            _fail("$exists needs true or false", path, value)
    elif op == "contains":
        if value is None:
            _fail("$contains needs a string, number or bool", path, value)
        _check_scalar(op, value, path)
    else:
        _fail(f"unknown operator '${op}'", path)


def _check_field(name: object, path: str) -> str:
    if not isinstance(name, str):
        _fail("field name must be a string", path, name)
    if not name:
        _fail("field name is empty", path)
    if len(name) > MAX_FIELD_CHARS:
        _fail(f"field name is longer than {MAX_FIELD_CHARS} characters", path, len(name))
    if name.startswith("$"):
        _fail("field name must not start with '$'", path, name)
    return name


def _make_cond(name: str, op: str, value: object, path: str) -> Cond:
    _check_value(op, value, path)
    if op in ("in", "nin"):
        value = tuple(value)  # type: ignore[arg-type]
    return Cond(name, op, value)


def parse_where(where: Mapping[str, Any]) -> Filter:
    """Build and validate a filter tree from a Chroma-style `where` dict.

    An empty dict is rejected: callers pass None for "no filter", so `{}` is most likely a bug.
    """
    return _parse_object(where, ROOT, 1, _Budget())


def _parse_object(obj: object, path: str, depth: int, budget: _Budget) -> Filter:
    if not isinstance(obj, Mapping):
        _fail("expected an object", path, obj)
    if not obj:
        hint = " (pass None for no filter)" if path == ROOT else ""
        raise InvalidArgument(f"filter: empty object at {path}{hint}")
    if len(obj) == 1:
        ((key, value),) = obj.items()
        return _parse_entry(key, value, path, depth, budget)
    budget.enter(depth, path)
    return And(tuple(_parse_entry(k, v, path, depth + 1, budget) for k, v in obj.items()))


def _parse_entry(key: object, value: object, path: str, depth: int, budget: _Budget) -> Filter:
    if key in ("$and", "$or"):
        sub = f"{path}.{key}"
        if not isinstance(value, (list, tuple)) or not value:
            _fail(f"{key} needs a non-empty list", sub)
        budget.enter(depth, sub)
        kids = tuple(
            _parse_object(child, f"{sub}[{i}]", depth + 1, budget) for i, child in enumerate(value)
        )
        return And(kids) if key == "$and" else Or(kids)
    if key == "$not":
        sub = f"{path}.$not"
        budget.enter(depth, sub)
        return Not(_parse_object(value, sub, depth + 1, budget))
    if isinstance(key, str) and key.startswith("$"):
        _fail(f"unknown operator {key!r}", path)
    name = _check_field(key, path)
    fpath = f"{path}.{name}"
    if not isinstance(value, Mapping):
        budget.enter(depth, fpath)
        return _make_cond(name, "eq", value, fpath)
    if not value:
        _fail("empty operator object", fpath)
    conds: list[Filter] = []
    for op_key in value:
        if not isinstance(op_key, str) or not op_key.startswith("$") or op_key[1:] not in OPS:
            nested = not (isinstance(op_key, str) and op_key.startswith("$"))
            hint = " (nested objects are not supported)" if nested else ""
            raise InvalidArgument(f"filter: unknown operator {op_key!r} at {fpath}{hint}")
        conds.append(_make_cond(name, op_key[1:], value[op_key], fpath))
    budget.enter(depth, fpath)
    if len(conds) == 1:
        return conds[0]
    for _ in conds:
        budget.enter(depth + 1, fpath)
    return And(tuple(conds))


def validate_filter(f: Filter) -> None:
    """Type-check a tree built by hand or decoded from the wire (same rules as parse_where)."""
    _check_tree(f, ROOT, 1, _Budget())


def _check_tree(f: object, path: str, depth: int, budget: _Budget) -> None:
    if isinstance(f, Cond):
        name = _check_field(f.field, path)
        cpath = f"{path}.{name}"
        budget.enter(depth, cpath)
        if not isinstance(f.op, str) or f.op not in OPS:
            _fail(f"unknown operator '${f.op}'", cpath)
        _check_value(f.op, f.value, cpath)
    elif isinstance(f, (And, Or)):
        key = "$and" if isinstance(f, And) else "$or"
        sub = f"{path}.{key}"
        if not isinstance(f.children, (tuple, list)) or not f.children:
            _fail(f"{key} needs a non-empty list", sub)
        budget.enter(depth, sub)
        for i, child in enumerate(f.children):
            _check_tree(child, f"{sub}[{i}]", depth + 1, budget)
    elif isinstance(f, Not):
        sub = f"{path}.$not"
        budget.enter(depth, sub)
        _check_tree(f.child, sub, depth + 1, budget)
    else:
        _fail("expected a filter node", path, f)


def where_to_dict(f: Filter) -> dict[str, Any]:
    """The Chroma-style dict of a tree; `parse_where(where_to_dict(f)) == f` for valid trees."""
    if isinstance(f, Cond):
        value = list(f.value) if f.op in ("in", "nin") else f.value
        return {f.field: {f"${f.op}": value}}
    if isinstance(f, And):
        return {"$and": [where_to_dict(c) for c in f.children]}
    if isinstance(f, Or):
        return {"$or": [where_to_dict(c) for c in f.children]}
    return {"$not": where_to_dict(f.child)}


def filter_fields(f: Filter) -> set[str]:
    """Every metadata key the filter reads."""
    if isinstance(f, Cond):
        return {f.field}
    if isinstance(f, Not):
        return filter_fields(f.child)
    out: set[str] = set()
    for child in f.children:
        out |= filter_fields(child)
    return out


# The document filter (Chroma's where_document): substring tests on a row's document text.
#
# `contains` matches rows whose document holds the (case-sensitive, non-empty) substring;
# `not_contains` is its negation, so a row without a document matches it and never `contains`.
# `DocAnd` / `DocOr` join them. Limits: substrings of 1..4096 characters, the same depth and
# node budget as `where`. Errors name the path, e.g. `where_document: ... at
# where_document.$and[1].$contains`.

DOC_ROOT = "where_document"
DOC_OPS = ("contains", "not_contains")


@dataclass(frozen=True)
class DocCond:
    """One substring test: op is "contains" or "not_contains"."""

    op: str
    text: str


@dataclass(frozen=True)
class DocAnd:
    children: tuple[DocFilter, ...]


@dataclass(frozen=True)
class DocOr:
    children: tuple[DocFilter, ...]


DocFilter: TypeAlias = DocCond | DocAnd | DocOr


def _doc_fail(what: str, path: str) -> NoReturn:
    raise InvalidArgument(f"where_document: {what} at {path}")


def _check_substring(text: object, path: str) -> str:
    if not isinstance(text, str):
        _doc_fail(f"expected a string, got {describe_value(text)}", path)
    if not text:
        _doc_fail("empty substring (it would match every document)", path)
    if len(text) > MAX_DOCUMENT_FILTER_CHARS:
        _doc_fail(
            f"substring is {len(text)} characters, the limit is {MAX_DOCUMENT_FILTER_CHARS}", path
        )
    try:
        text.encode("utf-8", errors="strict")
    except UnicodeEncodeError:
        _doc_fail("substring is not valid UTF-8 (lone surrogate)", path)
    return text


def parse_where_document(where: Mapping[str, Any]) -> DocFilter:
    """A document filter from Chroma's dict form: {"$contains": "x"}, {"$not_contains": "x"},
    {"$and": [...]}, {"$or": [...]}."""
    return _parse_doc(where, DOC_ROOT, 1, _Budget())


def _parse_doc(obj: object, path: str, depth: int, budget: _Budget) -> DocFilter:
    if not isinstance(obj, Mapping):
        _doc_fail(f"expected an object, got {describe_value(obj)}", path)
    if len(obj) != 1:
        _doc_fail(
            f"expected exactly one of $contains, $not_contains, $and, $or, got {len(obj)} keys",
            path,
        )
    ((key, value),) = obj.items()
    sub = f"{path}.{key}"
    budget.enter(depth, sub)
    if key in ("$contains", "$not_contains"):
        return DocCond(key[1:], _check_substring(value, sub))
    if key in ("$and", "$or"):
        if not isinstance(value, (list, tuple)) or not value:
            _doc_fail(f"{key} needs a non-empty list", sub)
        kids = tuple(
            _parse_doc(child, f"{sub}[{i}]", depth + 1, budget) for i, child in enumerate(value)
        )
        return DocAnd(kids) if key == "$and" else DocOr(kids)
    _doc_fail(f"unknown operator {key!r}", path)


def validate_where_document(f: object) -> None:
    """Type-check a document filter built by hand or decoded from the wire."""
    _check_doc(f, DOC_ROOT, 1, _Budget())


def _check_doc(f: object, path: str, depth: int, budget: _Budget) -> None:
    if isinstance(f, DocCond):
        sub = f"{path}.${f.op}"
        budget.enter(depth, sub)
        if f.op not in DOC_OPS:
            _doc_fail(f"unknown operator '${f.op}'", path)
        _check_substring(f.text, sub)
    elif isinstance(f, (DocAnd, DocOr)):
        key = "$and" if isinstance(f, DocAnd) else "$or"
        sub = f"{path}.{key}"
        budget.enter(depth, sub)
        if not isinstance(f.children, (tuple, list)) or not f.children:
            _doc_fail(f"{key} needs a non-empty list", sub)
        for i, child in enumerate(f.children):
            _check_doc(child, f"{sub}[{i}]", depth + 1, budget)
    else:
        _doc_fail(f"expected a document filter node, got {describe_value(f)}", path)


def where_document_to_dict(f: DocFilter) -> dict[str, Any]:
    if isinstance(f, DocCond):
        return {f"${f.op}": f.text}
    key = "$and" if isinstance(f, DocAnd) else "$or"
    return {key: [where_document_to_dict(c) for c in f.children]}


def document_matches(f: DocFilter, document: str | None) -> bool:
    """Whether one row's document passes `f` (a row without a document holds no substring:
    it passes not_contains and never contains)."""
    if isinstance(f, DocCond):
        held = document is not None and f.text in document
        return held if f.op == "contains" else not held
    if isinstance(f, DocAnd):
        return all(document_matches(c, document) for c in f.children)
    return any(document_matches(c, document) for c in f.children)
