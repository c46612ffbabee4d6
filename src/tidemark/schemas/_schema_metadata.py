"""What the schema store knows about each stored FHIRSchema, and how entries are keyed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tidemark.core import CorruptDataError, iso_utc, parse_iso_utc


def schema_key(url: str, version: str | None) -> str:
    """The storage key of a schema: ``url|version``, or ``url`` when it has no version."""
    return f"{url}|{version}" if version else url


def split_canonical(canonical: str) -> tuple[str, str | None]:
    """``url|version`` → ``(url, version)``; a plain URL gives ``(url, None)``."""
    url, bar, version = canonical.partition("|")
    return url, (version or None) if bar else None


@dataclass(frozen=True)
class SchemaMetadata:
    """Identity and provenance of one stored FHIRSchema.

    ``source_hash`` is ``content_hash(canonical_bytes(structure_definition))``: equal for an
    unchanged definition however its file is laid out, so an unchanged definition is never
    converted twice. ``dependencies`` are the canonical URLs of its base and of the types,
    profiles and extensions it refers to. ``size_bytes`` is the size of the schema's canonical
    JSON. ``package`` (``name#version``) and ``source_file_hash`` (xxh3 of the file's bytes, a
    cheaper first check) are known when the schema was converted from a package.
    ``memory_bytes`` is the footprint in memory of the parsed schema and this metadata,
    measured once when it was converted; the memory tier's byte limit counts it.
    ``schema_hash`` is ``content_hash`` of the schema's canonical JSON when it was converted:
    converting its package again replaces a cached schema that no longer matches it (or that
    has none: converted before content hashes were recorded).
    """

    canonical_url: str
    version: str | None
    source_hash: str
    conversion_time: datetime
    dependencies: tuple[str, ...]
    size_bytes: int
    package: str | None = None
    conversion_seconds: float = 0.0
    source_file_hash: str | None = None
    memory_bytes: int = 0
    schema_hash: str | None = None

    @property
    def key(self) -> str:
        """The storage key (``url|version`` or ``url``)."""
        return schema_key(self.canonical_url, self.version)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what the tiers store beside each schema)."""
        return {
            "canonical_url": self.canonical_url,
            "version": self.version,
            "source_hash": self.source_hash,
            "conversion_time": iso_utc(self.conversion_time),
            "dependencies": list(self.dependencies),
            "size_bytes": self.size_bytes,
            "package": self.package,
            "conversion_seconds": self.conversion_seconds,
            "source_file_hash": self.source_file_hash,
            "memory_bytes": self.memory_bytes,
            "schema_hash": self.schema_hash,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SchemaMetadata:
        """Parse :meth:`to_dict` output; raises :class:`CorruptDataError` when it is not that."""
        try:
            url, version = data["canonical_url"], data.get("version")
            source_hash, size = data["source_hash"], data["size_bytes"]
            dependencies = data.get("dependencies") or []
            if not isinstance(url, str) or not url:
                raise TypeError("canonical_url must be a non-empty string")
            if version is not None and not isinstance(version, str):
                raise TypeError("version must be a string")
            if not isinstance(source_hash, str) or not isinstance(size, int):
                raise TypeError("source_hash must be a string and size_bytes an integer")
            if not isinstance(dependencies, list) or not all(
                isinstance(d, str) for d in dependencies
            ):
                raise TypeError("dependencies must be a list of strings")
            package, file_hash = data.get("package"), data.get("source_file_hash")
            seconds = data.get("conversion_seconds") or 0.0
            memory = data.get("memory_bytes") or 0
            if not isinstance(memory, int):
                raise TypeError("memory_bytes must be an integer")
            schema_hash = data.get("schema_hash")
            if schema_hash is not None and not isinstance(schema_hash, str):
                raise TypeError("schema_hash must be a string")
            return cls(
                canonical_url=url,
                version=version,
                source_hash=source_hash,
                conversion_time=parse_iso_utc(str(data["conversion_time"])),
                dependencies=tuple(dependencies),
                size_bytes=size,
                package=package if isinstance(package, str) else None,
                conversion_seconds=float(seconds),
                source_file_hash=file_hash if isinstance(file_hash, str) else None,
                memory_bytes=memory,
                schema_hash=schema_hash,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDataError(f"unusable schema metadata: {exc}") from exc
