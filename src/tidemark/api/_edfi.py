"""Ed-Fi data API routes: ``/data/{project}/{endpoint}[/{id}[/history]]``."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidemark.core import (
    NotFoundError,
    ParameterValidationError,
    TidemarkError,
    etag_matches,
    get_logger,
    iso_utc,
    version_etag,
)
from tidemark.store import Page, ResourceSpec, StoredDocument

from ._responses import FastJSONResponse, app_settings, app_store, problem, read_json_body
from ._settings import ServerSettings

log = get_logger("api")

Handler = Callable[[Request], Awaitable[Response]]

PAGING_PARAMETERS = ("limit", "offset", "totalCount")
WINDOW_PARAMETERS = ("minChangeVersion", "maxChangeVersion")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Numbers the databases can compare (64-bit signed integers).
MAX_INTEGER = 2**63 - 1
_DIGITS = re.compile(r"^[0-9]{1,19}$")
_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}$")


def edfi_errors(handler: Handler) -> Handler:
    """Turn any :class:`TidemarkError` raised by ``handler`` into an Ed-Fi problem response."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except TidemarkError as error:
            return problem(request, error)

    return wrapped


def resolve_resource(request: Request) -> ResourceSpec:
    """The model resource named by the path, or 404."""
    project = request.path_params["project"]
    endpoint = request.path_params["endpoint"]
    spec = app_store(request).model.find(project, endpoint)
    if spec is None:
        raise NotFoundError(f"The resource '/{project}/{endpoint}' does not exist.")
    return spec


def etag_header(document: StoredDocument) -> dict[str, str]:
    """The ``ETag`` header of a representation (the quoted ``_etag``)."""
    return {"ETag": document.etag.header()}


@dataclass(frozen=True, slots=True)
class Paging:
    """Validated ``limit`` / ``offset`` / ``totalCount``."""

    limit: int
    offset: int
    total_count: bool


def parse_paging(params: Mapping[str, str], settings: ServerSettings, errors: list[str]) -> Paging:
    """Parse the paging parameters, appending one Ed-Fi message per problem to ``errors``."""
    limit = settings.default_page_size
    offset = 0
    total_count = False
    if "limit" in params:
        raw = params["limit"]
        if _DIGITS.match(raw) and 0 <= int(raw) <= settings.max_page_size:
            limit = int(raw)
        else:
            errors.append(
                f"Limit must be omitted or set to a numeric value between 0 and {settings.max_page_size}."
            )
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


def _query_value(name: str, kind: str, raw: str, errors: list[str]) -> Any:
    if kind == "number":
        try:
            number: int | float = int(raw)
        except ValueError:
            try:
                number = float(raw)
            except ValueError:
                number = float("nan")
        if math.isnan(number) or abs(number) > MAX_INTEGER:  # NaN, infinities and huge values
            errors.append(f"The value '{raw[:40]}' is not valid for {name}: a number is required.")
            return None
        return number
    if kind == "boolean":
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        errors.append(f"The value '{raw}' is not valid for {name}: true or false is required.")
        return None
    if kind == "date":
        try:
            if not _DATE.match(raw):
                raise ValueError(raw)
            date.fromisoformat(raw)
        except ValueError:
            errors.append(
                f"The value '{raw}' is not valid for {name}: a date (YYYY-MM-DD) is required."
            )
            return None
    if kind == "time" and not _TIME.match(raw):
        errors.append(f"The value '{raw}' is not valid for {name}: a time (HH:MM:SS) is required.")
        return None
    return raw


def parse_query_fields(
    spec: ResourceSpec, params: Mapping[str, str], known: tuple[str, ...], errors: list[str]
) -> dict[str, Any]:
    """Map query parameters to JSON-path filters; unknown parameters are errors."""
    where: dict[str, Any] = {}
    for name, raw in params.items():
        if name in known:
            continue
        field = spec.query_fields.get(name)
        if field is None:
            errors.append(f"The query parameter '{name}' is not supported by /{spec.endpoint}.")
            continue
        value = _query_value(name, field.type, raw, errors)
        if value is not None:
            where[field.paths[0].text] = value
    return where


def _raise_parameter_errors(errors: list[str]) -> None:
    if errors:
        raise ParameterValidationError(
            "The request could not be processed. See 'errors' for details.", errors=errors
        )


