"""Ed-Fi data API routes, in the ODS/API layout ``/data/v3/{project}/{endpoint}…`` and the Data
Management Service layout ``/data/{project}/{endpoint}…``."""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from tidemark.core import (
    EntityTag,
    NotFoundError,
    ParameterValidationError,
    TidemarkError,
    etag_matches,
    get_logger,
    iso_utc,
    json_bytes,
    version_etag,
)
from tidemark.store import Cursor, Page, ResourceSpec, Store, StoredDocument

from ._request_log import AccessLog
from ._responses import FastJSONResponse, app_settings, app_store, problem, read_json_body
from ._settings import ServerSettings

log = get_logger("api")

Handler = Callable[[Request], Awaitable[Response]]

PAGING_PARAMETERS = ("limit", "offset", "totalCount")
CURSOR_PARAMETERS = ("pageToken", "pageSize")
WINDOW_PARAMETERS = ("minChangeVersion", "maxChangeVersion")
#: Where the data routes live: the ODS/API layout first (``/data/v3/ed-fi/…`` would otherwise
#: read as project ``v3``), then the Data Management Service layout.
DATA_ROOTS = ("/data/v3", "/data")
#: The header that carries the token of the next page of a cursor walk (ODS/API 7.3).
NEXT_PAGE_HEADER = "Next-Page-Token"
#: How many partitions ``/partitions`` may be asked for (as ODS/API).
MAX_PARTITIONS = 200
#: Numbers the databases can compare (64-bit signed integers).
MAX_INTEGER = 2**63 - 1
_DIGITS = re.compile(r"^[0-9]{1,19}$")


