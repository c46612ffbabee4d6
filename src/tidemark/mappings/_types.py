"""Values the provider hands out: mappings, their metadata, aliases, change events, status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tidemark.core import parse_json

SourceType = Literal["file", "server"]
AliasSourceType = Literal["built_in", "server", "file"]
MappingAction = Literal["created", "updated", "deleted"]
Trigger = Literal["initialize", "file-poll", "server-poll", "forced-resync", "refresh", "reload"]


@dataclass(frozen=True, slots=True)
class Mapping:
    """One cached mapping.

    ``text`` is what change detection compares: the expression of a text file or server
    StructureMap, or the exact text of a JSON file (so reordering its keys is a change).
    ``format`` is ``"text"`` or ``"json"``; :attr:`value` is the text itself, or a freshly parsed
    copy of the JSON value (mutating it never touches the cache).
    """

    key: str
    text: str
    format: Literal["text", "json"]
    source_type: SourceType
    source: str

    @property
    def value(self) -> Any:
        """The mapping: a string, or for a JSON file mapping the parsed JSON value."""
        return self.text if self.format == "text" else parse_json(self.text)

    def same_as(self, other: Mapping) -> bool:
        """Equal content from the same source: the test for "this entry did not change"."""
        return (
            self.text == other.text
            and self.format == other.format
            and self.source_type == other.source_type
            and self.source == other.source
        )


@dataclass(frozen=True, slots=True)
class MappingMetadata:
    """Where a cached mapping comes from and which version of its source it reflects.

    Server mappings: ``version_id`` / ``last_updated`` are the StructureMap's ``meta``; ``name``
    and ``url`` its own. File mappings: ``last_updated`` is the file's modification time.
    """

    key: str
    source_type: SourceType
    source: str
    format: Literal["text", "json"]
    version_id: str | None = None
    last_updated: str | None = None
    name: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class AliasEntry:
    """One resolved alias: its value and the source that won (``built_in`` < ``server`` <
    ``file``); ``source`` is the ConceptMap URL, the ``aliases.json`` path or ``built_in``."""

    value: str
    source_type: AliasSourceType
    source: str


@dataclass(frozen=True, slots=True)
class MappingEvent:
    """One applied cache change.

    ``kind="mapping"``: ``action`` is ``created``/``updated``/``deleted`` for ``key``, with the
    entry's source (the removed entry's, for a deletion) and ``text_hash`` (content hash of the
    new text, ``None`` for a deletion). ``kind="aliases"``: ``action="replaced"`` with the keys
    ``added``, ``changed`` and ``removed``. ``trigger`` says which path applied it.
    """

    kind: Literal["mapping", "aliases"]
    action: Literal["created", "updated", "deleted", "replaced"]
    trigger: Trigger
    at: datetime
    key: str | None = None
    source_type: str | None = None
    source: str | None = None
    text_hash: str | None = None
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """Health of one source (``files`` or ``server``) as the last attempt saw it."""

    name: str
    configured: bool
    available: bool
    last_success: datetime | None
    failing_since: datetime | None
    last_error: str | None
