"""Filter evaluation over typed NumPy columns: every row's metadata, kept so that `mask`
evaluates a filter tree (`shardvec.contract.filters`) over 100k+ rows without Python loops.

The semantics are those documented in `shardvec.contract.filters`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.filters import (
    OPS,
    RANGE_OPS,
    ROOT,
    And,
    Cond,
    Filter,
    Not,
    Or,
    Scalar,
    as_float,
    describe_value,
    is_number,
)

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
        return _NUMBER, as_float(value)
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
        # The postings as arrays, made when a read first needs them (`contains`, a facet of
        # list elements) and dropped by any change to the lists.
        self._posting_arrays: dict[_Item, npt.NDArray[np.int64]] | None = None

    def posting_array(self, item: _Item) -> npt.NDArray[np.int64] | None:
        """The slots holding `item` in a list, as an array (None: no row holds it)."""
        return self.posting_arrays().get(item)

    def posting_arrays(self) -> dict[_Item, npt.NDArray[np.int64]]:
        arrays = self._posting_arrays
        if arrays is None:
            arrays = {item: np.fromiter(holders, dtype=np.int64, count=len(holders))
                      for item, holders in self.postings.items()}  # fmt: skip
            self._posting_arrays = arrays
        return arrays

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
            if slot in self.lists:
                self._posting_arrays = None
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
                self._posting_arrays = None
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
        elif is_number(value):
            name, target = "num", as_float(value)  # type: ignore[arg-type]
        elif isinstance(value, str):
            name, target = "code", self.codes.get(value, -2)  # -2: a string never stored
        else:
            raise InvalidArgument(f"filter: cannot compare with {describe_value(value)}")
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
        nums = [as_float(v) for v in values if is_number(v)]  # type: ignore[arg-type]
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
        return _COMPARE[op](self.typed["num"][:k], as_float(value))  # type: ignore[arg-type]

    def nbytes(self) -> int:
        total = 200 + self.kind.nbytes + sum(arr.nbytes for arr in self.typed.values())
        total += sum(len(s) + 110 for s in self.codes)
        total += sum(250 + 40 * len(items) for items in self.lists.values())
        total += sum(250 + 40 * len(slots) for slots in self.postings.values())
        total += sum(100 + a.nbytes for a in (self._posting_arrays or {}).values())
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

    def column(self, key: str) -> _Column | None:
        """The column of metadata key `key` (None: no row has held it), read by the facet
        counts (shard/facets.py) and the grouped search (shard/groups.py)."""
        return self._columns.get(key)

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
        raise InvalidArgument(f"filter: expected a filter node, got {describe_value(f)}")

    def _cond(self, c: Cond, n: int) -> BoolArray:
        # ne, nin and exists-false are negations of eq, in and exists-true.
        negate = c.op in ("ne", "nin") or (c.op == "exists" and not c.value)
        op = {"ne": "eq", "nin": "in"}.get(c.op, c.op)
        if op not in OPS:
            raise InvalidArgument(f"filter: unknown operator '${op}' at {ROOT}.{c.field}")
        out = np.zeros(n, dtype=np.bool_)
        column = self._columns.get(c.field) or _Column()  # an unknown key holds nothing
        k = min(n, len(column.kind))
        if op == "eq":
            out[:k] = column.eq(c.value, k)
        elif op == "in":
            out[:k] = column.isin(c.value, k)
        elif op in RANGE_OPS:
            out[:k] = column.compare(op, c.value, k)
        elif op == "exists":
            out[:k] = column.kind[:k] != _MISSING
        else:  # contains: only the rows holding lists, through the postings
            idx = column.posting_array(_tag(c.value))
            if idx is not None:
                out[idx[idx < n]] = True
        if negate:
            np.logical_not(out, out=out)
        return out

    def nbytes(self) -> int:
        """Approximate memory held, arrays exactly and Python containers by estimate."""
        total = 64 + 8 * len(self._slot_keys)
        total += sum(len(k) + 100 + col.nbytes() for k, col in self._columns.items())
        return total
