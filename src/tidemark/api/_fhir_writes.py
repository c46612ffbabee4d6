"""FHIR writes beyond create/update/delete: PATCH (JSON Patch, JSON Merge Patch, FHIRPath
Patch) and the conditional update, delete and patch."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidemark.core import BadRequestError, NotFoundError, PreconditionFailedError, version_etag
from tidemark.store import StoredDocument

from ._fhir import (
    _allow,
    _id,
    _media_type,
    _raise_missing,
    _read_resource,
    _respond,
    _type,
    _write_response,
    create_unless_found,
    criteria_query,
    delete_resource,
    fhir_errors,
    find_matches,
    put_resource,
)
from ._fhir_criteria import parse_criteria
from ._fhir_model import (
    check_resource,
    collection_of,
    issue,
    operation_outcome,
    representation,
)
from ._fhir_patch import apply_patch, patch_kind
from ._fhirpath_patch import RepeatsOracle
from ._responses import app_settings, app_store, read_json_body

#: A write guarded by the version it was planned on is planned again up to this often when
#: another writer changed the resource in between (when the client set no precondition of its
#: own). Each round one of the contending writers wins, so this many concurrent writers of one
#: resource all succeed.
GUARD_ATTEMPTS = 16


async def guarded(
    client_if_match: str | None, attempt: Callable[[str | None], Awaitable[Response]]
) -> Response:
    """Run ``attempt(if_match)``: with the client's ``If-Match`` once, or else with ``None`` so
    that the attempt guards with the version it read, retried when a concurrent write wins."""
    if client_if_match is not None:
        return await attempt(client_if_match)
    for remaining in range(GUARD_ATTEMPTS - 1, -1, -1):
        try:
            return await attempt(None)
        except PreconditionFailedError:
            if not remaining:
                raise
    raise AssertionError("unreachable")


def element_repeats(request: Request) -> RepeatsOracle:
    """Whether an element repeats, by the server's FHIR packages (unknown without them)."""
    schemas = getattr(request.app.state, "schema_store", None)
    if schemas is None:
        return lambda resource_type, names: None
    return schemas.validator().element_repeats  # type: ignore[no-any-return]


def _guard(document: StoredDocument, client_if_match: str | None) -> str:
    return client_if_match or version_etag(document.content_version).header()


async def _read_patch(request: Request) -> tuple[str, Any]:
    kind = patch_kind(request.headers.get("content-type"))
    return kind, await read_json_body(request, app_settings(request).max_body_bytes)


async def _patch_document(
    request: Request,
    resource_type: str,
    document: StoredDocument,
    patch: tuple[str, Any],
    if_match: str | None,
) -> Response:
    kind, body = patch
    current = representation(
        resource_type,
        document.id,
        document.body,
        document.content_version,
        document.content_last_modified_at,
    )
    # In a worker thread: a FHIRPath Patch may resolve definitions through the schema store.
    applied = await asyncio.to_thread(apply_patch, current, kind, body, element_repeats(request))
    patched = check_resource(applied, resource_type, document.id, require_id_match=True)
    return await put_resource(
        request, resource_type, document.id, patched, if_match=_guard(document, if_match)
    )


@fhir_errors
async def instance_patch(request: Request) -> Response:
    """``PATCH /fhir/{type}/{id}``: JSON Patch or JSON Merge Patch (plain JSON is a merge)."""
    _allow(request, "PATCH")
    resource_type = _type(request)
    id = _id(request)
    _media_type(request)
    store = app_store(request)
    if_match = request.headers.get("if-match")
    patch = await _read_patch(request)

    async def attempt(guard: str | None) -> Response:
        document = await store.get(collection_of(resource_type), id)
        if document is None:
            await _raise_missing(store, resource_type, id)
        return await _patch_document(request, resource_type, document, patch, guard or if_match)

    return await guarded(if_match, attempt)


@fhir_errors
async def type_conditional(request: Request) -> Response:
    """``PUT``, ``PATCH`` and ``DELETE`` on ``/fhir/{type}?criteria``: the conditional update,
    patch and delete. Criteria must select at most one resource (412 otherwise)."""
    _allow(request, "PUT", "PATCH", "DELETE")
    resource_type = _type(request)
    _media_type(request)
    what = f"Conditional {request.method} {resource_type}?…"
    query = criteria_query(request)
    if not query:
        raise BadRequestError(
            f"{request.method} {resource_type} needs search criteria in the query "
            f"(or address one resource: {resource_type}/[id])."
        )
    criteria = parse_criteria(query, what)
    if_match = request.headers.get("if-match")
    if request.method == "DELETE":
        return await guarded(
            if_match, lambda guard: _conditional_delete(request, resource_type, criteria, guard)
        )
    if request.method == "PATCH":
        patch = await _read_patch(request)

        async def patch_attempt(guard: str | None) -> Response:
            matches = await find_matches(request, resource_type, criteria, what)
            if not matches:
                raise NotFoundError(f"No {resource_type} matches the criteria of the PATCH.")
            return await _patch_document(
                request, resource_type, matches[0], patch, guard or if_match
            )

        return await guarded(if_match, patch_attempt)
    resource = check_resource(
        await _read_resource(request), resource_type, None, require_id_match=False
    )

    async def update_attempt(guard: str | None) -> Response:
        matches = await find_matches(request, resource_type, criteria, what)
        if matches:
            match = matches[0]
            if "id" in resource and resource["id"] != match.id:
                raise BadRequestError(
                    f"The id in the body ({resource['id']!r}) is not the id of the "
                    f"{resource_type} the criteria matched ({match.id!r})."
                )
            return await put_resource(
                request,
                resource_type,
                match.id,
                {**resource, "id": match.id},
                if_match=_guard(match, guard or if_match),
            )
        if if_match is not None:
            raise PreconditionFailedError("No resource matches the criteria; If-Match cannot hold.")
        # No match: a create, with the body's id (update as create) or a new one, unless a
        # concurrent conditional write of the same criteria created the match meanwhile.
        id = resource.get("id") or _new_id()
        outcome = await create_unless_found(
            request,
            resource_type,
            criteria,
            what,
            {**resource, "id": id},
            if_none_match=None if "id" in resource else "*",
        )
        if isinstance(outcome, StoredDocument):
            # Created by a concurrent write meanwhile: the next attempt updates it.
            raise PreconditionFailedError(
                f"{resource_type}/{outcome.id} was created by a concurrent write; try again."
            )
        return _write_response(request, resource_type, outcome.document, created=outcome.created)

    return await guarded(if_match, update_attempt)


def _new_id() -> str:
    return str(uuid.uuid4())


async def _conditional_delete(
    request: Request,
    resource_type: str,
    criteria: list[tuple[str, str]],
    if_match: str | None,
) -> Response:
    what = f"Conditional DELETE {resource_type}?…"
    matches = await find_matches(request, resource_type, criteria, what)
    if not matches:
        outcome = operation_outcome(
            [issue("warning", "not-found", f"No {resource_type} matches; nothing was deleted.")]
        )
        return _respond(request, outcome)
    return await delete_resource(
        request, resource_type, matches[0].id, _guard(matches[0], if_match)
    )


def routes() -> list[BaseRoute]:
    """Routes placed before the facade's catch-all routes for the same paths."""
    return [
        Route("/fhir/{type}/{id}", instance_patch, methods=["PATCH"], name="fhir_patch"),
        Route(
            "/fhir/{type}",
            type_conditional,
            methods=["PUT", "PATCH", "DELETE"],
            name="fhir_conditional",
        ),
    ]
