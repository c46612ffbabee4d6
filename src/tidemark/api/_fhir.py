"""FHIR R4 REST facade on the store's generic collections (``fhir:<Type>``), mounted at ``/fhir``.

Interactions: create (POST, with ``If-None-Exist``), update/create (PUT, ``If-Match``), read
(``If-None-Match`` / ``If-Modified-Since`` → 304), vread, delete, instance history, type search
(GET and ``POST _search``) and ``GET /fhir/metadata``. ``meta.versionId`` is the document's
change version and ``meta.lastUpdated`` its last-modified stamp; both are server-owned. Every
error is an OperationOutcome.

A schema validator can be plugged in with ``app.state.fhir_validator``: a callable taking the
resource (dict) and returning OperationOutcome issues (or an awaitable of them); any issue of
severity ``error`` or ``fatal`` rejects the write with 422.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import parse_qsl, quote

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidemark.core import (
    SYSTEM_CLOCK,
    BadRequestError,
    GoneError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    TidemarkError,
    UnprocessableError,
    UnsupportedMediaTypeError,
    etag_matches,
    format_http_date,
    get_logger,
    parse_http_date,
    version_etag,
)
from tidemark.fhir.search import SearchParameterSet, SearchQuery, parse_search
from tidemark.store import (
    HistoryEntry,
    IndexStatus,
    Store,
    StoredDocument,
    Unmatched,
    WriteOutcome,
)

from ._fhir_criteria import parse_criteria
from ._fhir_index import register_fhir_index
from ._fhir_model import (
    FHIR_JSON,
    ID_PATTERN,
    R4_RESOURCE_TYPES,
    CapabilityStatementBuilder,
    NotAcceptableError,
    check_resource,
    collection_of,
    error_outcome,
    instant,
    issue,
    operation_outcome,
    representation,
    stored_body,
)
from ._fhir_search import (
    DateRange,
    SearchResult,
    find,
    included,
    parse_date_range,
    put_unless_found,
    search_parameters,
    shape,
    unmatched,
)
from ._responses import app_settings, app_store, read_json_body

log = get_logger("fhir")

Handler = Callable[[Request], Awaitable[Response]]
#: A validator takes a resource and returns OperationOutcome issues (dicts with ``severity``).
FhirValidator = Callable[
    [dict[str, Any]], Sequence[Mapping[str, Any]] | Awaitable[Sequence[Mapping[str, Any]]]
]

_UNENCODED_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$")
BODY_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
READ_METHODS = ("GET", "HEAD")
# Routes accept every method and answer the unsupported ones with a 405 OperationOutcome.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


# -- responses ---------------------------------------------------------------------------------
class FhirResponse(Response):
    """A FHIR JSON response (``application/fhir+json`` unless the client asked for plain JSON)."""

    media_type = FHIR_JSON

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        pretty: bool = False,
    ) -> None:
        self._pretty = pretty
        super().__init__(content, status_code, headers, media_type)

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_INDENT_2 if self._pretty else 0)


def _media_type(request: Request) -> str:
    fmt = request.query_params.get("_format")
    if fmt:
        wanted = fmt.strip().lower()
        if wanted in ("json", "application/json"):
            return "application/json"
        if wanted in (FHIR_JSON, "application/json+fhir", "fhir+json"):
            return FHIR_JSON
        raise NotAcceptableError(f"_format={fmt!r} is not supported; this server speaks JSON.")
    accept = request.headers.get("accept")
    if not accept:
        return FHIR_JSON
    ranges = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if FHIR_JSON in ranges or "application/json+fhir" in ranges:
        return FHIR_JSON
    if "application/json" in ranges:
        return "application/json"
    if "*/*" in ranges or "application/*" in ranges or not any(ranges):
        return FHIR_JSON
    raise NotAcceptableError(
        f"Cannot produce {accept!r}; this server speaks application/fhir+json."
    )


def _pretty(request: Request) -> bool:
    return request.query_params.get("_pretty", "").lower() == "true"


def _respond(
    request: Request,
    content: Any,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    try:
        media_type = _media_type(request)
    except NotAcceptableError:
        media_type = FHIR_JSON
    return FhirResponse(content, status_code, headers, media_type, _pretty(request))


def outcome_response(request: Request, error: TidemarkError) -> Response:
    """The OperationOutcome response for ``error`` with its HTTP status."""
    headers = {}
    allow = error.data.get("allow")
    if isinstance(allow, str):
        headers["Allow"] = allow
    return _respond(request, error_outcome(error), error.status, headers)


def fhir_errors(handler: Handler) -> Handler:
    """Answer every error raised by ``handler`` with an OperationOutcome (never problem+json)."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            await fhir_index(request)
            return await handler(request)
        except TidemarkError as error:
            return outcome_response(request, error)
        except Exception as exc:
            log.error("unhandled error", path=request.url.path, exc_info=exc)
            return outcome_response(
                request, TidemarkError("An unexpected error occurred; see the server log.")
            )

    return wrapped


