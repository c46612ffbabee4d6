"""The one canonical serializer and the one content hash used wherever change is detected."""

from __future__ import annotations

from typing import Any

import orjson
import xxhash

_CANONICAL_OPTIONS = orjson.OPT_SORT_KEYS


def canonical_bytes(value: Any) -> bytes:
    """Serialize ``value`` to canonical JSON bytes: sorted keys, no insignificant whitespace.

    Two values that are equal as JSON documents produce identical bytes, whatever the order in
    which their object keys were inserted. Raises ``TypeError`` for values JSON cannot express.
    """
    try:
        return orjson.dumps(value, option=_CANONICAL_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"value is not JSON-serializable: {exc}") from exc


def json_bytes(value: Any) -> bytes:
    """Serialize ``value`` to compact JSON bytes keeping the caller's key order (for responses)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"value is not JSON-serializable: {exc}") from exc


def parse_json(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON text. Raises ``ValueError`` (``orjson.JSONDecodeError``) on malformed input."""
    return orjson.loads(data)


def content_hash(value: bytes | str) -> str:
    """The content hash: xxh3-128 of the given bytes (or UTF-8 text), as 32 lowercase hex digits.

    Hash ``canonical_bytes(obj)`` to compare JSON values; hash raw file text where the serialized
    text itself is what users edit.
    """
    if isinstance(value, str):
        value = value.encode("utf-8")
    return xxhash.xxh3_128_hexdigest(value)


def canonical_hash(value: Any) -> str:
    """``content_hash(canonical_bytes(value))``: equal JSON values have equal hashes."""
    return xxhash.xxh3_128_hexdigest(orjson.dumps(value, option=_CANONICAL_OPTIONS))


def same_content(a: Any, b: Any) -> bool:
    """True when two JSON values have identical canonical bytes (the test for a real change)."""
    return canonical_bytes(a) == canonical_bytes(b)
