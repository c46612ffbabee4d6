"""The cloud tier: blobs on a tidemark server, over the ``/sync/v1/{namespace}`` HTTP protocol.

Protocol (served by ``tidemark serve``)::

    GET    /sync/v1/{ns}/metadata      200 {"updated_at", "root_hash", "keys": {key: {"hash",
                                           "updated_at", "entities", "etag"}}}
    GET    /sync/v1/{ns}/blobs/{key}   200 blob, ETag | 404
    PUT    /sync/v1/{ns}/blobs/{key}   If-Match: <etag> | If-None-Match: *   200/201 key metadata
                                       (with "etag"), ETag | 412 when the precondition fails |
                                       428 without a precondition
    DELETE /sync/v1/{ns}/blobs/{key}   If-Match: <etag>   204 | 404 | 412 | 428 without it

Errors are ``application/problem+json``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import httpx
import orjson

from tidemark.core import (
    MAX_JSON_DEPTH,
    BadRequestError,
    Counters,
    DataValidationError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    SourceUnavailableError,
    TidemarkError,
    UnauthorizedError,
    canonical_bytes,
    canonical_hash,
    get_logger,
    parse_json,
)

from ._blob import Blob, is_empty, validate_blob
from ._ids import validate_key
from ._metadata import KeyMetadata, TierMetadata
from ._tiers import ABSENT, TIER_COUNTERS

_log = get_logger("sync")

T = TypeVar("T")

#: Attempts of an unconditional write (``if_hash=None``) racing other writers.
UNCONDITIONAL_ATTEMPTS = 5

#: HTTP statuses after which retrying later may succeed.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class CloudTier:
    """Blobs of one namespace on a tidemark server.

    ``base_url`` is the server root (``http://127.0.0.1:8000``). Pass ``headers`` (for example an
    ``Authorization`` header), an ``httpx.Auth``, or a ready ``client`` (its transport, headers
    and auth are used; URLs are always built from ``base_url``). Conditional writes use the
    server's per-key ETags learned from the last metadata, load or store; a write whose expected
    hash the tier has not seen with an ETag is reported as a failed precondition, so the caller
    retries it with fresh metadata instead of overwriting blindly. Unconditional writes
    (``if_hash=None``) are sent conditional on the version the tier knows of (the server refuses
    any other), learning it with a GET and retrying when the key changed meanwhile.
    ``load_many`` and ``store_many`` run up to ``concurrency`` requests at a time.

    Network failures, timeouts, 408/425/429/5xx and torn or malformed responses raise
    :class:`SourceUnavailableError` (transient); 401/403 and rejected requests raise their
    (fatal) :class:`TidemarkError`.
    """

    def __init__(
        self,
        base_url: str,
        namespace: str,
        *,
        name: str = "cloud",
        client: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout: float = 10.0,
        concurrency: int = 8,
    ) -> None:
        validate_key(namespace)
        self._name = name
        self._namespace = namespace
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            base_url=base_url, headers=dict(headers or {}), auth=auth, timeout=timeout
        )
        self._prefix = f"{base_url.rstrip('/')}/sync/v1/{namespace}"
        self._counters = Counters(*TIER_COUNTERS, "requests", "requests_failed")
        self._etags: dict[str, tuple[str, str]] = {}
        self._concurrency = max(1, concurrency)

    @property
    def name(self) -> str:
        return self._name

    @property
    def counters(self) -> Counters:
        return self._counters

    @property
    def namespace(self) -> str:
        """The server-side namespace holding this tier's blobs."""
        return self._namespace

    async def load(self, key: str) -> Blob | None:
        validate_key(key)
        response = await self._request("GET", f"/blobs/{key}")
        if response.status_code == 404:
            self._etags.pop(key, None)
            return None
        self._expect(response, 200)
        blob = self._blob_from(response)
        etag = response.headers.get("etag")
        if etag:
            self._etags[key] = (canonical_hash(blob), etag)
        self._counters.increment("blobs_read")
        return blob

    async def store(self, key: str, blob: Blob, *, if_hash: str | None = None) -> bool:
        validate_key(key)
        normalized = validate_blob(blob)
        if is_empty(normalized):
            return await self.clear(key, if_hash=if_hash)
        body = canonical_bytes(normalized)
        if if_hash is None:
            return await self._unconditionally(key, lambda etag: self._put(key, body, etag))
        known = self._etags.get(key)
        if if_hash == ABSENT:
            return await self._put(key, body, None)
        if known is None or known[0] != if_hash:
            self._counters.increment("preconditions_failed")
            return False
        return await self._put(key, body, known[1])

    async def _put(self, key: str, body: bytes, etag: str | None) -> bool:
        """PUT over the version tagged ``etag`` (``None``: only if the key is absent)."""
        headers = {"content-type": "application/json"}
        if etag is None:
            headers["if-none-match"] = "*"
        else:
            headers["if-match"] = etag
        response = await self._request("PUT", f"/blobs/{key}", content=body, headers=headers)
        if response.status_code == 412:
            self._etags.pop(key, None)
            self._counters.increment("preconditions_failed")
            return False
        self._expect(response, 200, 201)
        meta, new_etag = self._key_metadata_from(response)
        self._etags[key] = (meta.hash, new_etag)
        self._counters.increment("blobs_written")
        return True

    async def _unconditionally(
        self, key: str, write: Callable[[str | None], Awaitable[bool]]
    ) -> bool:
        # The server takes conditional writes only (428 otherwise): write over the version this
        # tier knows of, and when another writer got in between, learn the new one and retry.
        for _ in range(UNCONDITIONAL_ATTEMPTS):
            known = self._etags.get(key)
            if await write(known[1] if known else None):
                return True
            await self.load(key)  # learns the current ETag (or that the key is absent)
        raise SourceUnavailableError(
            f"{self._name}: {key} changed on the server during each of "
            f"{UNCONDITIONAL_ATTEMPTS} attempts to overwrite it; try again later"
        )

    async def clear(self, key: str, *, if_hash: str | None = None) -> bool:
        validate_key(key)
        known = self._etags.get(key)
        if if_hash == ABSENT:
            return known is None
        if if_hash is None:
            if known is None:
                await self.load(key)
                if key not in self._etags:
                    return True
            return await self._unconditionally(key, lambda etag: self._delete(key, etag))
        if known is None or known[0] != if_hash:
            self._counters.increment("preconditions_failed")
            return False
        return await self._delete(key, known[1])

    async def _delete(self, key: str, etag: str | None) -> bool:
        """DELETE the version tagged ``etag`` (``None``: the key is absent, nothing to do)."""
        if etag is None:
            return True
        response = await self._request("DELETE", f"/blobs/{key}", headers={"if-match": etag})
        if response.status_code == 412:
            self._etags.pop(key, None)
            self._counters.increment("preconditions_failed")
            return False
        if response.status_code == 404:
            self._etags.pop(key, None)
            return True
        self._expect(response, 200, 204)
        self._etags.pop(key, None)
        self._counters.increment("blobs_cleared")
        return True

    async def load_many(self, keys: Sequence[str]) -> list[Blob | None]:
        return await self._concurrently([partial(self.load, key) for key in keys])

    async def store_many(self, writes: Sequence[tuple[str, Blob, str | None]]) -> list[bool]:
        return await self._concurrently(
            [partial(self.store, key, blob, if_hash=if_hash) for key, blob, if_hash in writes]
        )

    async def _concurrently(self, calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        semaphore = asyncio.Semaphore(self._concurrency)

        async def one(call: Callable[[], Awaitable[T]]) -> T:
            async with semaphore:
                return await call()

        return list(await asyncio.gather(*(one(call) for call in calls)))

    async def metadata(self) -> TierMetadata:
        response = await self._request("GET", "/metadata")
        self._expect(response, 200)
        document = self._json_from(response)
        try:
            metadata = TierMetadata.from_json(document)
            etags = {
                key: (metadata[key].hash, str(entry["etag"]))
                for key, entry in document["keys"].items()
                if isinstance(entry.get("etag"), str)
            }
        except (TidemarkError, TypeError, KeyError, AttributeError) as exc:
            raise self._torn("metadata", exc) from exc
        self._etags = etags
        self._counters.increment("metadata_reads")
        return metadata

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- HTTP -----------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self._counters.increment("requests")
        try:
            response = await self._client.request(method, f"{self._prefix}{path}", **kwargs)
        except httpx.HTTPError as exc:
            self._counters.increment("requests_failed")
            raise SourceUnavailableError(
                f"{self._name}: {method} {path} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code in TRANSIENT_STATUSES:
            self._counters.increment("requests_failed")
            raise SourceUnavailableError(
                f"{self._name}: {method} {path} answered {response.status_code}: "
                f"{_problem_detail(response)}",
                data={"status": response.status_code},
            )
        return response

    def _expect(self, response: httpx.Response, *statuses: int) -> None:
        if response.status_code in statuses:
            return
        self._counters.increment("requests_failed")
        detail = (
            f"{self._name}: {response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {_problem_detail(response)}"
        )
        status = response.status_code
        error: type[TidemarkError]
        if status == 401:
            error = UnauthorizedError
        elif status == 403:
            error = ForbiddenError
        elif status == 404:
            error = NotFoundError
        elif status == 413:
            error = PayloadTooLargeError
        elif 400 <= status < 500:
            error = BadRequestError
        else:
            error = TidemarkError
        raise error(detail, data={"status": status})

    def _json_from(self, response: httpx.Response) -> Any:
        try:
            return parse_json(response.content, max_depth=MAX_JSON_DEPTH)
        except ValueError as exc:
            raise self._torn(str(response.request.url.path), exc) from exc

    def _blob_from(self, response: httpx.Response) -> Blob:
        try:
            return validate_blob(self._json_from(response))
        except DataValidationError as exc:
            raise self._torn(str(response.request.url.path), exc) from exc

    def _key_metadata_from(self, response: httpx.Response) -> tuple[KeyMetadata, str]:
        document = self._json_from(response)
        try:
            meta = KeyMetadata.from_json(document)
            etag = document.get("etag") or response.headers["etag"]
        except (TidemarkError, KeyError, AttributeError) as exc:
            raise self._torn(str(response.request.url.path), exc) from exc
        return meta, str(etag)

    def _torn(self, what: str, exc: Exception) -> SourceUnavailableError:
        self._counters.increment("requests_failed")
        _log.warning("malformed response from the cloud tier", tier=self._name, path=what)
        return SourceUnavailableError(f"{self._name}: torn or malformed response for {what}: {exc}")


def _problem_detail(response: httpx.Response) -> str:
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.reason_phrase or "no detail"
    if isinstance(document, Mapping):
        return str(document.get("detail") or document.get("title") or response.reason_phrase)
    return response.reason_phrase or "no detail"