# -- request helpers ---------------------------------------------------------------------------


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _type(request: Request) -> str:
    resource_type: str = request.path_params["type"]
    if resource_type not in R4_RESOURCE_TYPES:
        raise NotFoundError(f"Unknown resource type {resource_type!r} (FHIR R4).")
    return resource_type


def _id(request: Request) -> str:
    id: str = request.path_params["id"]
    if not ID_PATTERN.match(id):
        raise BadRequestError(f"Invalid id {id!r}: 1-64 characters from A-Z a-z 0-9 - .")
    return id


def _allow(request: Request, *methods: str) -> None:
    if request.method not in methods:
        allowed = ", ".join(methods)
        raise MethodNotAllowedError(
            f"The method {request.method} is not allowed here (allowed: {allowed}).",
            data={"allow": allowed},
        )


def _prefer(request: Request) -> dict[str, str]:
    preferences: dict[str, str] = {}
    for part in request.headers.get("prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            preferences[name.strip().lower()] = value.strip().strip('"').lower()
    return preferences


def _version_headers(version: int, last_updated: datetime) -> dict[str, str]:
    return {
        "ETag": version_etag(version, weak=True).header(),
        "Last-Modified": format_http_date(last_updated),
    }


def _not_modified(request: Request, version: int, last_updated: datetime) -> bool:
    # RFC 9110: If-None-Match, when present, decides alone; If-Modified-Since compares at the
    # one-second precision of HTTP dates.
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and if_none_match.strip():
        try:
            return etag_matches(if_none_match, version_etag(version, weak=True))
        except ValueError as exc:
            raise BadRequestError(f"Malformed If-None-Match header: {exc}") from exc
    since = parse_http_date(request.headers.get("if-modified-since"))
    return since is not None and last_updated.replace(microsecond=0) <= since


async def _read_resource(request: Request) -> Any:
    content_type = request.headers.get("content-type")
    if content_type:
        base = content_type.split(";")[0].strip().lower()
        if base not in BODY_TYPES:
            raise UnsupportedMediaTypeError(
                f"Content-Type {base!r} is not supported; send {FHIR_JSON} or application/json."
            )
    return await read_json_body(request, app_settings(request).max_body_bytes)


async def _validate(request: Request, resource: dict[str, Any]) -> None:
    validator: FhirValidator | None = getattr(request.app.state, "fhir_validator", None)
    if validator is None:
        return
    result = validator(resource)
    issues = await result if inspect.isawaitable(result) else result
    if any(item.get("severity") in ("error", "fatal") for item in issues):
        raise UnprocessableError(
            "The resource failed validation.", data={"issues": [dict(i) for i in issues]}
        )


async def _raise_missing(store: Store, resource_type: str, id: str) -> NoReturn:
    tombstone = await store.get_tombstone(collection_of(resource_type), id)
    if tombstone is not None:
        raise GoneError(
            f"{resource_type}/{id} was deleted (version {tombstone.change_version}).",
            data={"deleted_version": tombstone.change_version},
        )
    raise NotFoundError(f"{resource_type}/{id} does not exist.")


def _document_resource(resource_type: str, document: StoredDocument) -> dict[str, Any]:
    return representation(
        resource_type,
        document.id,
        document.body,
        document.content_version,
        document.content_last_modified_at,
    )


def _write_response(
    request: Request, resource_type: str, document: StoredDocument, created: bool
) -> Response:
    headers = _version_headers(document.content_version, document.content_last_modified_at)
    if created:
        headers["Location"] = (
            f"{_base(request)}/{resource_type}/{document.id}/_history/{document.content_version}"
        )
    status = 201 if created else 200
    wanted = _prefer(request).get("return", "representation")
    if wanted == "minimal":
        return Response(status_code=status, headers=headers)
    if wanted == "operationoutcome":
        text = f"{resource_type}/{document.id} version {document.content_version}"
        outcome = operation_outcome([issue("information", "informational", text)])
        return _respond(request, outcome, status, headers)
    return _respond(request, _document_resource(resource_type, document), status, headers)


def _query_string(params: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe=':_-')}={quote(v, safe=':,|$/')}" for k, v in params)


# -- interactions ------------------------------------------------------------------------------
@fhir_errors
async def metadata(request: Request) -> Response:
    """``GET /fhir/metadata``: the CapabilityStatement."""
    _allow(request, *READ_METHODS)
    _media_type(request)
    base = _base(request)
    cache: dict[str, dict[str, Any]] | None = getattr(request.app.state, "fhir_capability", None)
    if cache is None:
        cache = {}
        request.app.state.fhir_capability = cache
    statement = cache.get(base)
    if statement is None:
        statement = CapabilityStatementBuilder.build(
            base, SYSTEM_CLOCK.now(), app_settings(request).max_page_size, fhir_parameters(request)
        )
        cache[base] = statement
    return _respond(request, statement)


@fhir_errors
async def type_level(request: Request) -> Response:
    """``GET /fhir/{type}`` (search) and ``POST /fhir/{type}`` (create with a server id)."""
    _allow(request, "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    resource_type = _type(request)
    _media_type(request)
    if request.method == "POST":
        return await _create(request, resource_type)
    return await _search(request, resource_type, request.query_params.multi_items())


@fhir_errors
async def search_post(request: Request) -> Response:
    """``POST /fhir/{type}/_search``: search with form-encoded parameters."""
    _allow(request, "POST")
    resource_type = _type(request)
    _media_type(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaTypeError("_search needs application/x-www-form-urlencoded.")
    limit = app_settings(request).max_body_bytes
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLargeError(f"The request body exceeds the limit of {limit} bytes.")
    form = parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
    return await _search(request, resource_type, [*request.query_params.multi_items(), *form])


@fhir_errors
async def type_history(request: Request) -> Response:
    """``/fhir/{type}/_history``: type-level history is not offered."""
    _type(request)
    raise BadRequestError(
        "Type-level history is not supported; use /{type}/{id}/_history or search with "
        "_lastUpdated.",
        data={"issue_code": "not-supported"},
    )


@fhir_errors
async def instance(request: Request) -> Response:
    """``/fhir/{type}/{id}``: read (GET/HEAD), update or create (PUT), delete (DELETE)."""
    _allow(request, "GET", "HEAD", "PUT", "PATCH", "DELETE")
    resource_type = _type(request)
    id = _id(request)
    _media_type(request)
    if request.method in READ_METHODS:
        return await _read(request, resource_type, id)
    if request.method == "PUT":
        return await _update(request, resource_type, id)
    return await _delete(request, resource_type, id)


@fhir_errors
async def instance_history(request: Request) -> Response:
    """``GET /fhir/{type}/{id}/_history``: every version, newest first, as a history Bundle."""
    _allow(request, *READ_METHODS)
    resource_type = _type(request)
    id = _id(request)
    _media_type(request)
    return await _history(request, resource_type, id)


@fhir_errors
async def vread(request: Request) -> Response:
    """``GET /fhir/{type}/{id}/_history/{vid}``: one version (410 for a deletion version)."""
    _allow(request, *READ_METHODS)
    resource_type = _type(request)
    id = _id(request)
    _media_type(request)
    return await _vread(request, resource_type, id, request.path_params["vid"])


@fhir_errors
async def not_found(request: Request) -> Response:
    """Any other path under ``/fhir``."""
    raise NotFoundError(f"No FHIR interaction at {request.url.path}.")


async def _read(request: Request, resource_type: str, id: str) -> Response:
    store = app_store(request)
    document = await store.get(collection_of(resource_type), id)
    if document is None:
        await _raise_missing(store, resource_type, id)
    headers = _version_headers(document.content_version, document.content_last_modified_at)
    if _not_modified(request, document.content_version, document.content_last_modified_at):
        return Response(status_code=304, headers=headers)
    return _respond(request, _document_resource(resource_type, document), headers=headers)


async def _create(request: Request, resource_type: str) -> Response:
    resource = check_resource(
        await _read_resource(request), resource_type, None, require_id_match=False
    )
    store = app_store(request)
    condition = request.headers.get("if-none-exist")
    query = criteria_query(request)
    if condition is not None and query:
        raise BadRequestError(
            "Give conditional-create criteria once: in If-None-Exist or in the query, not both."
        )
    if condition is not None or query:
        # Criteria in the query of a POST are a conditional create too (as fhirpy's
        # get_or_create sends them); without any, a POST always creates.
        what = "If-None-Exist" if condition is not None else f"POST {resource_type}?…"
        criteria = parse_criteria(condition if condition is not None else query, what)
        id = str(uuid.uuid4())
        outcome = await create_unless_found(
            request, resource_type, criteria, what, {**resource, "id": id}, if_none_match="*"
        )
        if isinstance(outcome, StoredDocument):
            return _write_response(request, resource_type, outcome, created=False)
        log.info("create", type=resource_type, id=id, version=outcome.document.content_version)
        return _write_response(request, resource_type, outcome.document, created=True)
    id = str(uuid.uuid4())
    body = stored_body(resource)
    await _validate(request, {**resource, "id": id})
    outcome = await store.put(collection_of(resource_type), id, body, if_none_match="*")
    log.info("create", type=resource_type, id=id, version=outcome.document.content_version)
    return _write_response(request, resource_type, outcome.document, created=True)


def criteria_query(request: Request) -> str:
    """The raw query of ``request`` without the format parameters, as conditional criteria."""
    parts = request.url.query.split("&") if request.url.query else []
    return "&".join(p for p in parts if p.split("=", 1)[0] not in ("_format", "_pretty"))


async def find_matches(
    request: Request, resource_type: str, criteria: Sequence[tuple[str, str]], what: str
) -> list[StoredDocument]:
    """The resource that conditional ``criteria`` select: an empty list or a list of one.

    Raises 400 for criteria the search does not understand (never lenient) and 412 when more
    than one resource matches.
    """
    documents, total = await conditional_matches(request, resource_type, criteria)
    if total > 1:
        raise PreconditionFailedError(
            f"{what} matched {total} {resource_type} resources; it must match at most one.",
            data={"issue_code": "multiple-matches"},
        )
    return documents[:1]


async def create_unless_found(
    request: Request,
    resource_type: str,
    criteria: Sequence[tuple[str, str]],
    what: str,
    resource: dict[str, Any],
    *,
    if_none_match: str | None,
) -> WriteOutcome | StoredDocument:
    """Validate and store ``resource`` (with its ``id``) unless conditional ``criteria`` select
    a resource: the write's outcome, or the one resource they select (not written, nor
    validated). The last search and the write are one transaction, serialised with conditional
    creates of the same criteria in every server process, so concurrent ones create one.

    Raises 400 for criteria the search does not understand and 412 when more than one resource
    matches.
    """
    # A plain search first: when something matches (the usual case of a retried create) no
    # lock is taken and the body is not validated.
    found = await find_matches(request, resource_type, criteria, what)
    if found:
        return found[0]
    query = _search_query(request, resource_type, criteria, lenient=False)
    await _validate(request, resource)
    outcome, matches = await put_unless_found(
        app_store(request),
        fhir_parameters(request),
        query,
        resource["id"],
        stored_body(resource),
        if_none_match=if_none_match,
    )
    if len(matches) > 1:
        raise PreconditionFailedError(
            f"{what} matched more than one {resource_type} resource; it must match at most one.",
            data={"issue_code": "multiple-matches"},
        )
    return matches[0] if outcome is None else outcome


async def criteria_unmatched(
    request: Request, resource_type: str, criteria: Sequence[tuple[str, str]]
) -> Unmatched:
    """The store precondition "nothing matches ``criteria``" of a conditional create written
    by :meth:`Store.write_many` (a transaction Bundle's entry)."""
    query = _search_query(request, resource_type, criteria, lenient=False)
    return await unmatched(app_store(request), fhir_parameters(request), query)


async def conditional_matches(
    request: Request, resource_type: str, criteria: Sequence[tuple[str, str]]
) -> tuple[list[StoredDocument], int]:
    """Up to two resources that conditional ``criteria`` select, and how many match in all.

    Criteria are a search without result parameters, never lenient: unknown or malformed ones
    are a 400.
    """
    query = _search_query(request, resource_type, criteria, lenient=False)
    query.count, query.offset, query.total = 2, 0, "accurate"
    result = await find(app_store(request), fhir_parameters(request), query)
    return result.documents, result.total or 0


async def _update(request: Request, resource_type: str, id: str) -> Response:
    resource = check_resource(
        await _read_resource(request), resource_type, id, require_id_match=True
    )
    if "id" not in resource:
        raise BadRequestError(
            f'The resource has no id; a PUT to {resource_type}/{id} needs "id": "{id}" '
            "in the body (FHIR update).",
        )
    return await put_resource(
        request,
        resource_type,
        id,
        resource,
        if_match=request.headers.get("if-match"),
        if_none_match=request.headers.get("if-none-match"),
    )


async def put_resource(
    request: Request,
    resource_type: str,
    id: str,
    resource: dict[str, Any],
    *,
    if_match: str | None,
    if_none_match: str | None = None,
) -> Response:
    """Validate and store ``resource`` as ``resource_type/id``; the update response."""
    body = stored_body(resource)
    await _validate(request, {**resource, "id": id})
    outcome = await app_store(request).put(
        collection_of(resource_type), id, body, if_match=if_match, if_none_match=if_none_match
    )
    document = outcome.document
    log.info(
        "update",
        type=resource_type,
        id=id,
        created=outcome.created,
        changed=outcome.changed,
        version=document.content_version,
    )
    return _write_response(request, resource_type, document, created=outcome.created)


async def _delete(request: Request, resource_type: str, id: str) -> Response:
    return await delete_resource(request, resource_type, id, request.headers.get("if-match"))


async def delete_resource(
    request: Request, resource_type: str, id: str, if_match: str | None
) -> Response:
    """Delete ``resource_type/id`` (idempotent: deleting a deleted resource is a 204)."""
    store = app_store(request)
    collection = collection_of(resource_type)
    try:
        tombstone = await store.delete(collection, id, if_match=if_match)
    except NotFoundError:
        previous = await store.get_tombstone(collection, id)
        if previous is None:
            raise NotFoundError(f"{resource_type}/{id} does not exist.") from None
        if if_match is not None:
            raise PreconditionFailedError(
                f"{resource_type}/{id} is deleted; If-Match cannot hold."
            ) from None
        # Deleting a deleted resource changes nothing (FHIR: delete is idempotent).
        etag = version_etag(previous.change_version, weak=True).header()
        return Response(status_code=204, headers={"ETag": etag})
    log.info("delete", type=resource_type, id=id, version=tombstone.change_version)
    etag = version_etag(tombstone.change_version, weak=True).header()
    return Response(status_code=204, headers={"ETag": etag})


async def fhir_index(request: Request) -> IndexStatus:
    """The status of the store's FHIR index (see :func:`prepare_fhir_index`)."""
    return await prepare_fhir_index(request.app)


async def prepare_fhir_index(app: Starlette) -> IndexStatus:
    """Register the FHIR indexer on the app's store once, before its first FHIR request (an app
    that opens its own store does it at start-up), so that every FHIR write indexes itself."""
    status: IndexStatus | None = getattr(app.state, "fhir_index", None)
    if status is not None:
        return status
    lock = app.state.__dict__.setdefault("_fhir_index_lock", asyncio.Lock())
    async with lock:
        status = getattr(app.state, "fhir_index", None)
        if status is None:
            status = await register_fhir_index(app.state.store, _parameters(app))
            app.state.fhir_index = status
    return status


def fhir_parameters(request: Request) -> SearchParameterSet:
    """The facade's search parameters: R4 core's plus those of the loaded FHIR packages."""
    return _parameters(request.app)


def _parameters(app: Starlette) -> SearchParameterSet:
    parameters: SearchParameterSet | None = getattr(app.state, "fhir_parameters", None)
    if parameters is None:
        schemas = getattr(app.state, "schema_store", None)
        packages = schemas.packages.packages if schemas is not None else []
        parameters = search_parameters(packages)
        app.state.fhir_parameters = parameters
    return parameters


def _search_query(
    request: Request, resource_type: str, items: Sequence[tuple[str, str]], *, lenient: bool
) -> SearchQuery:
    settings = app_settings(request)
    # The '+' of an unencoded time-zone offset arrives as a space.
    cleaned = [(name, _UNENCODED_OFFSET.sub(r"\1+\2", value)) for name, value in items]
    return parse_search(
        resource_type,
        cleaned,
        fhir_parameters(request),
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
        resource_types=R4_RESOURCE_TYPES,
        lenient=lenient,
        base_url=_base(request),
    )


async def _search(
    request: Request, resource_type: str, items: Sequence[tuple[str, str]]
) -> Response:
    lenient = _prefer(request).get("handling") == "lenient"
    query = _search_query(request, resource_type, items, lenient=lenient)
    store = app_store(request)
    parameters = fhir_parameters(request)
    # Taken before the query: every write stamped at or before it is visible to the query, so a
    # client polling with _lastUpdated=gt<this> misses nothing.
    server_time = await store.timestamp_horizon()
    if any(op == "ge" for op, _moment in query.modified):
        # A poll (a _lastUpdated lower bound) answers as of server_time: a write stamped after
        # it (in flight when it was taken) comes in the next poll, so each comes exactly once.
        query.modified.append(("lt", server_time + timedelta(milliseconds=1)))
    result = await find(store, parameters, query)
    base = _base(request)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"{base}/{resource_type}/{document.id}",
            "resource": shape(_document_resource(resource_type, document), query),
            "search": {"mode": "match"},
        }
        for document in result.documents
    ]
    extra = await included(store, parameters, query, result.documents, R4_RESOURCE_TYPES)
    entries += [
        {
            "fullUrl": f"{base}/{kind}/{document.id}",
            "resource": shape(_document_resource(kind, document), query),
            "search": {"mode": "include"},
        }
        for kind, document in extra
    ]
    notes = [
        issue("warning", "not-supported", f"Search parameter {name!r} was ignored.")
        for name in query.ignored
    ]
    if notes:
        entries.append({"resource": operation_outcome(notes), "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(server_time)},
        "type": "searchset",
    }
    if result.total is not None:
        bundle["total"] = result.total
    bundle["link"] = _paging_links(f"{base}/{resource_type}", query, result)
    if entries:
        bundle["entry"] = entries
    return _respond(request, bundle)


def _paging_links(url: str, query: SearchQuery, result: SearchResult) -> list[dict[str, str]]:
    """``self``, ``next`` and ``previous``, each carrying every parameter of the search; a
    search that continues by position (``result.cursor``) links its next page by ``_cursor``
    and has no ``previous``."""

    def link(relation: str, offset: int, cursor: str | None = None) -> dict[str, str]:
        params = [*query.applied, ("_count", str(query.count))]
        if cursor is not None:
            params.append(("_cursor", cursor))
        elif offset:
            params.append(("_offset", str(offset)))
        return {"relation": relation, "url": f"{url}?{_query_string(params)}"}

    links = [link("self", query.offset, query.cursor)]
    if query.count and result.has_next:
        if result.cursor is not None:
            links.append(link("next", 0, result.cursor))
        else:
            links.append(link("next", query.offset + query.count))
    if query.count and query.offset > 0:
        links.append(link("previous", max(0, query.offset - query.count)))
    return links


async def _history(request: Request, resource_type: str, id: str) -> Response:
    store = app_store(request)
    collection = collection_of(resource_type)
    settings = app_settings(request)
    params = request.query_params
    known = {"_count", "_offset", "_since", "_at", "_format", "_pretty"}
    unknown = sorted(set(params.keys()) - known)
    if unknown:
        raise BadRequestError(f"Unknown history parameter(s): {', '.join(unknown)}.")
    repeated = sorted(name for name in known if len(params.getlist(name)) > 1)
    if repeated:
        raise BadRequestError(f"History parameter(s) given more than once: {', '.join(repeated)}.")
    count = _int_param(params.get("_count"), settings.default_page_size, "_count")
    count = min(count, settings.max_page_size)
    offset = _int_param(params.get("_offset"), 0, "_offset")
    since = _history_time(params.get("_since"), "_since")
    at = _history_time(params.get("_at"), "_at")
    current = await store.get(collection, id)
    entries = await store.history(collection, id)
    if current is None and not entries:
        raise NotFoundError(f"{resource_type}/{id} does not exist.")
    versions = _versions(current, entries)
    if since is not None:
        versions = [v for v in versions if v["at"] >= since.start]
    if at is not None:
        versions = _current_during(versions, at.start, at.end)
    total = len(versions)
    base = _base(request)
    bundle_entries = [
        _history_entry(base, resource_type, id, version)
        for version in versions[offset : offset + count]
    ]
    url = f"{base}/{resource_type}/{id}/_history"
    # Every filter travels in the paging links, so following "next" keeps the same selection.
    kept = [(name, params[name]) for name in ("_since", "_at") if params.get(name)]

    def link(relation: str, page_offset: int) -> dict[str, str]:
        query = [*kept, ("_count", str(count)), ("_offset", str(page_offset))]
        return {"relation": relation, "url": f"{url}?{_query_string(query)}"}

    links = [link("self", offset)]
    if count and offset + count < total:
        links.append(link("next", offset + count))
    if count and offset > 0:
        links.append(link("previous", max(0, offset - count)))
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(await store.timestamp_horizon())},
        "type": "history",
        "total": total,
        "link": links,
    }
    if bundle_entries:
        bundle["entry"] = bundle_entries
    return _respond(request, bundle)


