"""Raw protobuf wire bytes for tests that must build what protobuf itself would refuse, and
raw calls that carry them."""

from __future__ import annotations

import grpc


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


def tokenless_stage(address: str, payload: bytes, timeout: float) -> grpc.StatusCode:
    """Send `payload` as a shard Stage to the replica at `address` without the internal
    token; the status it ends with (OK if it was accepted)."""
    options = [("grpc.max_send_message_length", len(payload) + (1 << 20))]
    with grpc.insecure_channel(address, options=options) as ch:
        stage = ch.unary_unary("/shardvec.v1.Shard/Stage", request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)  # fmt: skip
        try:
            stage(payload, timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK
