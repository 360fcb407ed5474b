"""Raw protobuf wire bytes for tests that must build what protobuf itself would refuse."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """`n` (>= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2) holding `payload` as raw bytes."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload
