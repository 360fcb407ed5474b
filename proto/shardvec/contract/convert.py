"""Conversions between protobuf messages and shardvec's domain types, in one place.

The shard service, the coordinator's public service and the client use these, so each wire
form is built and read in one place.
"""

from __future__ import annotations

import numpy as np

from shardvec.contract.codec import decode_packed, dumps_json, loads_json
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.filters import And, Cond, Filter, Not, Or, validate_filter
from shardvec.contract.limits import MAX_FILTER_DEPTH
from shardvec.contract.types import Change
from shardvec.v1 import common_pb2, shard_pb2

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


def changes_from_proto(resp: shard_pb2.ShardChangesResponse, dim: int) -> list[Change]:
    """Row changes of a Changes response; vectors are matched to the non-deleted rows."""
    vectors = decode_packed(resp.vectors.packed, dim) if resp.vectors.packed else np.empty((0, dim))
    out: list[Change] = []
    v = 0
    for c in resp.changes:
        if c.deleted:
            out.append(Change(c.id, int(c.seq), None, None, True))
        else:
            meta = loads_json(c.metadata_json) if c.metadata_json else {}
            out.append(Change(c.id, int(c.seq), vectors[v], meta, False))
            v += 1
    return out


def search_result_to_proto(ids: np.ndarray, scores: np.ndarray) -> shard_pb2.ShardSearchResponse:
    """A shard's (nq, k) ids and scores as one response: k, the ids row after row, and the
    scores packed as little-endian float32 (no Python loop per hit)."""
    resp = shard_pb2.ShardSearchResponse(k=int(ids.shape[1]))
    resp.ids.extend(ids.ravel().tolist())
    resp.scores = np.ascontiguousarray(scores, dtype="<f4").tobytes()
    return resp


def search_result_from_proto(
    resp: shard_pb2.ShardSearchResponse, nq: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (nq, k) object array of ids and float32 scores of a shard's search response."""
    width = int(resp.k)
    ids = np.array(resp.ids, dtype=object).reshape(nq, width)
    return ids, np.frombuffer(resp.scores, dtype="<f4").reshape(nq, width)
