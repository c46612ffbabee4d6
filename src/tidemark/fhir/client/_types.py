"""Values the client returns: what is known of a resource's version, read and search results."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tidemark.core import iso_utc, parse_etags, parse_http_date

_SUBSECOND = re.compile(r"T\d{2}:\d{2}:\d{2}\.\d+")


@dataclass(frozen=True, slots=True)
class ResourceVersion:
    """What a client knows of a resource's version: ``meta.versionId`` and ``meta.lastUpdated``.

    A conditional read sends ``If-None-Match: W/"<version_id>"`` when ``version_id`` is known, else
    ``If-Modified-Since`` from ``last_updated``, else reads unconditionally.
    """

    version_id: str | None = None
    last_updated: str | None = None

    @property
    def known(self) -> bool:
        """True when a conditional read is possible."""
        return bool(self.version_id or self.last_updated)

    @classmethod
    def of(
        cls, resource: Mapping[str, Any] | None, headers: Mapping[str, str] | None = None
    ) -> ResourceVersion:
        """The version of ``resource`` from its ``meta``; the ``ETag`` / ``Last-Modified``
        headers of the response fill in what ``meta`` lacks."""
        meta = resource.get("meta") if resource else None
        version_id = meta.get("versionId") if isinstance(meta, Mapping) else None
        last_updated = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
        if headers is not None:
            if not isinstance(version_id, str) or not version_id:
                version_id = _etag_value(headers.get("etag"))
            if not isinstance(last_updated, str) or not last_updated:
                moment = parse_http_date(headers.get("last-modified"))
                last_updated = iso_utc(moment, timespec="seconds") if moment else None
        return cls(
            version_id if isinstance(version_id, str) and version_id else None,
            last_updated if isinstance(last_updated, str) and last_updated else None,
        )


def _etag_value(header: str | None) -> str | None:
    try:
        tags = parse_etags(header)
    except ValueError:
        return None
    return tags[0].value if tags else None


@dataclass(frozen=True, slots=True)
class ReadResult:
    """The answer to a (conditional) read: ``status`` is 200, 304, 404 or 410.

    ``resource`` is set only for 200; ``headers`` are the response headers; ``version`` what the
    answer says about the resource's version (empty for 304/404/410).
    """

    status: int
    resource: dict[str, Any] | None
    headers: Mapping[str, str]
    version: ResourceVersion = field(default_factory=ResourceVersion)

    @property
    def not_modified(self) -> bool:
        """The server confirmed that the version the client holds is current (304)."""
        return self.status == 304

    @property
    def missing(self) -> bool:
        """The resource does not exist (404) or was deleted (410)."""
        return self.status in (404, 410)


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Every matching resource of a search, across all pages.

    ``server_time`` is the server's own time when the search ran: the first page's Bundle
    ``meta.lastUpdated``, else its ``Date`` header (ISO-8601, second precision), else ``None``.
    """

    resources: list[dict[str, Any]]
    total: int | None
    server_time: str | None
    pages: int

    def changes_since(self) -> str | None:
        """The ``_lastUpdated`` value that finds every change made after this search.

        ``gt<T>`` when ``T`` has sub-second precision; ``ge<T>`` when ``T`` is whole seconds (a
        ``Date`` header, or a coarse server), because FHIR's ``gt`` on a value of second precision
        skips the rest of that second. Re-seeing an unchanged resource is harmless; missing a
        change is not. ``None`` when the server reported no time at all.
        """
        if not self.server_time:
            return None
        prefix = "gt" if _SUBSECOND.search(self.server_time) else "ge"
        return prefix + self.server_time
