"""What the byte tiers (disk, Redis) store: a value, its metadata, and an integrity record.

A stored entry is the (optionally zstd-compressed) value plus a small JSON record holding the
key, the codec, the sizes, an xxh3-128 checksum of the stored bytes, the wall time it was
stored, and the caller's metadata. Reading checks all of it, so a torn or damaged entry is
detected and treated as a miss instead of being returned.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson
import zstandard

from tidemark.core import CorruptDataError, content_hash

RECORD_FORMAT = 1
IDENTITY = "identity"
ZSTD = "zstd"
_CODECS = (IDENTITY, ZSTD)
_KNOWN = frozenset(
    ("format", "key", "codec", "size", "stored_bytes", "checksum", "stored_at", "meta")
)
_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry read back from a tier: the value bytes (decompressed) and its metadata."""

    key: str
    value: bytes
    meta: Mapping[str, Any]
    stored_at: datetime


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """An entry's description without its value: what listings and predicates see.

    ``size`` is what the entry occupies in the tier (stored bytes plus its record).
    """

    key: str
    meta: Mapping[str, Any]
    stored_at: datetime
    size: int
    accessed_at: datetime | None = None
    tier: str = field(default="", compare=False)


_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # zstd contexts are not thread-safe; one per thread and level.
    cache: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("compressors", {})
    found = cache.get(level)
    if found is None:
        found = cache[level] = zstandard.ZstdCompressor(level=level)
    return found


def _decompressor() -> zstandard.ZstdDecompressor:
    found: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if found is None:
        found = _local.decompressor = zstandard.ZstdDecompressor()
    return found


class Record(NamedTuple):
    """The integrity record of one stored value (see the module docstring).

    A named tuple: it is built on every read, and a tuple is several times cheaper to make
    than a frozen dataclass.
    """

    key: str
    codec: str
    size: int
    stored_bytes: int
    checksum: str
    stored_at: float
    meta: Mapping[str, Any]
    extra: Mapping[str, Any] = _NO_EXTRA

    def to_json(self) -> bytes:
        """The record as JSON bytes."""
        return orjson.dumps(
            {
                "format": RECORD_FORMAT,
                "key": self.key,
                "codec": self.codec,
                "size": self.size,
                "stored_bytes": self.stored_bytes,
                "checksum": self.checksum,
                "stored_at": self.stored_at,
                "meta": dict(self.meta),
                **self.extra,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Record:
        """Parse and check a record; raises :class:`CorruptDataError` when it is unusable."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CorruptDataError(f"record is not valid JSON: {exc}") from exc
        if type(doc) is not dict or doc.get("format") != RECORD_FORMAT:
            raise CorruptDataError("record has an unknown format")
        try:
            record = cls(
                doc["key"],
                doc["codec"],
                doc["size"],
                doc["stored_bytes"],
                doc["checksum"],
                doc["stored_at"],
                doc["meta"],
                {k: v for k, v in doc.items() if k not in _KNOWN}
                if len(doc) > len(_KNOWN)
                else _NO_EXTRA,
            )
        except KeyError as exc:
            raise CorruptDataError(f"record lacks {exc}") from None
        if (
            type(record.key) is not str
            or record.codec not in _CODECS
            or type(record.meta) is not dict
            or type(record.size) is not int
            or type(record.stored_bytes) is not int
            or record.size < 0
            or record.stored_bytes < 0
            or type(record.checksum) is not str
            or type(record.stored_at) not in (int, float)
        ):
            raise CorruptDataError("record has a field of the wrong type")
        return record

    @property
    def stored_datetime(self) -> datetime:
        """``stored_at`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.stored_at, UTC)


def encode_value(
    key: str,
    value: bytes,
    meta: Mapping[str, Any],
    stored_at: float,
    *,
    compress: bool,
    level: int = 3,
) -> tuple[bytes, Record]:
    """The bytes to store for ``value`` and their record. Compression is kept only if it helps."""
    stored, codec = value, IDENTITY
    if compress:
        packed = _compressor(level).compress(value)
        if len(packed) < len(value):
            stored, codec = packed, ZSTD
    record = Record(
        key=key,
        codec=codec,
        size=len(value),
        stored_bytes=len(stored),
        checksum=content_hash(stored),
        stored_at=stored_at,
        meta=meta,
    )
    return stored, record


def decode_value(stored: bytes, record: Record) -> bytes:
    """The original value from stored bytes; raises :class:`CorruptDataError` on any mismatch."""
    if len(stored) != record.stored_bytes:
        raise CorruptDataError(
            f"stored value is {len(stored)} bytes, the record says {record.stored_bytes}"
        )
    if content_hash(stored) != record.checksum:
        raise CorruptDataError("stored value does not match its checksum")
    if record.codec == IDENTITY:
        return stored
    try:
        # The frame declares its content size; refuse one larger than the record before any
        # allocation (max_output_size alone is ignored when the frame declares a size).
        declared = zstandard.frame_content_size(stored)
        if declared > record.size:
            raise CorruptDataError(
                f"compressed frame declares {declared} bytes, more than recorded"
            )
        value = _decompressor().decompress(stored, max_output_size=record.size)
    except zstandard.ZstdError as exc:
        raise CorruptDataError(f"cannot decompress the stored value: {exc}") from exc
    if len(value) != record.size:
        raise CorruptDataError(f"value is {len(value)} bytes, the record says {record.size}")
    return value
