"""The source Ed-Fi API as the replicator reads it: discovery, OAuth2 client credentials, and
GETs that retry transient failures with backoff."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, overload

import httpx

from tidemark.core import (
    BadRequestError,
    ForbiddenError,
    GoneError,
    ModelMismatchError,
    SourceUnavailableError,
    TidemarkError,
    UnauthorizedError,
    get_logger,
    parse_http_date,
    parse_json,
)

log = get_logger("replicate")

#: Statuses worth another attempt: the source is busy, restarting or behind a flaky proxy.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried: ``attempts`` in all per request, exponential backoff
    from ``initial`` seconds up to ``maximum`` (with jitter), a ``Retry-After`` honoured up to
    ``maximum``."""

    attempts: int = 8
    initial: float = 0.05
    maximum: float = 5.0

    def delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (1-based)."""
        base = min(self.maximum, self.initial * (2 ** (attempt - 1)))
        return float(
            base * (0.5 + random.random() / 2)
        )  # jitter: several replicas do not march in step


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the source's discovery document (``GET /``) says."""

    version: tuple[int, ...]
    data_root: str
    oauth: str
    dependencies: str
    change_queries: str
    data_models: dict[str, str] = field(default_factory=dict)
    #: The list of OpenAPI documents (``urls.openApiMetadata``).
    metadata: str = ""

    @property
    def cursor_paging(self) -> bool:
        """Whether the source pages collections with ``pageToken`` (ODS/API 7.3 and later)."""
        return self.version >= (7, 3)


@dataclass(slots=True)
class SourceResponse:
    """A successful answer: its JSON body and headers."""

    body: Any
    headers: Mapping[str, str]


def _version(text: object) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in str(text or "").split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


