"""Response helpers: orjson bodies, Ed-Fi problem+json, correlation ids, bounded body reading."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tidemark.core import (
    MAX_JSON_DEPTH,
    JsonDepthError,
    MalformedBodyError,
    PayloadTooLargeError,
    TidemarkError,
    UnsupportedMediaTypeError,
    json_bytes,
    parse_json,
)
from tidemark.store import Store

from ._settings import ServerSettings

PROBLEM_MEDIA_TYPE = "application/problem+json"


def app_store(request: Request) -> Store:
    """The store the application serves."""
    store: Store = request.app.state.store
    return store


def app_settings(request: Request) -> ServerSettings:
    """The application's server settings."""
    settings: ServerSettings = request.app.state.settings
    return settings


EDFI_URN = "urn:ed-fi:api:"


class FastJSONResponse(JSONResponse):
    """A JSON response rendered with orjson (key order as given)."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def correlation_id(request: Request) -> str:
    """The request's correlation id: the client's ``correlation-id`` header or a new one."""
    existing = getattr(request.state, "correlation_id", None)
    if existing:
        return str(existing)
    value = request.headers.get("correlation-id") or uuid.uuid4().hex
    request.state.correlation_id = value
    return value


def problem(
    request: Request, error: TidemarkError, headers: dict[str, str] | None = None
) -> Response:
    """An ``application/problem+json`` response for ``error`` with an Ed-Fi ``type`` URN."""
    body: dict[str, Any] = {
        "detail": error.detail,
        "type": EDFI_URN + error.code,
        "title": error.title,
        "status": error.status,
        "correlationId": correlation_id(request),
        "validationErrors": error.validation_errors,
        "errors": error.errors,
    }
    return FastJSONResponse(
        body, status_code=error.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


async def read_json_body(request: Request, limit: int) -> Any:
    """Read and parse a JSON body of at most ``limit`` bytes.

    Raises 413 when larger (without reading more than ``limit + 1`` bytes), 415 for a non-JSON
    content type, 400 for an empty or malformed body, and 400 for arrays and objects nested
    more than :data:`~tidemark.core.MAX_JSON_DEPTH` levels deep (measured before parsing, so a
    deep body costs a linear scan and nothing else). Every route that reads JSON reads it here.
    """
    content_type = (
        request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    )
    if content_type and not (content_type == "application/json" or content_type.endswith("+json")):
        raise UnsupportedMediaTypeError(
            f"Content-Type {content_type!r} is not supported; send application/json."
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The request body exceeds the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"The request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise MalformedBodyError("The request body is empty; a JSON object is required.")
    try:
        return parse_json(raw, max_depth=MAX_JSON_DEPTH)
    except JsonDepthError:
        raise MalformedBodyError(
            f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
            f"the limit is {MAX_JSON_DEPTH}. Send a flatter document."
        ) from None
    except ValueError as exc:
        raise MalformedBodyError(f"The request body is not valid JSON: {exc}") from exc