def _history_time(raw: str | None, name: str) -> DateRange | None:
    if not raw:
        return None
    try:
        # A '+' of an unencoded offset arrives as a space; no date value contains one.
        return parse_date_range(raw.replace(" ", "+"))
    except ValueError as exc:
        raise BadRequestError(f"Invalid {name}: {exc}.") from exc


def _current_during(
    versions: Sequence[dict[str, Any]], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The live versions that were current at some moment of ``[start, end)`` (``_at``).

    ``versions`` is newest first: each version is current from its own time until the time of
    the version before it in the list (a deletion ends the one after it).
    """
    kept: list[dict[str, Any]] = []
    until: datetime | None = None
    for version in versions:
        if version["body"] is not None and version["at"] < end and (until is None or until > start):
            kept.append(version)
        until = version["at"]
    return kept


def _int_param(raw: str | None, default: int, name: str) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise BadRequestError(f"{name} must be a non-negative integer, not {raw!r}.")
    return int(raw)


def _versions(
    current: StoredDocument | None, entries: Sequence[HistoryEntry]
) -> list[dict[str, Any]]:
    """Every version of one resource, newest first, with deletions as versions of their own."""
    versions: list[dict[str, Any]] = []
    if current is not None:
        versions.append(
            {
                "version": current.content_version,
                "at": current.content_last_modified_at,
                "body": current.body,
            }
        )
    for entry in entries:  # newest first
        if entry.deleted:
            versions.append({"version": entry.superseded_by, "at": entry.valid_to, "body": None})
        versions.append(
            {"version": entry.content_version, "at": entry.valid_from, "body": entry.body}
        )
    # Every live version is reported as the PUT that reproduces it (replaying the history as a
    # transaction then recreates the same ids); 201 marks the versions that created the resource.
    for index, version in enumerate(versions):
        older = versions[index + 1] if index + 1 < len(versions) else None
        if version["body"] is None:
            version["method"], version["status"] = "DELETE", "204 No Content"
        elif older is None or older["body"] is None:
            version["method"], version["status"] = "PUT", "201 Created"
        else:
            version["method"], version["status"] = "PUT", "200 OK"
    return versions


def _history_entry(
    base: str, resource_type: str, id: str, version: dict[str, Any]
) -> dict[str, Any]:
    method = version["method"]
    entry: dict[str, Any] = {"fullUrl": f"{base}/{resource_type}/{id}"}
    if version["body"] is not None:
        entry["resource"] = representation(
            resource_type, id, version["body"], version["version"], version["at"]
        )
    entry["request"] = {"method": method, "url": f"{resource_type}/{id}"}
    entry["response"] = {
        "status": version["status"],
        "etag": version_etag(version["version"], weak=True).header(),
        "lastModified": instant(version["at"]),
    }
    return entry


async def _vread(request: Request, resource_type: str, id: str, vid: str) -> Response:
    store = app_store(request)
    collection = collection_of(resource_type)
    current = await store.get(collection, id)
    entries = await store.history(collection, id)
    if current is None and not entries:
        raise NotFoundError(f"{resource_type}/{id} does not exist.")
    for version in _versions(current, entries):
        if str(version["version"]) != vid:
            continue
        if version["body"] is None:
            raise GoneError(f"Version {vid} of {resource_type}/{id} is a deletion.")
        headers = _version_headers(version["version"], version["at"])
        if _not_modified(request, version["version"], version["at"]):
            return Response(status_code=304, headers=headers)
        resource = representation(
            resource_type, id, version["body"], version["version"], version["at"]
        )
        return _respond(request, resource, headers=headers)
    raise NotFoundError(f"{resource_type}/{id} has no version {vid!r}.")


def routes() -> list[BaseRoute]:
    """The FHIR facade routes under ``/fhir`` (mounted by :func:`tidemark.api.create_app`)."""
    return [
        Route("/fhir/metadata", metadata, methods=ALL_METHODS, name="fhir_metadata"),
        Route("/fhir/{type}/_search", search_post, methods=ALL_METHODS, name="fhir_search"),
        Route("/fhir/{type}/_history", type_history, methods=ALL_METHODS, name="fhir_type_history"),
        Route("/fhir/{type}/{id}/_history/{vid}", vread, methods=ALL_METHODS, name="fhir_vread"),
        Route(
            "/fhir/{type}/{id}/_history", instance_history, methods=ALL_METHODS, name="fhir_history"
        ),
        Route("/fhir/{type}/{id}", instance, methods=ALL_METHODS, name="fhir_instance"),
        Route("/fhir/{type}", type_level, methods=ALL_METHODS, name="fhir_type"),
        Route("/fhir", not_found, methods=ALL_METHODS, name="fhir_base"),
        Route("/fhir/{rest:path}", not_found, methods=ALL_METHODS, name="fhir_other"),
    ]
