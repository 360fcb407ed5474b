"""Decoding public requests so that a malformed message is INVALID_ARGUMENT naming the field.

gRPC's own deserializer turns a protobuf DecodeError into UNKNOWN with protobuf's wording. The
guard interceptor decodes requests itself with `decode_request`, which reports the first string
field holding bad UTF-8 (`ids[3]`, `filter.all.children[0].condition.field`), nesting deeper than
protobuf allows, or a corrupt wire format with the byte offset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

from shardvec.contract.errors import InvalidArgument

MAX_NESTING = 100  # upb's default decoding depth limit
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = range(6)


class _Corrupt(Exception):
    def __init__(self, offset: int) -> None:
        self.offset = offset


def decode_request(
    deserialize: Callable[[bytes], Any] | None, data: bytes, descriptor: Descriptor | None
) -> Any:
    """`deserialize(data)`, with a DecodeError turned into InvalidArgument naming the problem."""
    if deserialize is None:
        return data
    try:
        return deserialize(data)
    except DecodeError as exc:
        name = descriptor.full_name if descriptor is not None else "request"
        detail = describe_problem(descriptor, data) if descriptor is not None else None
        raise InvalidArgument(detail or f"request: cannot decode {name}: {exc}") from None


def describe_problem(descriptor: Descriptor, data: bytes) -> str | None:
    """The first problem found walking `data` as a `descriptor` message, or None."""
    try:
        return _walk(descriptor, memoryview(data), "", 0)
    except _Corrupt as exc:
        return f"request: the {descriptor.full_name} wire format is corrupt at byte {exc.offset}"


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Corrupt(pos)
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _walk(descriptor: Descriptor, buf: memoryview, prefix: str, depth: int) -> str | None:
    if depth > MAX_NESTING:
        path = prefix.rstrip(".") or "request"
        path = path if len(path) <= 80 else f"{path[:40]}...{path[-30:]}"
        return f"{path}: nested deeper than {MAX_NESTING} levels"
    seen: dict[int, int] = {}
    pos = 0
    while pos < len(buf):
        start = pos
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _Corrupt(start)
        if wire == _VARINT:
            _, pos = _varint(buf, pos)
        elif wire == _I64:
            pos += 8
        elif wire == _I32:
            pos += 4
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            end = pos + size
            if end > len(buf):
                raise _Corrupt(start)
            field = descriptor.fields_by_number.get(number)
            if field is not None:
                problem = _check_field(field, buf[pos:end], prefix, seen, depth)
                if problem is not None:
                    return problem
            pos = end
        else:  # groups are not used by shardvec's messages
            raise _Corrupt(start)
        if pos > len(buf):
            raise _Corrupt(start)
    return None


def _check_field(
    field: FieldDescriptor, payload: memoryview, prefix: str, seen: dict[int, int], depth: int
) -> str | None:
    index = seen.get(field.number, 0)
    seen[field.number] = index + 1
    where = f"{prefix}{field.name}" + (f"[{index}]" if field.is_repeated else "")
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"{where}: not valid UTF-8 (byte {exc.start})"
    elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
        return _walk(field.message_type, payload, f"{where}.", depth + 1)
    return None
