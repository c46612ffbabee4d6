"""Validators and dates as HTTP speaks them: entity tags, HTTP-dates and ISO-8601 UTC stamps."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

_ETAG_ITEM = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class EntityTag:
    """An entity tag: its opaque value and whether it is weak (``W/"..."``)."""

    value: str
    weak: bool = False

    def header(self) -> str:
        """The tag as it appears in an ``ETag`` header."""
        return f'W/"{self.value}"' if self.weak else f'"{self.value}"'


def version_etag(version: int, *, weak: bool = False) -> EntityTag:
    """The entity tag of a representation identified by its change version."""
    return EntityTag(str(version), weak)


def parse_etags(header: str | None) -> list[EntityTag] | None:
    """Parse an ``If-Match`` / ``If-None-Match`` header.

    Returns ``None`` when the header is absent or blank, ``[]`` for ``*`` (any representation),
    otherwise the listed tags. Raises ``ValueError`` on a malformed header. A bare unquoted token
    is accepted as a strong tag, because many clients send ``If-Match: 42``.
    """
    if header is None or not header.strip():
        return None
    text = header.strip()
    if text == "*":
        return []
    tags: list[EntityTag] = []
    pos = 0
    while pos < len(text):
        match = _ETAG_ITEM.match(text, pos)
        if match is None:
            if not tags and '"' not in text and "," not in text and " " not in text:
                return [EntityTag(text, False)]
            raise ValueError(f"malformed entity-tag list: {header!r}")
        tags.append(EntityTag(match.group(2), match.group(1) is not None))
        pos = match.end()
    return tags


def etag_matches(header: str | None, current: EntityTag | None) -> bool:
    """Whether a conditional header matches the current tag (``None`` = no representation).

    ``*`` matches any existing representation; otherwise a listed tag matches when its opaque
    value equals the current one. Weakness is ignored on purpose: our tags are derived from change
    versions, so equal values mean the same representation, and FHIR clients echo ``W/"n"`` tags
    in ``If-Match``. A missing header never matches.
    """
    if current is not None and header == current.header():
        return True  # the one tag a client echoes, without parsing the list
    tags = parse_etags(header)
    if tags is None or current is None:
        return False
    if not tags:
        return True
    return any(tag.value == current.value for tag in tags)


def format_http_date(moment: datetime) -> str:
    """Format an aware datetime as an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def parse_http_date(text: str | None) -> datetime | None:
    """Parse an HTTP-date (all three RFC 9110 forms) to an aware UTC datetime; ``None`` if invalid."""
    if not text:
        return None
    try:
        parsed = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso_utc(moment: datetime, *, timespec: str = "auto") -> str:
    """Format an aware datetime as ISO-8601 in UTC ending in ``Z`` (``2024-01-02T03:04:05.123Z``).

    ``timespec`` follows :meth:`datetime.isoformat`; ``auto`` keeps microseconds only when set.
    """
    if moment.tzinfo is UTC and timespec == "milliseconds":
        # the store's stamps: already UTC, so only the offset differs (``+00:00`` → ``Z``)
        return moment.isoformat(timespec=timespec)[:-6] + "Z"
    if moment.tzinfo is None:
        raise ValueError("iso_utc needs an aware datetime")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def parse_iso_utc(text: str) -> datetime:
    """Parse an ISO-8601 date-time with an offset or ``Z`` to an aware UTC datetime.

    A date-time without offset is taken as UTC. Raises ``ValueError`` when malformed.
    """
    if len(text) == 24 and text[-1] == "Z" and text[10] == "T":
        # the store's own stamps (``2024-01-02T03:04:05.123Z``) parse straight to UTC
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(text)
    value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