def edfi_errors(handler: Handler) -> Handler:
    """Turn any :class:`TidemarkError` raised by ``handler`` into an Ed-Fi problem response."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except TidemarkError as error:
            return problem(request, error)

    return wrapped


def resolve_resource(request: Request, store: Store | None = None) -> ResourceSpec:
    """The model resource named by the path, or 404 (``store``: the app's, when looked up)."""
    params = request.scope["path_params"]
    project = params["project"]
    endpoint = params["endpoint"]
    spec = (store or app_store(request)).model.find(project, endpoint)
    if spec is None:
        raise NotFoundError(f"The resource '/{project}/{endpoint}' does not exist.")
    return spec


def request_log(request: Request) -> Callable[..., None]:
    """``log.info`` for a line about this request, written with the iteration's access lines
    when the app has an access log."""
    access: AccessLog | None = getattr(request.app.state, "request_log", None)
    if access is None:
        return log.info
    return functools.partial(access.event, log)


def etag_header(document: StoredDocument) -> dict[str, str]:
    """The ``ETag`` header of a representation (the quoted ``_etag``)."""
    return {"ETag": document.etag.header()}


def data_root(request: Request) -> str:
    """The data root of the request's layout: ``/data/v3`` (ODS/API) or ``/data`` (DMS)."""
    root: str = request.scope.get("tidemark.data_root", "/data")
    return root


#: Base URLs by what they are made of (scheme, server, root paths, Host header): building one
#: parses the request's URL, which costs a POST more than its Location. Cleared when full,
#: since Host is the client's to choose.
_BASE_URLS: dict[tuple[Any, ...], str] = {}


def item_location(request: Request, spec: ResourceSpec, id: str) -> str:
    """The absolute URL of a document, in the layout of the request."""
    scope = request.scope
    host = next((value for name, value in scope["headers"] if name == b"host"), None)
    key = (
        scope.get("scheme"),
        scope.get("server"),
        scope.get("root_path"),
        scope.get("app_root_path"),
        host,
    )
    base = _BASE_URLS.get(key)
    if base is None:
        if len(_BASE_URLS) >= 256:
            _BASE_URLS.clear()
        base = _BASE_URLS[key] = str(request.base_url).rstrip("/")
    return f"{base}{data_root(request)}/{spec.project_endpoint}/{spec.endpoint}/{id}"


def single_parameters(request: Request, errors: list[str]) -> dict[str, str]:
    """The query parameters, each once; a repeated one appends an Ed-Fi message to ``errors``."""
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in values:
            message = f"The query parameter '{name}' must be given only once."
            if message not in errors:
                errors.append(message)
            continue
        values[name] = value
    return values


def reject_parameters(params: Mapping[str, str], known: tuple[str, ...], errors: list[str]) -> None:
    """Append one Ed-Fi message to ``errors`` per parameter of ``params`` not in ``known``."""
    errors.extend(
        f"The query parameter '{name}' is not supported here."
        for name in params
        if name not in known
    )


def encode_page_token(cursor: Cursor) -> str:
    """The opaque ``pageToken`` of a cursor: base64url (unpadded) of ``first,last`` storage keys
    as ODS/API writes it, or ``cv:first,last`` change versions for a change-version walk."""
    prefix = "cv:" if cursor.order == "change" else ""
    text = f"{prefix}{cursor.after + 1},{cursor.through}"
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_page_token(token: str, errors: list[str]) -> Cursor | None:
    """The cursor of a ``pageToken``; ``None`` (and an Ed-Fi message) when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    order, _, bounds = text.rpartition(":") if text.startswith("cv:") else ("", "", text)
    first, _, last = bounds.partition(",")
    if _DIGITS.match(first) and _DIGITS.match(last) and int(first) <= int(last) <= MAX_INTEGER:
        return Cursor("change" if order == "cv" else "key", int(first) - 1, int(last))
    errors.append("The page token provided was invalid.")
    return None


@dataclass(frozen=True, slots=True)
class Paging:
    """Validated paging: ``limit`` / ``offset`` / ``totalCount``, or a cursor walk's page
    (``walk`` true; ``cursor`` ``None`` for its first page, which takes ``limit``)."""

    limit: int
    offset: int
    total_count: bool
    walk: bool = False
    cursor: Cursor | None = None


def _page_number(raw: str, name: str, settings: ServerSettings, errors: list[str]) -> int:
    if _DIGITS.match(raw) and int(raw) <= settings.max_page_size:
        return int(raw)
    errors.append(
        f"{name} must be omitted or set to a numeric value between 0 and {settings.max_page_size}."
    )
    return settings.default_page_size


def parse_paging(params: Mapping[str, str], settings: ServerSettings, errors: list[str]) -> Paging:
    """Parse the paging parameters, appending one Ed-Fi message per problem to ``errors``."""
    limit = settings.default_page_size
    offset = 0
    total_count = False
    if "limit" in params:
        limit = _page_number(params["limit"], "Limit", settings, errors)
    if "offset" in params:
        raw = params["offset"]
        if _DIGITS.match(raw) and int(raw) <= MAX_INTEGER:
            offset = int(raw)
        else:
            errors.append("Offset must be a numeric value greater than or equal to 0.")
    if "totalCount" in params:
        raw = params["totalCount"].lower()
        if raw in ("true", "false"):
            total_count = raw == "true"
        else:
            errors.append("TotalCount must be a boolean value.")
    return Paging(limit, offset, total_count)


def parse_collection_paging(
    params: Mapping[str, str], settings: ServerSettings, errors: list[str]
) -> Paging:
    """Paging of a collection GET, as ODS/API 7.3 reads it: ``offset`` pages by offset; a
    ``pageToken`` (with ``pageSize``) continues a cursor walk; neither starts one."""
    paging = parse_paging(params, settings, errors)
    token = params.get("pageToken")
    if token is None:
        if "pageSize" in params:
            errors.append(
                "Use limit instead of pageSize when using limit/offset paging."
                if "offset" in params
                else "PageToken is required when pageSize is specified."
            )
        if "offset" in params:
            return paging
        return Paging(paging.limit, 0, paging.total_count, walk=True)
    if "offset" in params:
        errors.append(
            "Both offset and pageToken parameters were provided, but they support alternative "
            "paging approaches and cannot be used together."
        )
    if "limit" in params and "pageSize" not in params:
        errors.append("Use pageSize instead of limit when using cursor paging with pageToken.")
    if paging.total_count:
        errors.append(
            "Total count cannot be determined while using cursor paging (when pageToken is "
            "specified)."
        )
    size = settings.default_page_size
    if "pageSize" in params:
        size = _page_number(params["pageSize"], "PageSize", settings, errors)
    return Paging(size, 0, False, walk=True, cursor=decode_page_token(token, errors))


@dataclass(frozen=True, slots=True)
class Window:
    """Validated ``minChangeVersion`` / ``maxChangeVersion`` (either may be absent)."""

    low: int | None
    high: int | None

    @property
    def requested(self) -> bool:
        return self.low is not None or self.high is not None


def parse_window(params: Mapping[str, str], errors: list[str]) -> Window:
    """Parse the change-version window, appending one Ed-Fi message per problem to ``errors``."""
    values: dict[str, int | None] = {}
    for name, label in (
        ("minChangeVersion", "MinChangeVersion"),
        ("maxChangeVersion", "MaxChangeVersion"),
    ):
        raw = params.get(name)
        if raw is None:
            values[name] = None
        elif _DIGITS.match(raw) and int(raw) <= MAX_INTEGER:
            values[name] = int(raw)
        else:
            values[name] = None
            errors.append(f"{label} must be a numeric value greater than or equal to 0.")
    low, high = values["minChangeVersion"], values["maxChangeVersion"]
    if low is not None and high is not None and low > high:
        errors.append("MinChangeVersion must be less than or equal to MaxChangeVersion.")
    return Window(low, high)


def parse_query_fields(
    spec: ResourceSpec, params: Mapping[str, str], known: tuple[str, ...], errors: list[str]
) -> dict[str, Any]:
    """Map query parameters to query-field filters, each value coerced to the type the
    ApiSchema gives the field's paths (``schoolYear=2025`` is the integer 2025); unknown
    parameters and values that cannot be coerced are errors, one message each."""
    where: dict[str, Any] = {}
    for name, raw in params.items():
        if name in known:
            continue
        field = spec.query_fields.get(name)
        if field is None:
            errors.append(f"The query parameter '{name}' is not supported by /{spec.endpoint}.")
            continue
        try:
            where[name] = field.coerce(raw)
        except ValueError as exc:
            errors.append(f"The value '{raw[:40]}' is not valid for {name}: {exc}.")
    return where


def _raise_parameter_errors(errors: list[str]) -> None:
    if errors:
        raise ParameterValidationError(
            "The request could not be processed. See 'errors' for details.", errors=errors
        )


@edfi_errors
async def list_or_create(request: Request) -> Response:
    spec = resolve_resource(request)
    settings = app_settings(request)
    errors: list[str] = []
    params = single_parameters(request, errors)
    if request.method == "POST":
        reject_parameters(params, (), errors)
        _raise_parameter_errors(errors)
        return await _create(request, spec)
    paging = parse_collection_paging(params, settings, errors)
    window = parse_window(params, errors)
    known = PAGING_PARAMETERS + CURSOR_PARAMETERS + WINDOW_PARAMETERS
    where = parse_query_fields(spec, params, known, errors)
    _raise_parameter_errors(errors)
    store = app_store(request)
    if paging.walk:
        walked = await store.walk(
            spec.collection,
            cursor=paging.cursor,
            limit=paging.limit,
            where=where,
            min_version=window.low,
            max_version=window.high,
            total_count=paging.total_count,
        )
        return _page_response(walked, [d.representation() for d in walked.items])
    if window.requested:
        page = await store.changes(
            spec.collection,
            min_version=window.low,
            max_version=window.high,
            limit=paging.limit,
            offset=paging.offset,
            where=where,
            total_count=paging.total_count,
        )
    else:
        page = await store.query(
            spec.collection,
            limit=paging.limit,
            offset=paging.offset,
            where=where,
            total_count=paging.total_count,
        )
    return _page_response(page, [d.representation() for d in page.items])


async def _create(request: Request, spec: ResourceSpec) -> Response:
    body = await read_json_body(request, app_settings(request).max_body_bytes)
    outcome = await app_store(request).upsert(
        spec, body, if_none_match=request.headers.get("if-none-match")
    )
    document = outcome.document
    headers = {**etag_header(document), "Location": item_location(request, spec, document.id)}
    request_log(request)(
        "upsert",
        resource=spec.endpoint,
        id=document.id,
        created=outcome.created,
        changed=outcome.changed,
        change_version=document.content_version,
    )
    return Response(status_code=201 if outcome.created else 200, headers=headers)


def _no_parameters(request: Request) -> None:
    if not request.scope["query_string"]:
        return  # the common case, without parsing an empty query string
    errors: list[str] = []
    reject_parameters(single_parameters(request, errors), (), errors)
    _raise_parameter_errors(errors)


@edfi_errors
async def item(request: Request) -> Response:
    store = app_store(request)
    spec = resolve_resource(request, store)
    id = request.scope["path_params"]["id"]
    _no_parameters(request)
    method = request.scope["method"]
    if method in ("GET", "HEAD"):
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None:  # answer a matching tag before loading the body
            current = await store.current_version(spec.collection, id)
            tag = version_etag(current) if current is not None else None
            if tag is not None and etag_matches(if_none_match, tag):
                return Response(status_code=304, headers={"ETag": tag.header()})
        document = await store.get(spec.collection, id)
        if document is None:
            raise NotFoundError(f"The {spec.resource_name} with id '{id}' was not found.")
        headers = etag_header(document)
        if if_none_match is not None and etag_matches(if_none_match, document.etag):
            return Response(status_code=304, headers=headers)
        return FastJSONResponse(document.representation(), headers=headers)
    if method == "PUT":
        body = await read_json_body(request, app_settings(request).max_body_bytes)
        outcome = await store.replace(
            spec,
            id,
            body,
            if_match=request.headers.get("if-match"),
            if_none_match=request.headers.get("if-none-match"),
        )
        request_log(request)(
            "replace",
            resource=spec.endpoint,
            id=id,
            changed=outcome.changed,
            change_version=outcome.document.content_version,
        )
        return Response(status_code=204, headers=etag_header(outcome.document))
    tombstone = await store.delete(spec.collection, id, if_match=request.headers.get("if-match"))
    request_log(request)(
        "delete", resource=spec.endpoint, id=id, change_version=tombstone.change_version
    )
    return Response(status_code=204)


@edfi_errors
async def item_history(request: Request) -> Response:
    spec = resolve_resource(request)
    id = request.path_params["id"]
    _no_parameters(request)
    store = app_store(request)
    entries = await store.history(spec.collection, id)
    if not entries and await store.get(spec.collection, id) is None:
        raise NotFoundError(f"The {spec.resource_name} with id '{id}' was not found.")
    return FastJSONResponse(
        [
            {
                "id": entry.id,
                "changeVersion": entry.content_version,
                "validFrom": iso_utc(entry.valid_from, timespec="milliseconds"),
                "validTo": iso_utc(entry.valid_to, timespec="milliseconds"),
                "supersededByChangeVersion": entry.superseded_by,
                "deleted": entry.deleted,
                "document": {
                    "id": entry.id,
                    **entry.body,
                    "_etag": str(entry.content_version),
                    "_lastModifiedDate": iso_utc(entry.valid_from, timespec="milliseconds"),
                },
            }
            for entry in entries
        ]
    )


def _feed_parameters(request: Request) -> tuple[Paging, Window]:
    errors: list[str] = []
    params = single_parameters(request, errors)
    paging = parse_paging(params, app_settings(request), errors)
    window = parse_window(params, errors)
    reject_parameters(params, PAGING_PARAMETERS + WINDOW_PARAMETERS, errors)
    _raise_parameter_errors(errors)
    return paging, window


def _page_response(page: Page[Any], rows: list[Any]) -> Response:
    headers: dict[str, str] = {}
    if page.total is not None:
        headers["Total-Count"] = str(page.total)
    if page.next is not None:
        headers[NEXT_PAGE_HEADER] = encode_page_token(page.next)
    return FastJSONResponse(rows, headers=headers or None)


@edfi_errors
async def partitions(request: Request) -> Response:
    """``GET …/{endpoint}/partitions?number=N``: page tokens that split the (filtered) collection
    into up to N ranges of about equal size, for walking them in parallel (ODS/API 7.3)."""
    spec = resolve_resource(request)
    errors: list[str] = []
    params = single_parameters(request, errors)
    number = 1
    if "number" in params:
        raw = params["number"]
        if _DIGITS.match(raw) and 1 <= int(raw) <= MAX_PARTITIONS:
            number = int(raw)
        else:
            errors.append(f"Number of partitions must be between 1 and {MAX_PARTITIONS}.")
    window = parse_window(params, errors)
    where = parse_query_fields(spec, params, ("number", *WINDOW_PARAMETERS), errors)
    _raise_parameter_errors(errors)
    cursors = await app_store(request).partitions(
        spec.collection, number, where=where, min_version=window.low, max_version=window.high
    )
    return FastJSONResponse({"pageTokens": [encode_page_token(c) for c in cursors]})


@edfi_errors
async def item_deletes(request: Request) -> Response:
    spec = resolve_resource(request)
    paging, window = _feed_parameters(request)
    page = await app_store(request).deletes(
        spec.collection,
        min_version=window.low,
        max_version=window.high,
        limit=paging.limit,
        offset=paging.offset,
        total_count=paging.total_count,
    )
    rows = [
        {"id": t.id, "changeVersion": t.change_version, "keyValues": t.key_values or {}}
        for t in page.items
    ]
    return _page_response(page, rows)


@edfi_errors
async def item_key_changes(request: Request) -> Response:
    spec = resolve_resource(request)
    paging, window = _feed_parameters(request)
    page = await app_store(request).key_changes(
        spec.collection,
        min_version=window.low,
        max_version=window.high,
        limit=paging.limit,
        offset=paging.offset,
        total_count=paging.total_count,
    )
    rows = [
        {
            "id": k.id,
            "changeVersion": k.change_version,
            "oldKeyValues": k.old_key_values,
            "newKeyValues": k.new_key_values,
        }
        for k in page.items
    ]
    return _page_response(page, rows)


@edfi_errors
async def available_change_versions(request: Request) -> Response:
    _no_parameters(request)
    versions = await app_store(request).available_change_versions()
    return FastJSONResponse(
        {"oldestChangeVersion": versions.oldest, "newestChangeVersion": versions.newest}
    )


def _in_layout(handler: Handler, root: str) -> Handler:
    # Marks the request with its data root, so that locations and tokens follow its layout.
    @functools.wraps(handler)
    async def handle(request: Request) -> Response:
        request.scope["tidemark.data_root"] = root
        return await handler(request)

    return handle


#: The answer to a plain item GET: status, headers, body.
_Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class ItemEndpoint:
    """The ASGI endpoint of ``…/{endpoint}/{id}`` in one layout.

    A plain ``GET`` (no query string) that finds its document is answered here, straight from
    the store: 304 when ``If-None-Match`` holds the current tag (checked before the body is
    read), else 200 with the representation. The bytes and headers are those :func:`item`
    answers; the Starlette request, response and handler wrappers it goes through cost the
    busiest request more than its store read. Every other request (other methods, parameters,
    an unknown resource or id) is :func:`item`'s, so its errors are answered in one place.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.handler = request_response(_in_layout(item, root))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "GET" and not scope["query_string"]:
            answer = await self.answer(scope)
            if answer is not None:
                await _send_answer(send, answer)
                return
        await self.handler(scope, receive, send)

    async def answer(self, scope: Scope) -> _Answer | None:
        """The answer to a plain GET of ``scope`` (its ``path_params`` set), or ``None`` when
        :func:`item` must answer it."""
        store: Store = scope["app"].state.store
        params = scope["path_params"]
        spec = store.model.find(params["project"], params["endpoint"])
        if spec is None:
            return None
        id = params["id"]
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
                break
        if if_none_match is not None:
            current = await store.current_version(spec.collection, id)
            if current is not None:
                tag = version_etag(current)
                if etag_matches(if_none_match, tag):
                    return _not_modified(tag)
        found = await store.get_representation(spec.collection, id)
        if found is None:
            return None
        tag = version_etag(found[0])
        if if_none_match is not None and etag_matches(if_none_match, tag):
            return _not_modified(tag)
        body = json_bytes(found[1])
        headers = [
            (b"etag", tag.header().encode("latin-1")),
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"content-type", b"application/json"),
        ]
        return 200, headers, body


