"""An async FHIR R4 REST client for reads and searches, built for pollers.

Conditional reads report 304/404/410 as results instead of raising; transport errors and 5xx are
retried a bounded number of times with exponential backoff and jitter; anything that is not the
FHIR JSON asked for raises :class:`FhirInvalidResponseError`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from tidemark.core import (
    Counters,
    format_http_date,
    get_logger,
    parse_http_date,
    parse_iso_utc,
    parse_json,
)

from ._errors import (
    FhirClientError,
    FhirInvalidResponseError,
    FhirRequestError,
    FhirUnavailableError,
)
from ._types import ReadResult, ResourceVersion, SearchResult

log = get_logger("fhir.client")

FHIR_ACCEPT = "application/fhir+json, application/json;q=0.9"
SearchParams = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    url: str


class FhirClient:
    """Async client of one FHIR server (``base_url``, e.g. ``http://host/fhir``).

    ``timeout`` bounds each attempt (seconds); ``retries`` is how many times a transport error or
    5xx is retried (so at most ``retries + 1`` attempts), sleeping ``backoff * 2**n`` seconds
    (half fixed, half random, at most ``max_backoff``; a ``Retry-After`` within that bound is
    honoured). 4xx answers are never retried. ``token`` adds ``Authorization: Bearer``.
    ``max_pages`` bounds a search; ``max_response_bytes`` bounds each response body. Next links
    are followed only on the server's own origin, so the token never leaves it.

    Safe to use from many tasks of one event loop; close it (or use ``async with``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_pages: int = 1000,
        max_response_bytes: int = 64 * 1024 * 1024,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if retries < 0 or max_pages < 1 or timeout <= 0:
            raise ValueError("retries must be >= 0, max_pages >= 1 and timeout > 0")
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_pages = max_pages
        self.max_response_bytes = max_response_bytes
        self.counters = Counters("requests", "retries", "transport_errors", "server_errors")
        self._rng = rng or random.Random()
        request_headers = {"Accept": FHIR_ACCEPT, **(headers or {})}
        if token:
            request_headers["Authorization"] = f"Bearer {token}"
        self._origin = _origin(self.base_url)
        self._http = httpx.AsyncClient(
            headers=request_headers,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> FhirClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def url(self, resource_type: str, id: str | None = None) -> str:
        """The URL of a type (or of one resource) on this server."""
        return f"{self.base_url}/{resource_type}" + (f"/{id}" if id is not None else "")

    # -- reads ---------------------------------------------------------------------------------
    async def read(
        self, resource_type: str, id: str, *, known: ResourceVersion | None = None
    ) -> ReadResult:
        """Read ``resource_type/id``, conditionally when ``known`` carries a version.

        Returns status 200 (with the resource), 304, 404 or 410 without raising. Raises
        :class:`FhirUnavailableError` (after retries), :class:`FhirRequestError` (other 4xx) or
        :class:`FhirInvalidResponseError` (a 200 whose body is not that resource).
        """
        headers: dict[str, str] = {}
        if known is not None and known.version_id:
            headers["If-None-Match"] = f'W/"{known.version_id}"'
        elif known is not None and known.last_updated:
            try:
                headers["If-Modified-Since"] = format_http_date(parse_iso_utc(known.last_updated))
            except ValueError:
                pass  # an unparseable lastUpdated cannot make the read conditional
        url = self.url(resource_type, id)
        answer = await self._send(url, None, headers)
        if answer.status in (304, 404, 410):
            return ReadResult(answer.status, None, answer.headers)
        if answer.status != 200:
            raise self._rejected(answer)
        resource = self._resource(answer, resource_type)
        if resource.get("id") not in (None, id):
            raise FhirInvalidResponseError(
                f"GET {url} answered {resource_type}/{resource.get('id')}", url=url
            )
        return ReadResult(
            200, resource, answer.headers, ResourceVersion.of(resource, answer.headers)
        )

    # -- search --------------------------------------------------------------------------------
    async def search(
        self,
        resource_type: str,
        params: SearchParams | None = None,
        *,
        max_pages: int | None = None,
    ) -> SearchResult:
        """Search ``resource_type`` and follow ``next`` links; every match of every page.

        Raises :class:`FhirRequestError` when the server rejects the search (e.g. an unknown
        parameter), :class:`FhirInvalidResponseError` for a page that is not a Bundle, more than
        ``max_pages`` pages, a paging loop or a next link to another origin.
        """
        resources: list[dict[str, Any]] = []
        total: int | None = None
        server_time: str | None = None
        pages = 0
        async for bundle, headers in self.search_pages(resource_type, params, max_pages=max_pages):
            pages += 1
            if pages == 1:
                raw_total = bundle.get("total")
                total = raw_total if isinstance(raw_total, int) else None
                server_time = _server_time(bundle, headers)
            resources.extend(_matches(bundle, resource_type))
        return SearchResult(resources, total, server_time, pages)

    async def search_pages(
        self,
        resource_type: str,
        params: SearchParams | None = None,
        *,
        max_pages: int | None = None,
    ) -> AsyncIterator[tuple[dict[str, Any], httpx.Headers]]:
        """Each page of a search as ``(bundle, response headers)``, following ``next`` links."""
        limit = max_pages or self.max_pages
        url: str | None = self.url(resource_type)
        query: list[tuple[str, str]] | None = _params(params)
        seen: set[str] = set()
        pages = 0
        while url is not None:
            answer = await self._send(url, query, {})
            if answer.status != 200:
                raise self._rejected(answer)
            bundle = self._json_object(answer)
            if bundle.get("resourceType") != "Bundle":
                raise FhirInvalidResponseError(
                    f"GET {answer.url} answered {bundle.get('resourceType')!r}, not a Bundle",
                    url=answer.url,
                )
            pages += 1
            yield bundle, answer.headers
            next_url = _next_link(bundle, answer.url)
            if next_url is None:
                return
            if _origin(next_url) != self._origin:
                raise FhirInvalidResponseError(
                    f"refusing to follow a next link to another origin: {next_url}", url=next_url
                )
            if next_url in seen:
                raise FhirInvalidResponseError(f"paging loop at {next_url}", url=next_url)
            if pages >= limit:
                raise FhirInvalidResponseError(
                    f"search of {resource_type} has more than {limit} pages", url=next_url
                )
            seen.add(next_url)
            url, query = next_url, None

    # -- transport -----------------------------------------------------------------------------
    async def _send(
        self, url: str, params: list[tuple[str, str]] | None, headers: Mapping[str, str]
    ) -> _Answer:
        attempt = 0
        while True:
            self.counters.increment("requests")
            retry_after: float | None = None
            try:
                answer = await self._attempt(url, params, headers)
            except httpx.TransportError as exc:
                self.counters.increment("transport_errors")
                failure: FhirClientError = FhirUnavailableError(
                    f"GET {url} failed: {type(exc).__name__}: {exc}".rstrip(": "), url=url
                )
            else:
                if answer.status < 500:
                    return answer
                self.counters.increment("server_errors")
                failure = FhirUnavailableError(
                    f"GET {answer.url} answered {answer.status}",
                    http_status=answer.status,
                    url=answer.url,
                    outcome=_outcome(answer.body),
                )
                retry_after = _retry_after(answer.headers)
            if attempt >= self.retries:
                raise failure
            delay = self._delay(attempt, retry_after)
            log.debug(
                "retrying", url=url, attempt=attempt + 1, delay=round(delay, 3), error=str(failure)
            )
            self.counters.increment("retries")
            attempt += 1
            await asyncio.sleep(delay)

    async def _attempt(
        self, url: str, params: list[tuple[str, str]] | None, headers: Mapping[str, str]
    ) -> _Answer:
        query = httpx.QueryParams(tuple(params)) if params is not None else None
        request = self._http.build_request("GET", url, params=query, headers=headers)
        response = await self._http.send(request, stream=True)
        try:
            declared = response.headers.get("content-length")
            if (
                declared is not None
                and declared.isdigit()
                and int(declared) > self.max_response_bytes
            ):
                raise FhirInvalidResponseError(
                    f"GET {request.url} answered {declared} bytes (limit {self.max_response_bytes})",
                    url=str(request.url),
                )
            chunks: list[bytes] = []
            size = 0
            try:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_response_bytes:
                        raise FhirInvalidResponseError(
                            f"GET {request.url}: body over {self.max_response_bytes} bytes",
                            url=str(request.url),
                        )
                    chunks.append(chunk)
            except httpx.DecodingError as exc:
                raise FhirInvalidResponseError(
                    f"GET {request.url}: undecodable body: {exc}", url=str(request.url)
                ) from exc
        finally:
            await response.aclose()
        return _Answer(response.status_code, response.headers, b"".join(chunks), str(request.url))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.max_backoff, self.backoff * (2.0**attempt))
        if retry_after is not None:
            return min(self.max_backoff, max(retry_after, ceiling / 2))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    # -- bodies --------------------------------------------------------------------------------
    def _json_object(self, answer: _Answer) -> dict[str, Any]:
        try:
            value = parse_json(answer.body)
        except ValueError as exc:
            preview = answer.body[:80].decode("utf-8", errors="replace")
            raise FhirInvalidResponseError(
                f"GET {answer.url} answered {answer.status} with a body that is not JSON "
                f"({exc}; starts with {preview!r})",
                http_status=answer.status,
                url=answer.url,
            ) from exc
        if not isinstance(value, dict):
            raise FhirInvalidResponseError(
                f"GET {answer.url} answered JSON that is not an object",
                http_status=answer.status,
                url=answer.url,
            )
        return value

    def _resource(self, answer: _Answer, resource_type: str) -> dict[str, Any]:
        resource = self._json_object(answer)
        if resource.get("resourceType") != resource_type:
            raise FhirInvalidResponseError(
                f"GET {answer.url} answered {resource.get('resourceType')!r}, not {resource_type}",
                http_status=answer.status,
                url=answer.url,
            )
        return resource

    def _rejected(self, answer: _Answer) -> FhirClientError:
        outcome = _outcome(answer.body)
        detail = ""
        if outcome:
            issues = outcome.get("issue")
            if isinstance(issues, list) and issues and isinstance(issues[0], dict):
                detail = f": {issues[0].get('diagnostics', '')}"
        if 400 <= answer.status < 500:
            return FhirRequestError(
                f"GET {answer.url} answered {answer.status}{detail}",
                http_status=answer.status,
                url=answer.url,
                outcome=outcome,
            )
        return FhirInvalidResponseError(
            f"GET {answer.url} answered an unexpected {answer.status}",
            http_status=answer.status,
            url=answer.url,
        )


def _params(params: SearchParams | None) -> list[tuple[str, str]] | None:
    if params is None:
        return None
    items = params.items() if isinstance(params, Mapping) else params
    return [(str(k), str(v)) for k, v in items]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _next_link(bundle: dict[str, Any], page_url: str) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url:
                return urljoin(page_url, url)
    return None


def _matches(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise FhirInvalidResponseError("Bundle.entry is not a list")
    found = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise FhirInvalidResponseError("a Bundle entry is not an object")
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        resource = entry.get("resource")
        if mode not in (None, "match") or not isinstance(resource, dict):
            continue
        if resource.get("resourceType") == resource_type:
            found.append(resource)
    return found


def _server_time(bundle: dict[str, Any], headers: httpx.Headers) -> str | None:
    meta = bundle.get("meta")
    if isinstance(meta, dict):
        value = meta.get("lastUpdated")
        if isinstance(value, str) and value:
            try:
                parse_iso_utc(value)
                return value
            except ValueError:
                pass
    moment = parse_http_date(headers.get("date"))
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _outcome(body: bytes) -> dict[str, Any] | None:
    try:
        value = parse_json(body)
    except ValueError:
        return None
    if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
        return value
    return None


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    return None
