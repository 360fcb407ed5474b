"""Metadata filters: a small tree, a Chroma-style `where` parser, and a columnar evaluator.

A filter is a tree of `Cond` leaves joined by `And`, `Or` and `Not`. `parse_where` builds one
from a Chroma-style dict and `where_to_dict` turns it back; `MetadataColumns` keeps every row's
metadata as typed NumPy columns so `mask` evaluates a filter over 100k+ rows without Python loops.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias

import numpy as np
import numpy.typing as npt

from shard.errors import InvalidArgument

Scalar: TypeAlias = str | int | float | bool | None

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "exists", "contains")
MAX_DEPTH = 32
MAX_NODES = 4096
MAX_IN_VALUES = 1024
MAX_FIELD_CHARS = 256

_RANGE_OPS = ("gt", "gte", "lt", "lte")
_ROOT = "where"


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
    tail = f", got {_describe(got[0])}" if got else ""
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


def _describe(value: object) -> str:
    """A short rendering of a bad operand for error messages."""
    if isinstance(value, (list, tuple, set, Mapping)):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_float(value: int | float) -> float:
    """float(value), with ints too large for a float clamped to +-inf."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _finite_number(value: object) -> bool:
    return _is_number(value) and math.isfinite(_as_float(value))  # type: ignore[arg-type]


def _check_scalar(op: str, value: object, path: str) -> None:
    if _is_number(value) and not _finite_number(value):
        _fail(f"${op} needs a finite number", path, value)
    if not (value is None or isinstance(value, (bool, str)) or _is_number(value)):
        _fail(f"${op} needs a scalar", path, value)


def _check_value(op: str, value: object, path: str) -> None:
    """Raise InvalidArgument unless `value` is a legal operand of `op`."""
    if op in ("eq", "ne"):
        _check_scalar(op, value, path)
    elif op in _RANGE_OPS:
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
    return _parse_object(where, _ROOT, 1, _Budget())


def _parse_object(obj: object, path: str, depth: int, budget: _Budget) -> Filter:
    if not isinstance(obj, Mapping):
        _fail("expected an object", path, obj)
    if not obj:
        hint = " (pass None for no filter)" if path == _ROOT else ""
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
    _check_tree(f, _ROOT, 1, _Budget())


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


# Columnar evaluation.

_MISSING, _NULL, _BOOL, _NUMBER, _STRING, _LIST = range(6)

BoolArray: TypeAlias = npt.NDArray[np.bool_]
_COMPARE = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}
_Item: TypeAlias = tuple[int, Scalar]


def _tag(value: object) -> _Item:
    """(kind, stored form) of a scalar: numbers as float64, so bools stay apart from numbers."""
    if value is None:
        return _NULL, None
    if isinstance(value, bool):
        return _BOOL, value
    if isinstance(value, (int, float)):
        return _NUMBER, _as_float(value)
    if isinstance(value, str):
        return _STRING, value
    raise InvalidArgument(f"metadata value of type {type(value).__name__} is not supported")


def _classify(value: object) -> tuple[int, Any]:
    """(kind, stored form) of one metadata value; a list is stored as a set of tagged items."""
    if isinstance(value, (list, tuple)):
        return _LIST, frozenset(_tag(item) for item in value)
    return _tag(value)