def _not_modified(tag: EntityTag) -> _Answer:
    return 304, [(b"etag", tag.header().encode("latin-1"))], b""


async def _send_answer(send: Send, answer: _Answer) -> None:
    status, headers, body = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: Ids that name another route in the item's place (``…/{endpoint}/deletes`` and the like).
_NOT_ITEM_IDS = frozenset({"deletes", "keyChanges", "partitions"})


class PlainItemGets:
    """Middleware answering a plain item GET (no query string) with :meth:`ItemEndpoint.answer`
    before the exception middleware and the router, which add more per request than the read.

    The route such a path reaches is known from its segments alone: ``/data/v3/{project}/
    {endpoint}/{id}`` or ``/data/{project}/{endpoint}/{id}``, except the ids of the routes that
    come first in :func:`routes` (``deletes``, ``keyChanges``, ``partitions``) and the ODS/API
    collection route (``/data/v3/{project}/{endpoint}``). The scope gets the endpoint and path
    parameters the router would give it (the metrics count it under the item's route). Every
    other request, a GET the endpoint leaves to :func:`item` and one whose read raises go down
    the stack, which answers them as before.
    """

    def __init__(self, app: ASGIApp, endpoints: Mapping[str, ItemEndpoint]) -> None:
        self.app = app
        self.endpoints = dict(endpoints)

    def match(self, path: str) -> tuple[ItemEndpoint, dict[str, str]] | None:
        """The item endpoint and path parameters of ``path``, or ``None``."""
        parts = path.split("/")
        if len(parts) == 6 and parts[2] == "v3":
            root = "/data/v3"
            project, endpoint, id = parts[3], parts[4], parts[5]
        elif len(parts) == 5 and parts[2] != "v3":
            root = "/data"
            project, endpoint, id = parts[2], parts[3], parts[4]
        else:
            return None
        target = self.endpoints.get(root)
        if (
            target is None
            or parts[1] != "data"
            or not (project and endpoint and id)
            or id in _NOT_ITEM_IDS
        ):
            return None
        return target, {"project": project, "endpoint": endpoint, "id": id}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and not scope["query_string"]
            and not scope.get("root_path")
        ):
            matched = self.match(scope["path"])
            if matched is not None:
                scope["endpoint"], scope["path_params"] = matched
                try:
                    answer = await matched[0].answer(scope)
                except Exception:  # a read that fails is answered as the routes answer it
                    answer = None
                if answer is not None:
                    await _send_answer(send, answer)
                    return
        await self.app(scope, receive, send)


