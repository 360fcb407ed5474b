"""Request validation, shared by the coordinator's edge and shard_requests (in-process shard calls).

Each check either returns a normalised copy of its input or raises InvalidArgument with a
message naming the offending row (`ids[3]: id is empty`), so a client can fix the exact item.
Both layers run the same code, so a request the edge accepts is never rejected by a shard.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_DOCUMENT_BYTES,
    MAX_ID_BYTES,
    MAX_KEY_CHARS,
    MAX_METADATA_BYTES,
    MAX_METADATA_KEYS,
    MAX_TTL_SECONDS,
    METRICS,
)

COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def validate_collection_name(name: object) -> str:
    """Return `name` if it is a legal collection name, else raise InvalidArgument.

    Names are `[A-Za-z0-9_-]{1,64}`, so a name can never escape the data directory.
    """
    if not isinstance(name, str) or COLLECTION_NAME.fullmatch(name) is None:
        raise InvalidArgument(f"collection name must match [A-Za-z0-9_-]{{1,64}}, got {name!r}")
    return name


def _short(text: str, limit: int = 64) -> str:
    """repr() of a possibly long string, cut to keep error messages readable."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8", errors="strict")
    except UnicodeEncodeError:
        return False
    return True


def validate_ids(ids: Sequence[object], *, field: str = "ids") -> list[str]:
    """Check a batch of ids: strings of 1..512 UTF-8 bytes, no NUL, no duplicates in the batch."""
    if isinstance(ids, (str, bytes)):
        raise InvalidArgument(f"{field}: expected a list of strings, got {type(ids).__name__}")
    if len(ids) == 0:
        raise InvalidArgument(f"{field}: batch is empty")
    seen: dict[str, int] = {}
    out: list[str] = []
    for i, item in enumerate(ids):
        where = f"{field}[{i}]"
        if not isinstance(item, str):
            raise InvalidArgument(f"{where}: id must be a string, got {type(item).__name__}")
        if not item:
            raise InvalidArgument(f"{where}: id is empty")
        try:
            size = len(item.encode("utf-8", errors="strict"))
        except UnicodeEncodeError:
            raise InvalidArgument(f"{where}: id is not valid UTF-8 (lone surrogate)") from None
        if size > MAX_ID_BYTES:
            raise InvalidArgument(f"{where}: id is {size} bytes, the limit is {MAX_ID_BYTES}")
        if "\x00" in item:
            raise InvalidArgument(f"{where}: id contains a NUL character")
        first = seen.setdefault(item, i)
        if first != i:
            raise InvalidArgument(f"{where}: duplicate of {field}[{first}] ({_short(item)})")
        out.append(item)
    return out