class EdFiSource:
    """An Ed-Fi API (ODS/API 5.x-7.x, Data Management Service, tidemark) read with client
    credentials. Tokens are renewed shortly before they expire, and once when a request answers
    401; a second 401, or a 403, raises. Transient failures retry per ``retry`` and count in
    ``on_retry``; after the last attempt :class:`SourceUnavailableError` is raised.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        on_request: Callable[[], None] | None = None,
        on_retry: Callable[[], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = (
            (client_id, client_secret) if client_id is not None and client_secret else None
        )
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self._on_request = on_request or (lambda: None)
        self._on_retry = on_retry or (lambda: None)
        self.discovery: Discovery | None = None

    async def close(self) -> None:
        """Release the connections."""
        await self._http.aclose()

    async def discover(self) -> Discovery:
        """Read ``GET /``: the data root (``urls.dataManagementApi``, ``…/data/v3/`` or
        ``…/data/``), the OAuth, dependencies, Change Queries and OpenAPI metadata URLs, the
        version."""
        answer = await self._send("GET", self.base_url + "/", authorized=False)
        document = answer.body if isinstance(answer.body, dict) else {}
        urls = document.get("urls") or {}
        data_root = str(urls.get("dataManagementApi") or f"{self.base_url}/data/v3/")
        oauth = str(urls.get("oauth") or f"{self.base_url}/oauth/token")
        dependencies = str(
            urls.get("dependencies") or f"{self.base_url}/metadata/data/v3/dependencies"
        )
        change_queries = str(urls.get("changeQueries") or f"{self.base_url}/changeQueries/v1/")
        metadata = str(urls.get("openApiMetadata") or f"{self.base_url}/metadata/")
        models = {
            str(m.get("name")): str(m.get("version"))
            for m in document.get("dataModels") or []
            if isinstance(m, dict)
        }
        self.discovery = Discovery(
            version=_version(document.get("version")),
            data_root=data_root.rstrip("/") + "/",
            oauth=oauth,
            dependencies=dependencies,
            change_queries=change_queries.rstrip("/") + "/",
            data_models=models,
            metadata=metadata,
        )
        return self.discovery

    @overload
    async def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        authorized: bool = True,
        missing_ok: Literal[False] = False,
    ) -> SourceResponse: ...

    @overload
    async def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        authorized: bool = True,
        missing_ok: bool,
    ) -> SourceResponse | None: ...

    async def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        authorized: bool = True,
        missing_ok: bool = False,
    ) -> SourceResponse | None:
        """GET ``url`` (absolute) and return the JSON answer (``None`` for a 404 when
        ``missing_ok``); raises :class:`GoneError` on 410, :class:`UnauthorizedError` /
        :class:`ForbiddenError` when access is refused, :class:`ModelMismatchError` on 404."""
        try:
            return await self._send("GET", url, params=params, authorized=authorized)
        except ModelMismatchError:
            if missing_ok:
                return None
            raise

    # -- tokens ------------------------------------------------------------------------------------
    async def _bearer(self, *, renew: bool = False) -> str | None:
        if self._credentials is None:
            return None
        async with self._token_lock:
            # Renew a little before expiry, so a long page never starts with a dying token.
            if renew or self._token is None or time.monotonic() >= self._token_expires:
                await self._fetch_token()
            return self._token

    async def _fetch_token(self) -> None:
        assert self._credentials is not None
        oauth = self.discovery.oauth if self.discovery else f"{self.base_url}/oauth/token"
        answer = await self._send(
            "POST",
            oauth,
            data={"grant_type": "client_credentials"},
            auth=self._credentials,
            authorized=False,
        )
        body = answer.body if isinstance(answer.body, dict) else {}
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise UnauthorizedError(
                f"The source's token endpoint {oauth} returned no access token."
            )
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 1800.0
        self._token = token
        self._token_expires = time.monotonic() + max(seconds * 0.8, seconds - 60.0, 0.0)
        log.info("token acquired", expires_in=seconds)

    # -- requests ----------------------------------------------------------------------------------
    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        authorized: bool = True,
    ) -> SourceResponse:
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            headers = {"Accept": "application/json"}
            if authorized:
                bearer = await self._bearer(renew=renewed and attempt == 1)
                if bearer is not None:
                    headers["Authorization"] = f"Bearer {bearer}"
            self._on_request()
            try:
                response = await self._http.request(
                    method, url, params=params, data=data, auth=auth, headers=headers
                )
            except httpx.TransportError as exc:
                # Timeouts, refused and dropped connections: the source may come back.
                await self._pause(attempt, None, f"{type(exc).__name__}: {exc}", url)
                continue
            status = response.status_code
            if status == 401 and authorized and self._credentials is not None and not renewed:
                renewed, attempt = True, 0  # renew once: the token may have been revoked early
                log.info("token refused, renewing", url=url)
                continue
            if status in TRANSIENT_STATUSES:
                await self._pause(attempt, response, f"HTTP {status}", url)
                continue
            if status >= 400:
                raise _refusal(response, url)
            try:
                body = parse_json(response.content) if response.content else None
            except ValueError:
                await self._pause(attempt, None, "a truncated or invalid JSON body", url)
                continue
            return SourceResponse(body, response.headers)

    async def _pause(
        self, attempt: int, response: httpx.Response | None, why: str, url: str
    ) -> None:
        if attempt >= self.retry.attempts:
            raise SourceUnavailableError(
                f"The source did not answer {url} after {attempt} attempts (last: {why})."
            )
        delay = self.retry.delay(attempt)
        if response is not None:
            delay = max(delay, _retry_after(response.headers.get("retry-after")) or 0.0)
        delay = min(delay, self.retry.maximum)
        self._on_retry()
        log.warning(
            "transient failure, retrying", url=url, reason=why, attempt=attempt, delay=delay
        )
        await asyncio.sleep(delay)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    moment = parse_http_date(text)
    if moment is None:
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = parse_json(response.content)
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("message") or body.get("title") or "")
    return ""


def _refusal(response: httpx.Response, url: str) -> TidemarkError:
    """The error a non-transient failure answer means."""
    detail = _problem_detail(response)
    status = response.status_code
    if status == 401:
        return UnauthorizedError(
            f"The source refused the credentials for {url} (401 after renewing the token). {detail}"
        )
    if status == 403:
        return ForbiddenError(f"The source forbids {url} to these credentials (403). {detail}")
    if status == 410:
        body: Any = None
        try:
            body = parse_json(response.content)
        except ValueError:
            body = None
        oldest = body.get("oldestChangeVersion") if isinstance(body, dict) else None
        return GoneError(
            f"The source no longer retains the requested changes ({url}). {detail}",
            data={"oldestChangeVersion": oldest},
        )
    if status == 404:
        return ModelMismatchError(
            f"The source does not serve {url} (404): is it the same Ed-Fi model? {detail}"
        )
    return BadRequestError(f"The source answered {status} for {url}. {detail}")