def item_endpoints(table: Sequence[BaseRoute]) -> dict[str, ItemEndpoint]:
    """The item endpoints of ``table`` (the routes of :func:`routes`), by data root."""
    return {
        route.endpoint.root: route.endpoint
        for route in table
        if isinstance(route, Route) and isinstance(route.endpoint, ItemEndpoint)
    }


def routes() -> list[BaseRoute]:
    """The Ed-Fi data API routes, in both layouts (mounted by :func:`tidemark.api.create_app`)."""
    table: list[BaseRoute] = [
        Route(
            "/changeQueries/v1/availableChangeVersions",
            available_change_versions,
            methods=["GET"],
            name="available_change_versions",
        )
    ]
    pieces: list[tuple[str, Handler, list[str], str]] = [
        ("/deletes", item_deletes, ["GET"], "edfi_deletes"),
        ("/keyChanges", item_key_changes, ["GET"], "edfi_key_changes"),
        ("/partitions", partitions, ["GET"], "edfi_partitions"),
        ("", list_or_create, ["GET", "POST"], "edfi_collection"),
        ("/{id}/history", item_history, ["GET"], "edfi_history"),
        ("/{id}", item, ["GET", "PUT", "DELETE"], "edfi_item"),
    ]
    for root in DATA_ROOTS:
        suffix = "_v3" if root == "/data/v3" else ""
        table.extend(
            Route(
                f"{root}/{{project}}/{{endpoint}}{tail}",
                ItemEndpoint(root) if handler is item else _in_layout(handler, root),
                methods=methods,
                name=name + suffix,
            )
            for tail, handler, methods, name in pieces
        )
    return table
