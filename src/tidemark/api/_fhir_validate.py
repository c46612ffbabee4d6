"""The ``$validate`` operation: a resource checked against the server's FHIR packages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidemark.core import BadRequestError, TidemarkError

from ._fhir import (
    ALL_METHODS,
    _allow,
    _id,
    _media_type,
    _raise_missing,
    _read_resource,
    _respond,
    _type,
    fhir_errors,
)
from ._fhir_model import (
    check_resource,
    collection_of,
    error_outcome,
    issue,
    operation_outcome,
    representation,
)
from ._responses import app_store

MODES = ("create", "update", "delete")


def _parameters(body: Any) -> tuple[Any, str | None, list[str]]:
    """``(resource, mode, profiles)`` from a ``$validate`` body: a resource, or Parameters with
    ``resource``, ``mode`` and ``profile``."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        return body, None, []
    resource: Any = None
    mode: str | None = None
    profiles: list[str] = []
    for parameter in body.get("parameter") or ():
        if not isinstance(parameter, Mapping):
            continue
        name = parameter.get("name")
        if name == "resource":
            resource = parameter.get("resource")
        elif name == "mode":
            mode = parameter.get("valueCode") or parameter.get("valueString")
        elif name == "profile":
            profile = parameter.get("valueUri") or parameter.get("valueCanonical")
            if isinstance(profile, str):
                profiles.append(profile)
    if mode is not None and mode not in MODES:
        raise BadRequestError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
    return resource, mode, profiles


async def _issues(
    request: Request, resource: dict[str, Any], profiles: Sequence[str]
) -> list[dict[str, Any]]:
    schemas = getattr(request.app.state, "schema_store", None)
    if schemas is None:
        return [
            issue(
                "warning",
                "not-supported",
                "No FHIR packages are loaded (tidemark serve --fhir-package): only the "
                "resource's shape was checked.",
            )
        ]
    result = await schemas.validate(resource, profiles=profiles)
    return [item.as_dict() for item in result.issues]


@fhir_errors
async def validate(request: Request) -> Response:
    """``[type]/$validate`` and ``[type]/[id]/$validate``: an OperationOutcome (200) listing
    every issue; errors in it mean the resource is not valid. ``GET`` on an instance validates
    the stored resource."""
    resource_type = _type(request)
    id = _id(request) if "id" in request.path_params else None
    if id is None:
        _allow(request, "POST")
    else:
        _allow(request, "GET", "POST")
    _media_type(request)
    mode: str | None = None
    profiles: list[str] = []
    if request.method == "GET":
        assert id is not None
        store = app_store(request)
        document = await store.get(collection_of(resource_type), id)
        if document is None:
            await _raise_missing(store, resource_type, id)
        resource: Any = representation(
            resource_type,
            id,
            document.body,
            document.content_version,
            document.content_last_modified_at,
        )
        profiles = request.query_params.getlist("profile")
    else:
        resource, mode, profiles = _parameters(await _read_resource(request))
    if mode == "delete":
        if id is None:
            raise BadRequestError("mode=delete needs an instance: [type]/[id]/$validate.")
        store = app_store(request)
        if await store.get(collection_of(resource_type), id) is None:
            await _raise_missing(store, resource_type, id)
        ok = issue("information", "informational", f"{resource_type}/{id} may be deleted.")
        return _respond(request, operation_outcome([ok]))
    try:
        checked = check_resource(resource, resource_type, id, require_id_match=id is not None)
    except TidemarkError as error:
        return _respond(request, error_outcome(error))
    if mode == "update" and "id" not in checked:
        invalid = issue("error", "required", "mode=update needs a resource with an id.")
        return _respond(request, operation_outcome([invalid]))
    issues = await _issues(request, checked, profiles)
    if not issues:
        issues = [issue("information", "informational", "No issues were found.")]
    return _respond(request, operation_outcome(issues))


def routes() -> list[BaseRoute]:
    """The ``$validate`` routes (placed before the facade's ``[type]/[id]`` routes)."""
    return [
        Route("/fhir/{type}/$validate", validate, methods=ALL_METHODS, name="fhir_validate_type"),
        Route(
            "/fhir/{type}/{id}/$validate",
            validate,
            methods=ALL_METHODS,
            name="fhir_validate_instance",
        ),
    ]