def _grow(arr: npt.NDArray[Any], size: int, fill: Any) -> npt.NDArray[Any]:
    out = np.full(size, fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


# Typed arrays of a column, made on first use: fill value for slots not of that type, dtype.
_TYPED: dict[str, tuple[Any, type[np.generic]]] = {
    "num": (np.nan, np.float64),  # numbers as float64
    "flag": (False, np.bool_),  # bool values
    "code": (-1, np.int32),  # strings, dictionary-encoded
}


class _Column:
    """One metadata key: an int8 kind per slot plus typed arrays, and list postings."""

    def __init__(self) -> None:
        self.kind: npt.NDArray[np.int8] = np.zeros(0, dtype=np.int8)
        self.typed: dict[str, npt.NDArray[Any]] = {}
        self.codes: dict[str, int] = {}
        self.lists: dict[int, frozenset[_Item]] = {}
        self.postings: dict[_Item, set[int]] = {}

    def reserve(self, size: int) -> None:
        """Grow geometrically so every slot below `size` is addressable."""
        cap = len(self.kind)
        if size > cap:
            new = max(size, 2 * cap, 64)
            self.kind = _grow(self.kind, new, _MISSING)
            for name, arr in self.typed.items():
                self.typed[name] = _grow(arr, new, _TYPED[name][0])

    def array(self, name: str) -> npt.NDArray[Any]:
        if name not in self.typed:
            fill, dtype = _TYPED[name]
            self.typed[name] = np.full(len(self.kind), fill, dtype=dtype)
        return self.typed[name]

    def clear(self, slots: list[int]) -> None:
        idx = np.asarray(slots, dtype=np.int64)
        self.kind[idx] = _MISSING
        for name, arr in self.typed.items():
            arr[idx] = _TYPED[name][0]
        for slot in slots:
            for item in self.lists.pop(slot, ()):
                holders = self.postings[item]
                holders.discard(slot)
                if not holders:
                    del self.postings[item]

    def write(self, rows: list[tuple[int, int, Any]]) -> None:
        """Store (slot, kind, classified value) rows into slots cleared beforehand."""
        slots = [slot for slot, _, _ in rows]
        self.reserve(max(slots) + 1)
        self.kind[slots] = [kind for _, kind, _ in rows]
        for kind in {kind for _, kind, _ in rows} - {_NULL}:
            some = [slot for slot, k, _ in rows if k == kind]
            values = [value for _, k, value in rows if k == kind]
            if kind == _NUMBER:
                self.array("num")[some] = values
            elif kind == _BOOL:
                self.array("flag")[some] = values
            elif kind == _STRING:
                self.array("code")[some] = [
                    self.codes.setdefault(v, len(self.codes)) for v in values
                ]
            else:
                for slot, items in zip(some, values, strict=True):
                    self.lists[slot] = items
                    for item in items:
                        self.postings.setdefault(item, set()).add(slot)

    def eq(self, value: object, k: int) -> BoolArray:
        """Rows [0, k) whose scalar equals `value` (see the module docstring)."""
        if value is None:
            return np.equal(self.kind[:k], _NULL)
        target: float | int | bool
        if isinstance(value, bool):
            name, target = "flag", value  # a bool's flag is only meaningful where kind is bool
        elif _is_number(value):
            name, target = "num", _as_float(value)  # type: ignore[arg-type]
        elif isinstance(value, str):
            name, target = "code", self.codes.get(value, -2)  # -2: a string never stored
        else:
            raise InvalidArgument(f"filter: cannot compare with {_describe(value)}")
        arr = self.typed.get(name)
        if arr is None:
            return np.zeros(k, dtype=np.bool_)
        out: BoolArray = np.equal(arr[:k], target)
        if name == "flag":
            out &= np.equal(self.kind[:k], _BOOL)
        return out

    def isin(self, values: Sequence[object], k: int) -> BoolArray:
        """The OR of `eq` over `values`, one vectorised pass per value type."""
        out = np.zeros(k, dtype=np.bool_)
        nums = [_as_float(v) for v in values if _is_number(v)]  # type: ignore[arg-type]
        codes = [self.codes[v] for v in values if isinstance(v, str) and v in self.codes]
        if nums and "num" in self.typed:
            out |= np.isin(self.typed["num"][:k], np.asarray(nums, dtype=np.float64))
        if codes:
            # A lookup table indexed by code + 1 (so -1, "not a string", lands on False).
            table = np.zeros(len(self.codes) + 1, dtype=np.bool_)
            table[np.asarray(codes, dtype=np.int64) + 1] = True
            out |= table[self.typed["code"][:k] + 1]
        for v in {v for v in values if v is None or isinstance(v, bool)}:
            out |= self.eq(v, k)
        return out

    def compare(self, op: str, value: object, k: int) -> BoolArray:
        if "num" not in self.typed:
            return np.zeros(k, dtype=np.bool_)
        return _COMPARE[op](self.typed["num"][:k], _as_float(value))  # type: ignore[arg-type]

    def nbytes(self) -> int:
        total = 200 + self.kind.nbytes + sum(arr.nbytes for arr in self.typed.values())
        total += sum(len(s) + 110 for s in self.codes)
        total += sum(250 + 40 * len(items) for items in self.lists.values())
        total += sum(250 + 40 * len(slots) for slots in self.postings.values())
        return total


def _as_slots(slots: object) -> npt.NDArray[np.int64]:
    arr = np.asarray(slots)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise InvalidArgument(f"slots must be integers, got dtype {arr.dtype}")
    out = arr.astype(np.int64, copy=False).reshape(-1)
    if int(out.min()) < 0:
        raise InvalidArgument("slots must be >= 0")
    return out


class MetadataColumns:
    """Columnar copy of every row's metadata, indexed by integer slot, for vectorised filtering."""

    def __init__(self) -> None:
        self._columns: dict[str, _Column] = {}
        self._slot_keys: list[tuple[str, ...]] = []

    def set(self, slots: np.ndarray, metadatas: Sequence[Mapping[str, Any]]) -> None:
        """Replace the metadata held at `slots` (the last one wins if a slot repeats).

        Every value is classified before anything changes, so a bad value leaves no trace.
        """
        idx = _as_slots(slots)
        if len(idx) != len(metadatas):
            raise InvalidArgument(f"got {len(idx)} slots but {len(metadatas)} metadatas")
        latest: dict[int, Mapping[str, Any]] = {}
        for slot, md in zip(idx.tolist(), metadatas, strict=True):
            if not isinstance(md, Mapping):
                raise InvalidArgument(f"metadata must be a mapping, got {type(md).__name__}")
            latest[slot] = md
        by_key: dict[str, list[tuple[int, int, Any]]] = {}
        for slot, md in latest.items():
            for key, value in md.items():
                if not isinstance(key, str):
                    raise InvalidArgument(f"metadata keys must be strings, got {key!r}")
                by_key.setdefault(key, []).append((slot, *_classify(value)))
        self._forget(latest)
        if latest:
            top = max(latest) + 1
            if top > len(self._slot_keys):
                self._slot_keys.extend([()] * (top - len(self._slot_keys)))
        for slot, md in latest.items():
            self._slot_keys[slot] = tuple(md)
        for key, rows in by_key.items():
            self._columns.setdefault(key, _Column()).write(rows)

    def clear(self, slots: np.ndarray) -> None:
        """Forget the metadata at `slots`; they then hold no keys at all."""
        self._forget(_as_slots(slots).tolist())

    def _forget(self, slots: Iterable[int]) -> None:
        by_key: dict[str, list[int]] = {}
        size = len(self._slot_keys)
        for slot in slots:
            if slot < size and self._slot_keys[slot]:
                for key in self._slot_keys[slot]:
                    by_key.setdefault(key, []).append(slot)
                self._slot_keys[slot] = ()
        for key, key_slots in by_key.items():
            self._columns[key].clear(key_slots)

    def mask(self, f: Filter, n: int) -> BoolArray:
        """Bool array over slots [0, n): True where the row's metadata matches `f`."""
        if n < 0:
            raise InvalidArgument(f"mask length must be >= 0, got {n}")
        return self._eval(f, n)

    def _eval(self, f: Filter, n: int) -> BoolArray:
        # Every branch returns a fresh array, so combining in place is safe.
        if isinstance(f, Cond):
            return self._cond(f, n)
        if isinstance(f, Not):
            out = self._eval(f.child, n)
            np.logical_not(out, out=out)
            return out
        if isinstance(f, (And, Or)):
            out = self._eval(f.children[0], n)
            for child in f.children[1:]:
                if isinstance(f, And):
                    if not out.any():
                        break
                    out &= self._eval(child, n)
                else:
                    out |= self._eval(child, n)
            return out
        raise InvalidArgument(f"filter: expected a filter node, got {_describe(f)}")

    def _cond(self, c: Cond, n: int) -> BoolArray:
        # ne, nin and exists-false are negations of eq, in and exists-true.
        negate = c.op in ("ne", "nin") or (c.op == "exists" and not c.value)
        op = {"ne": "eq", "nin": "in"}.get(c.op, c.op)
        if op not in OPS:
            raise InvalidArgument(f"filter: unknown operator '${op}' at {_ROOT}.{c.field}")
        out = np.zeros(n, dtype=np.bool_)
        column = self._columns.get(c.field) or _Column()  # an unknown key holds nothing
        k = min(n, len(column.kind))
        if op == "eq":
            out[:k] = column.eq(c.value, k)
        elif op == "in":
            out[:k] = column.isin(c.value, k)
        elif op in _RANGE_OPS:
            out[:k] = column.compare(op, c.value, k)
        elif op == "exists":
            out[:k] = column.kind[:k] != _MISSING
        else:  # contains: only the rows holding lists, through the postings
            holders = column.postings.get(_tag(c.value))
            if holders:
                idx = np.fromiter(holders, dtype=np.int64, count=len(holders))
                out[idx[idx < n]] = True
        if negate:
            np.logical_not(out, out=out)
        return out

    def nbytes(self) -> int:
        """Approximate memory held, arrays exactly and Python containers by estimate."""
        total = 64 + 8 * len(self._slot_keys)
        total += sum(len(k) + 100 + col.nbytes() for k, col in self._columns.items())
        return total
