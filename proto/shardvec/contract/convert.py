"""Conversions between protobuf messages and shardvec's domain types, in one place: here the
shared messages of `shardvec.v1.common` (filters, document filters, packed vectors, metrics);
the public API's in `shardvec.contract.convert_public`, the internal shard service's in
`shardvec.contract.convert_shard`.

The shard service, the coordinator's public service and the client use these, so each wire
form is built and read in one place.
"""

from __future__ import annotations

import numpy as np

from shardvec.contract.codec import decode_packed, dumps_json, loads_json
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.filters import (
    And,
    Cond,
    DocAnd,
    DocCond,
    DocFilter,
    DocOr,
    Filter,
    Not,
    Or,
    validate_filter,
    validate_where_document,
)
from shardvec.contract.limits import (
    MAX_FILTER_DEPTH,
)
from shardvec.v1 import common_pb2

_OP_TO_PROTO = {
    "eq": common_pb2.Condition.EQ,
    "ne": common_pb2.Condition.NE,
    "gt": common_pb2.Condition.GT,
    "gte": common_pb2.Condition.GTE,
    "lt": common_pb2.Condition.LT,
    "lte": common_pb2.Condition.LTE,
    "in": common_pb2.Condition.IN,
    "nin": common_pb2.Condition.NIN,
    "exists": common_pb2.Condition.EXISTS,
    "contains": common_pb2.Condition.CONTAINS,
}
_PROTO_TO_OP = {v: k for k, v in _OP_TO_PROTO.items()}

METRIC_TO_PROTO = {
    "cosine": common_pb2.COSINE,
    "dot": common_pb2.DOT,
    "euclidean": common_pb2.EUCLIDEAN,
}
PROTO_TO_METRIC = {v: k for k, v in METRIC_TO_PROTO.items()}



def filter_to_proto(f: Filter) -> common_pb2.Filter:
    msg = common_pb2.Filter()
    if isinstance(f, Cond):
        value = list(f.value) if isinstance(f.value, tuple) else f.value
        msg.condition.field = f.field
        msg.condition.op = _OP_TO_PROTO[f.op]
        msg.condition.value_json = dumps_json(value)
    elif isinstance(f, And):
        msg.all.children.extend(filter_to_proto(c) for c in f.children)
    elif isinstance(f, Or):
        msg.any.children.extend(filter_to_proto(c) for c in f.children)
    else:
        msg.negate.CopyFrom(filter_to_proto(f.child))
    return msg


def filter_from_proto(msg: common_pb2.Filter, *, trusted: bool = False) -> Filter | None:
    """The domain filter of a wire filter; None when the message is empty.

    The tree is validated (operators, operand types, depth, size) unless `trusted`: the shard
    service takes filters only from the coordinator, which validated them at its edge.
    """
    if msg.WhichOneof("node") is None:
        return None
    f = _filter_node(msg, "filter", 0)
    if not trusted:
        validate_filter(f)
    return f


def _filter_node(msg: common_pb2.Filter, path: str, depth: int) -> Filter:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidArgument(f"filter: nested deeper than {MAX_FILTER_DEPTH} at {path}")
    kind = msg.WhichOneof("node")
    if kind == "condition":
        c = msg.condition
        op = _PROTO_TO_OP.get(c.op)
        if op is None:
            raise InvalidArgument(f"filter: unknown operator {c.op} at {path}.{c.field}")
        try:
            value = loads_json(c.value_json)
        except ValueError as exc:
            raise InvalidArgument(
                f"filter: value of {path}.{c.field} is not valid JSON: {exc}"
            ) from None
        except RecursionError:
            raise InvalidArgument(
                f"filter: value of {path}.{c.field} is not valid JSON: nested too deeply"
            ) from None
        if op in ("in", "nin") and isinstance(value, list):
            value = tuple(value)
        return Cond(c.field, op, value)
    if kind in ("all", "any"):
        children = getattr(msg, kind).children
        op = "$and" if kind == "all" else "$or"
        if not children:
            raise InvalidArgument(f"filter: {op} needs at least one child at {path}")
        nodes = tuple(
            _filter_node(child, f"{path}.{kind}[{i}]", depth + 1)
            for i, child in enumerate(children)
        )
        return And(nodes) if kind == "all" else Or(nodes)
    if kind == "negate":
        return Not(_filter_node(msg.negate, f"{path}.negate", depth + 1))
    raise InvalidArgument(f"filter: empty filter node at {path}")


def where_document_to_proto(f: DocFilter) -> common_pb2.DocumentFilter:
    msg = common_pb2.DocumentFilter()
    if isinstance(f, DocCond):
        setattr(msg, f.op, f.text)
    elif isinstance(f, DocAnd):
        msg.all.children.extend(where_document_to_proto(c) for c in f.children)
    else:
        msg.any.children.extend(where_document_to_proto(c) for c in f.children)
    return msg


def where_document_from_proto(
    msg: common_pb2.DocumentFilter, *, trusted: bool = False
) -> DocFilter | None:
    """The domain document filter of a wire one; None when the message is empty. Validated
    (non-empty substrings, shape, depth, size) unless `trusted`."""
    if msg.WhichOneof("node") is None:
        return None
    f = _doc_node(msg, "where_document", 0)
    if not trusted:
        validate_where_document(f)
    return f


def _doc_node(msg: common_pb2.DocumentFilter, path: str, depth: int) -> DocFilter:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidArgument(f"where_document: nested deeper than {MAX_FILTER_DEPTH} at {path}")
    kind = msg.WhichOneof("node")
    if kind in ("contains", "not_contains"):
        return DocCond(kind, getattr(msg, kind))
    if kind in ("all", "any"):
        children = getattr(msg, kind).children
        if not children:
            raise InvalidArgument(f"where_document: {kind} needs at least one child at {path}")
        nodes = tuple(
            _doc_node(c, f"{path}.{kind}[{i}]", depth + 1) for i, c in enumerate(children)
        )
        return DocAnd(nodes) if kind == "all" else DocOr(nodes)
    raise InvalidArgument(f"where_document: empty filter node at {path}")


def pack_vectors(msg: common_pb2.Vectors, vectors: np.ndarray) -> common_pb2.Vectors:
    """Fill `msg` with a (n, dim) array as little-endian float32 bytes (the fast wire form)."""
    arr = np.ascontiguousarray(vectors, dtype="<f4")
    msg.dim = int(arr.shape[1]) if arr.ndim == 2 else int(arr.shape[0])
    msg.packed = arr.tobytes()
    return msg


def vectors_from_proto(msg: common_pb2.Vectors, dim: int, *, field: str = "vectors") -> np.ndarray:
    """A (n, dim) float32 array from either wire form; the packed form is not copied."""
    if msg.packed and len(msg.values):
        raise InvalidArgument(f"{field}: set either packed or values, not both")
    if msg.dim and msg.dim != dim:
        raise InvalidArgument(f"{field}: expected dimension {dim}, got {msg.dim}")
    if msg.packed:
        return decode_packed(msg.packed, dim, field=field)
    values = np.asarray(msg.values, dtype=np.float32)
    if values.size == 0:
        raise InvalidArgument(f"{field}: batch is empty")
    if values.size % dim:
        raise InvalidArgument(f"{field}: {values.size} values is not a multiple of dimension {dim}")
    return values.reshape(-1, dim)