@edfi_errors
async def list_or_create(request: Request) -> Response:
    spec = resolve_resource(request)
    if request.method == "POST":
        return await _create(request, spec)
    settings = app_settings(request)
    errors: list[str] = []
    params = request.query_params
    paging = parse_paging(params, settings, errors)
    window = parse_window(params, errors)
    where = parse_query_fields(spec, params, PAGING_PARAMETERS + WINDOW_PARAMETERS, errors)
    _raise_parameter_errors(errors)
    store = app_store(request)
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
    location = str(
        request.url_for(
            "edfi_item", project=spec.project_endpoint, endpoint=spec.endpoint, id=document.id
        )
    )
    headers = {**etag_header(document), "Location": location}
    log.info(
        "upsert",
        resource=spec.endpoint,
        id=document.id,
        created=outcome.created,
        changed=outcome.changed,
        change_version=document.content_version,
    )
    return Response(status_code=201 if outcome.created else 200, headers=headers)


@edfi_errors
async def item(request: Request) -> Response:
    spec = resolve_resource(request)
    id = request.path_params["id"]
    store = app_store(request)
    if request.method in ("GET", "HEAD"):
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None:  # answer a matching tag before loading the body
            current = await store.current_version(spec.collection, id)
            tag = version_etag(current) if current is not None else None
            if tag is not None and etag_matches(if_none_match, tag):
                return Response(status_code=304, headers={"ETag": tag.header()})
        document = await store.get(spec.collection, id)
        if document is None:
            raise NotFoundError(f"The {spec.resource_name} with id '{id}' was not found.")
        if etag_matches(request.headers.get("if-none-match"), document.etag):
            return Response(status_code=304, headers=etag_header(document))
        return FastJSONResponse(document.representation(), headers=etag_header(document))
    if request.method == "PUT":
        body = await read_json_body(request, app_settings(request).max_body_bytes)
        outcome = await store.replace(
            spec,
            id,
            body,
            if_match=request.headers.get("if-match"),
            if_none_match=request.headers.get("if-none-match"),
        )
        log.info(
            "replace",
            resource=spec.endpoint,
            id=id,
            changed=outcome.changed,
            change_version=outcome.document.content_version,
        )
        return Response(status_code=204, headers=etag_header(outcome.document))
    tombstone = await store.delete(spec.collection, id, if_match=request.headers.get("if-match"))
    log.info("delete", resource=spec.endpoint, id=id, change_version=tombstone.change_version)
    return Response(status_code=204)


@edfi_errors
async def item_history(request: Request) -> Response:
    spec = resolve_resource(request)
    id = request.path_params["id"]
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
    params = request.query_params
    paging = parse_paging(params, app_settings(request), errors)
    window = parse_window(params, errors)
    known = PAGING_PARAMETERS + WINDOW_PARAMETERS
    errors.extend(
        f"The query parameter '{name}' is not supported here."
        for name in params
        if name not in known
    )
    _raise_parameter_errors(errors)
    return paging, window


def _page_response(page: Page[Any], rows: list[Any]) -> Response:
    headers = {"Total-Count": str(page.total)} if page.total is not None else None
    return FastJSONResponse(rows, headers=headers)


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
    versions = await app_store(request).available_change_versions()
    return FastJSONResponse(
        {"oldestChangeVersion": versions.oldest, "newestChangeVersion": versions.newest}
    )


def routes() -> list[BaseRoute]:
    """The Ed-Fi data API routes (mounted by :func:`tidemark.api.create_app`)."""
    return [
        Route(
            "/changeQueries/v1/availableChangeVersions",
            available_change_versions,
            methods=["GET"],
            name="available_change_versions",
        ),
        Route(
            "/data/{project}/{endpoint}/deletes", item_deletes, methods=["GET"], name="edfi_deletes"
        ),
        Route(
            "/data/{project}/{endpoint}/keyChanges",
            item_key_changes,
            methods=["GET"],
            name="edfi_key_changes",
        ),
        Route(
            "/data/{project}/{endpoint}",
            list_or_create,
            methods=["GET", "POST"],
            name="edfi_collection",
        ),
        Route(
            "/data/{project}/{endpoint}/{id}/history",
            item_history,
            methods=["GET"],
            name="edfi_history",
        ),
        Route(
            "/data/{project}/{endpoint}/{id}",
            item,
            methods=["GET", "PUT", "DELETE"],
            name="edfi_item",
        ),
    ]
