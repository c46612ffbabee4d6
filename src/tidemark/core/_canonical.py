"""The one canonical serializer and the one content hash used wherever change is detected."""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import orjson
import xxhash

_CANONICAL_OPTIONS = orjson.OPT_SORT_KEYS

#: The deepest nesting of arrays and objects accepted from outside (request bodies, sync blobs
#: read from other processes): ``{"a": [1]}`` is 2 levels deep. The reference Ed-Fi servers
#: (.NET JSON readers) stop at 64 too.
MAX_JSON_DEPTH = 64

# Counting nesting needs only the quotes and brackets of the text, once escapes are gone; both
# kinds of bracket count alike.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_ONE_BRACKET = bytes.maketrans(b"{}", b"[]")
_STRING = re.compile(rb'"[^"]*"')
_QUICK_PASSES = 8
_DELTA = [0] * 256
_DELTA[ord("[")], _DELTA[ord("]")] = 1, -1


class JsonDepthError(ValueError):
    """JSON text nests arrays and objects deeper than the limit it was parsed with."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"arrays and objects are nested more than {limit} levels deep (the limit is {limit})"
        )
        self.limit = limit


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


def parse_json(data: bytes | bytearray | memoryview | str, *, max_depth: int | None = None) -> Any:
    """Parse JSON text. Raises ``ValueError`` (``orjson.JSONDecodeError``) on malformed input.

    With ``max_depth`` (use :data:`MAX_JSON_DEPTH` for anything that comes from outside) the
    nesting is measured on the raw text first, without recursion, and :class:`JsonDepthError`
    is raised before anything is parsed when it is deeper.
    """
    if max_depth is not None and exceeds_json_depth(data, max_depth):
        raise JsonDepthError(max_depth)
    return orjson.loads(data)


def exceeds_json_depth(data: bytes | bytearray | memoryview | str, limit: int) -> bool:
    """Whether JSON text nests arrays and objects more than ``limit`` levels deep.

    Linear passes over the text with bytes operations (strings skipped), never a recursive
    walk, so any input is safe to measure. Text that is not valid JSON may get either answer;
    the parser rejects it anyway.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # at most `limit` openings: cannot be deeper
    if b"\\" in raw:
        # Escaped backslashes first, then escaped quotes: every quote left opens or closes a
        # string.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Only quotes and brackets. Adjacent quotes close one string and open the next (or enclose
    # nothing): dropping them keeps what lies outside the strings; what is left between quotes
    # is brackets inside strings, which do not count.
    structure = raw.translate(_ONE_BRACKET, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in structure:
        structure = _STRING.sub(b"", structure)
    # Each pass removes the innermost level (every empty pair): a document d levels deep is
    # gone after d passes. A few passes settle every ordinary document.
    for _ in range(min(limit, _QUICK_PASSES)):
        shorter = structure.replace(b"[]", b"")
        if len(shorter) == len(structure):
            return False  # nothing left within the limit (or unbalanced: not JSON)
        structure = shorter
    if limit <= _QUICK_PASSES or b"[" * (limit + 1 - _QUICK_PASSES) in structure:
        return bool(structure)
    # Deeper still: one running sum over what is left, linear whatever its shape.
    return max(accumulate(map(_DELTA.__getitem__, structure))) > limit - _QUICK_PASSES


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
