"""Values the store returns: documents with their stamps, write outcomes, tombstones, history."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from tidemark.core import EntityTag, iso_utc, version_etag

T = TypeVar("T")


def stamp_text(moment: datetime) -> str:
    """How the store writes a timestamp: ISO-8601 UTC with milliseconds and ``Z`` (sortable)."""
    if moment.tzinfo is UTC:  # every write's stamp: skip the conversions (``+00:00`` → ``Z``)
        return moment.isoformat(timespec="milliseconds")[:-6] + "Z"
    return iso_utc(moment, timespec="milliseconds")


def stamp_moment(moment: datetime) -> datetime:
    """``moment`` in UTC at the store's precision: the instant :func:`stamp_text` writes."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A document as stored, with its representation stamps.

    ``body`` never contains the server members (``id``, ``_etag``, ``_lastModifiedDate``); use
    :meth:`representation` for what the Ed-Fi API returns.
    """

    collection: str
    id: str
    body: dict[str, Any]
    content_version: int
    content_last_modified_at: datetime
    identity_version: int
    identity_last_modified_at: datetime
    content_hash: str
    created_at: datetime

    @property
    def etag(self) -> EntityTag:
        """The strong entity tag of this representation (derived from ``content_version``)."""
        return version_etag(self.content_version)

    @property
    def last_modified(self) -> str:
        """``content_last_modified_at`` as ISO-8601 UTC ending in ``Z`` (millisecond precision)."""
        return stamp_text(self.content_last_modified_at)

    def representation(self) -> dict[str, Any]:
        """The Ed-Fi representation: ``id``, the body, ``_etag`` and ``_lastModifiedDate``."""
        return edfi_representation(self.id, self.body, self.content_version, self.last_modified)


def edfi_representation(
    id: str, body: Mapping[str, Any], content_version: int, last_modified: str
) -> dict[str, Any]:
    """What the Ed-Fi API returns for a stored document: ``id``, the body, ``_etag`` (the
    content version) and ``_lastModifiedDate`` (a stamp as :func:`stamp_text` writes it)."""
    return {
        "id": id,
        **body,
        "_etag": version_etag(content_version).value,
        "_lastModifiedDate": last_modified,
    }


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """The result of a write: the current document, whether it was created, whether it changed.

    A write whose canonical body equals the stored one has ``changed=False`` and returns the
    stored stamps untouched.
    """

    document: StoredDocument
    created: bool
    changed: bool


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A precondition of a :class:`PutDocument`: no document of its collection matches these
    (as :meth:`Store.search` takes them) when the transaction writes it (a conditional create,
    serialised with the others of the same collection and conditions)."""

    conditions: tuple[Any, ...] = ()
    ids: tuple[str, ...] | None = None
    modified: tuple[tuple[str, datetime], ...] = ()


@dataclass(frozen=True, slots=True)
class PutDocument:
    """A create-or-replace of one document in :meth:`Store.write_many` (as :meth:`Store.put`).

    ``displace``: when another document holds the body's natural key, delete that document
    (leaving its tombstone) instead of failing with 409, and let the references to the key
    follow it to this document. This is what a replica does when its source deleted a document
    and created another with the same key, or moved a key from one document to another.
    ``unless``: a 412 (``PreconditionFailedError``) when a document matches it.
    """

    collection: str
    id: str
    body: dict[str, Any]
    if_match: str | None = None
    if_none_match: str | None = None
    displace: bool = False
    unless: Unmatched | None = None


@dataclass(frozen=True, slots=True)
class DeleteDocument:
    """A delete of one document in :meth:`Store.write_many` (as :meth:`Store.delete`)."""

    collection: str
    id: str
    if_match: str | None = None


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What a delete leaves: the change version it allocated and the document's natural key."""

    collection: str
    id: str
    change_version: int
    deleted_at: datetime
    key_values: dict[str, Any] | None
    last_content_version: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A previous representation and the interval during which it was current.

    ``valid_from``/``valid_to`` are its ``_lastModifiedDate`` and the time it was replaced;
    ``content_version`` its own version and ``superseded_by`` the version that replaced it (the
    tombstone's version when ``deleted``).
    """

    collection: str
    id: str
    body: dict[str, Any]
    content_version: int
    valid_from: datetime
    valid_to: datetime
    superseded_by: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a keyset walk of one collection (see :meth:`Store.walk`).

    ``order`` is ``"key"`` for a walk in storage-key order (every current document, or those
    of a change-version window) or ``"change"`` for a walk of a change-version window in
    change-version order. The walk continues with rows whose position is greater than
    ``after`` and at most ``through``. A cursor is plain data: the API encodes it as an
    opaque page token.
    """

    order: str
    after: int
    through: int


@dataclass(frozen=True, slots=True)
class SearchAfter:
    """Where a page of a search sorted by one :class:`IndexOrder` ended: the last document's
    sort value (``None`` when it has none) and its storage key. Passed back as
    ``Store.search(after=...)``, the search continues after that document (see there)."""

    value: str | float | None
    pk: int


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results, with the total count when it was asked for and, for a walk, the
    cursor of the next page (``None`` once no row remains); for a search sorted by one
    :class:`IndexOrder` (of keys or of ranges), where each item stands (``positions``; empty
    for other searches)."""

    items: list[T]
    total: int | None = None
    next: Cursor | None = None
    positions: list[SearchAfter] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class KeyChange:
    """A document's natural key change within a window: the first old and the last new values."""

    collection: str
    id: str
    change_version: int
    old_key_values: dict[str, Any]
    new_key_values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChangeVersions:
    """The change versions a Change Queries client can ask for.

    ``newest`` never exceeds a version below which an allocated version is still uncommitted,
    so a client that stores it as its watermark misses nothing; ``oldest`` is the smallest
    version whose changes are still retained (0 when nothing has been purged).
    """

    oldest: int
    newest: int