def _check_key(key: object, where: str) -> str:
    if not isinstance(key, str):
        raise InvalidArgument(f"{where}: key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidArgument(f"{where}: key is empty")
    if len(key) > MAX_KEY_CHARS:
        raise InvalidArgument(
            f"{where}: key {_short(key)} is {len(key)} characters, the limit is {MAX_KEY_CHARS}"
        )
    if key.startswith("$"):
        raise InvalidArgument(f"{where}: key {_short(key)} must not start with '$'")
    if not _utf8_ok(key):
        raise InvalidArgument(f"{where}: key {_short(key)} is not valid UTF-8 (lone surrogate)")
    return key


def _check_number(value: int | float, where: str) -> None:
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidArgument(f"{where}: integer {value} does not fit in 64 bits")
    elif not math.isfinite(value):
        raise InvalidArgument(f"{where}: NaN or infinity is not allowed")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(value: object, where: str) -> Any:
    """Return a plain copy of one metadata value, or raise naming `where` (row.key)."""
    if value is None or isinstance(value, bool):
        return value
    if _is_number(value):
        _check_number(value, where)  # type: ignore[arg-type]
        return value
    if isinstance(value, str):
        if not _utf8_ok(value):
            raise InvalidArgument(f"{where}: string is not valid UTF-8 (lone surrogate)")
        return value
    if isinstance(value, Mapping):
        raise InvalidArgument(f"{where}: nested objects are not supported")
    if isinstance(value, (list, tuple)):
        return _check_list(value, where)
    raise InvalidArgument(f"{where}: unsupported value type {type(value).__name__}")


def _check_list(items: Sequence[object], where: str) -> list[Any]:
    """A list value must hold only strings or only numbers (bools are not numbers)."""
    strings = 0
    for item in items:
        if isinstance(item, Mapping):
            raise InvalidArgument(f"{where}: nested objects are not supported")
        if isinstance(item, (list, tuple)):
            raise InvalidArgument(f"{where}: nested lists are not supported")
        if isinstance(item, str):
            if not _utf8_ok(item):
                raise InvalidArgument(f"{where}: string is not valid UTF-8 (lone surrogate)")
            strings += 1
        elif _is_number(item):
            _check_number(item, where)  # type: ignore[arg-type]
        else:
            raise InvalidArgument(
                f"{where}: list items must be all strings or all numbers, got {type(item).__name__}"
            )
    if 0 < strings < len(items):
        raise InvalidArgument(f"{where}: list items must be all strings or all numbers, not both")
    return list(items)


def _check_metadata(
    row: object, where: str, max_bytes: int = MAX_METADATA_BYTES
) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise InvalidArgument(f"{where}: metadata must be an object, got {type(row).__name__}")
    if len(row) > MAX_METADATA_KEYS:
        raise InvalidArgument(f"{where}: {len(row)} keys, the limit is {MAX_METADATA_KEYS}")
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = _check_key(key, where)
        out[name] = _check_value(value, f"{where}.{name}")
    size = len(json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > max_bytes:
        raise InvalidArgument(
            f"{where}: metadata is {size} bytes as JSON, the limit is {max_bytes}"
        )
    return out


def check_metadata_size(md: Mapping[str, Any], where: str, max_bytes: int) -> None:
    """Raise InvalidArgument naming `where` when `md` as compact JSON passes `max_bytes`
    (an update's merged object is checked with this)."""
    size = len(json.dumps(md, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > max_bytes:
        raise InvalidArgument(
            f"{where}: metadata is {size} bytes as JSON, the limit is {max_bytes}"
        )


def validate_documents(
    documents: Sequence[object],
    n: int,
    *,
    field: str = "documents",
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> list[str | None]:
    """Check one document text per row (an empty sequence means none; "" or None: no
    document for that row); returns them with "" turned into None."""
    if isinstance(documents, (str, bytes, Mapping)):
        kind = type(documents).__name__
        raise InvalidArgument(f"{field}: expected a list of strings, got {kind}")
    if len(documents) == 0:
        return [None] * n
    if len(documents) != n:
        raise InvalidArgument(f"{field}: expected {n} rows (one per id), got {len(documents)}")
    out: list[str | None] = []
    for i, doc in enumerate(documents):
        where = f"{field}[{i}]"
        if doc is None or doc == "":
            out.append(None)
            continue
        if not isinstance(doc, str):
            raise InvalidArgument(f"{where}: document must be a string, got {type(doc).__name__}")
        try:
            size = len(doc) if doc.isascii() else len(doc.encode("utf-8", errors="strict"))
        except UnicodeEncodeError:
            raise InvalidArgument(
                f"{where}: document is not valid UTF-8 (lone surrogate)"
            ) from None
        if size > max_bytes:
            raise InvalidArgument(f"{where}: document is {size} bytes, the limit is {max_bytes}")
        out.append(doc)
    return out


def validate_metadatas(
    metadatas: Sequence[object],
    n: int,
    *,
    field: str = "metadatas",
    max_bytes: int = MAX_METADATA_BYTES,
) -> list[dict[str, Any]]:
    """Check one metadata object per row (an empty sequence means n empty ones); return copies."""
    if isinstance(metadatas, (str, bytes, Mapping)):
        kind = type(metadatas).__name__
        raise InvalidArgument(f"{field}: expected a list of objects, got {kind}")
    if len(metadatas) == 0:
        return [{} for _ in range(n)]
    if len(metadatas) != n:
        raise InvalidArgument(f"{field}: expected {n} rows (one per id), got {len(metadatas)}")
    return [_check_metadata(row, f"{field}[{i}]", max_bytes) for i, row in enumerate(metadatas)]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {_short(key)}")
        out[key] = value
    return out


def parse_metadata_json(
    texts: Sequence[str],
    n: int,
    *,
    field: str = "metadata_json",
    max_bytes: int = MAX_METADATA_BYTES,
) -> list[dict[str, Any]]:
    """Decode the wire form (one JSON object text per row, "" meaning {}) and validate it."""
    if isinstance(texts, (str, bytes)):
        raise InvalidArgument(f"{field}: expected a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        return [{} for _ in range(n)]
    if len(texts) != n:
        raise InvalidArgument(f"{field}: expected {n} rows (one per id), got {len(texts)}")
    rows: list[object] = []
    for i, text in enumerate(texts):
        where = f"{field}[{i}]"
        if not isinstance(text, str):
            raise InvalidArgument(f"{where}: expected JSON text, got {type(text).__name__}")
        if not text:
            rows.append({})
            continue
        try:
            row = json.loads(
                text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys
            )
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{where}: invalid JSON: {exc}") from None
        except ValueError as exc:  # from the hooks above
            raise InvalidArgument(f"{where}: invalid JSON: {exc}") from None
        except RecursionError:
            raise InvalidArgument(f"{where}: invalid JSON: nested too deeply") from None
        if not isinstance(row, dict):
            kind = "array" if isinstance(row, list) else type(row).__name__
            raise InvalidArgument(f"{where}: expected a JSON object, got {kind}")
        rows.append(row)
    return validate_metadatas(rows, n, field=field, max_bytes=max_bytes)


def validate_vectors(
    vectors: np.ndarray, dim: int, metric: str, *, field: str = "vectors"
) -> npt.NDArray[np.float32]:
    """Return `vectors` as a C-contiguous float32 (n, dim) array, or raise naming the first bad row.

    A 1-D array of length `dim` is one row. Rows must be finite (also after the cast to float32),
    and under 'cosine' have a non-zero norm in float32.
    """
    if metric not in METRICS:
        raise InvalidArgument(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    try:
        arr = np.asarray(vectors)
    except ValueError:  # ragged nested lists
        raise InvalidArgument(f"{field}: rows must all have dimension {dim}") from None
    if arr.dtype.kind not in "iuf":
        raise InvalidArgument(f"{field}: expected numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1) if arr.size else arr.reshape(0, dim)
    if arr.ndim != 2:
        raise InvalidArgument(f"{field}: expected a 2-D array (n, {dim}), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InvalidArgument(f"{field}: batch is empty")
    if arr.shape[1] != dim:
        raise InvalidArgument(f"{field}: expected dimension {dim}, got {arr.shape[1]}")
    if arr.dtype == np.float32:  # the wire's form: one finiteness pass, no cast
        out = np.ascontiguousarray(arr)
        if not np.isfinite(out).all():
            _first_bad(np.isfinite(out).all(axis=1), f"{field}[{{}}]: contains NaN or infinity")
    else:
        if arr.dtype.kind == "f":
            _first_bad(np.isfinite(arr).all(axis=1), f"{field}[{{}}]: contains NaN or infinity")
        with np.errstate(over="ignore"):
            out = np.ascontiguousarray(arr, dtype=np.float32)
        _first_bad(np.isfinite(out).all(axis=1), f"{field}[{{}}]: value out of float32 range")
    if metric == "cosine":
        with np.errstate(over="ignore", under="ignore"):
            sumsq = np.einsum("ij,ij->i", out, out)
        _first_bad(np.greater(sumsq, 0), f"{field}[{{}}]: zero vector has no cosine direction")
        _first_bad(np.isfinite(sumsq), f"{field}[{{}}]: vector norm overflows float32")
    return out


def _first_bad(ok: npt.ArrayLike, template: str) -> None:
    """Raise with the index of the first False in `ok`, if any (one vectorised pass)."""
    ok = np.asarray(ok, dtype=np.bool_)
    if not ok.all():
        raise InvalidArgument(template.format(int(np.argmin(ok))))


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """`value` as an int in [lo, hi] (bools refused), or InvalidArgument naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise InvalidArgument(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_ttl(value: object, field: str = "ttl_seconds", *, zero: bool = True) -> float:
    """A TTL in seconds: a finite number in (0, MAX_TTL_SECONDS], or 0 when `zero` (no
    expiry); InvalidArgument naming `field` otherwise (negative, NaN, infinite, absurd)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidArgument(f"{field}: must be a number of seconds, got {value!r}")
    v = float(value)
    low_ok = v >= 0.0 if zero else v > 0.0
    if not math.isfinite(v) or not low_ok or v > MAX_TTL_SECONDS:
        least = "0 (no expiry)" if zero else "above 0"
        raise InvalidArgument(
            f"{field}: must be {least} up to {MAX_TTL_SECONDS} seconds (100 years), got {value!r}"
        )
    return v


def row_expiries(
    ttl_seconds: Sequence[float],
    expires_at: Sequence[float],
    n: int,
    now: float,
    default_ttl: float = 0.0,
) -> list[float] | None:
    """The absolute expiry (unix seconds; 0.0: never) of each of `n` rows written at `now`,
    from a request's `ttl_seconds` or `expires_at` (each empty, one value for every row, or
    one per row; not both); neither: `default_ttl` (0: None, the rows never expire).

    A ttl of 0 or an expires_at of 0 means the row never expires (it overrides a collection
    default). Refused, naming the field and row: both given, a count other than 1 or n, a TTL
    outside [0, MAX_TTL_SECONDS] or not finite, an expires_at not in the future or more than
    MAX_TTL_SECONDS ahead."""
    if len(ttl_seconds) and len(expires_at):
        raise InvalidArgument("ttl_seconds, expires_at: give one of them, not both")
    for name, values in (("ttl_seconds", ttl_seconds), ("expires_at", expires_at)):
        if len(values) not in (0, 1, n):
            raise InvalidArgument(
                f"{name}: {len(values)} values for {n} ids (give one for all or one per id)"
            )
    if len(ttl_seconds):
        ttls = [check_ttl(t, f"ttl_seconds[{i}]") for i, t in enumerate(ttl_seconds)]
        out = [now + t if t else 0.0 for t in ttls]
    elif len(expires_at):
        out = []
        for i, at in enumerate(expires_at):
            v = float(at)
            if v == 0.0:
                out.append(0.0)
                continue
            if not math.isfinite(v) or v <= now or v > now + MAX_TTL_SECONDS:
                raise InvalidArgument(
                    f"expires_at[{i}]: must be 0 (never) or unix seconds in the future and at "
                    f"most {MAX_TTL_SECONDS} seconds (100 years) ahead, got {at!r} (now {now:.3f})"
                )
            out.append(v)
    elif default_ttl:
        return [now + default_ttl] * n
    else:
        return None
    return out * n if len(out) == 1 and n != 1 else out
