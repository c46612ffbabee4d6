"""Discovery and metadata as ODS/API 7.x serves them: ``GET /``, the ``/metadata/`` list, the
Ed-Fi OpenAPI sections and the resource dependency order (JSON or GraphML); no token needed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import quoteattr

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidemark import __version__
from tidemark.core import NotFoundError, json_bytes
from tidemark.store import ResourceModel, ResourceSpec

from ._edfi import edfi_errors
from ._responses import FastJSONResponse, app_settings, app_store
from ._swagger import SECTIONS, edfi_openapi_document

#: The ODS/API contract version tidemark implements (7.3 brought cursor paging).
ODS_API_VERSION = "7.3"
#: How the ODS/API names a single-database deployment.
API_MODE = "Shared Instance"
GRAPHML_TYPES = ("application/graphml", "text/graphml")
_OPERATIONS = ["Create", "Update"]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def discovery(request: Request) -> Response:
    """``GET /``: the ODS/API version document with the URLs of every API tidemark serves."""
    model = app_store(request).model
    base = _base(request)
    return FastJSONResponse(
        {
            "version": ODS_API_VERSION,
            "informationalVersion": ODS_API_VERSION,
            "suite": "3",
            "build": f"tidemark {__version__}",
            "applicationName": "tidemark",
            "applicationVersion": __version__,
            "apiMode": API_MODE,
            "dataModels": [
                {"name": name, "version": version, "informationalVersion": version}
                for name, version in sorted(model.projects.items())
            ],
            "urls": {
                "dependencies": f"{base}/metadata/data/v3/dependencies",
                "openApiMetadata": f"{base}/metadata/",
                "oauth": f"{base}/oauth/token",
                "oauthTokenIntrospection": f"{base}/oauth/token_info",
                "dataManagementApi": f"{base}/data/v3/",
                "changeQueries": f"{base}/changeQueries/v1/",
            },
        }
    )


async def metadata_list(request: Request) -> Response:
    """``GET /metadata/``: the OpenAPI documents, as ODS/API lists them."""
    base = _base(request)
    sections = [
        {
            "name": section.title(),
            "endpointUri": f"{base}/metadata/data/v3/{section}/swagger.json",
            "prefix": "",
        }
        for section in SECTIONS
    ]
    sections.append(
        {"name": "Server", "endpointUri": f"{base}/metadata/openapi.json", "prefix": ""}
    )
    return FastJSONResponse(sections)


@edfi_errors
async def section_document(request: Request) -> Response:
    """``GET /metadata/data/v3/{section}/swagger.json``: an Ed-Fi OpenAPI section (cached)."""
    section = request.path_params["section"].lower()
    if section not in SECTIONS:
        raise NotFoundError(f"There is no OpenAPI section '{section}'.")
    cache: dict[str, bytes] = request.app.state.edfi_openapi
    body = cache.get(section)
    if body is None:
        model = app_store(request).model
        max_page = app_settings(request).max_page_size
        body = await asyncio.to_thread(
            lambda: json_bytes(edfi_openapi_document(model, section, max_page_size=max_page))
        )
        cache[section] = body
    return Response(body, media_type="application/json")


def _node(spec: ResourceSpec) -> str:
    return f"/{spec.project_endpoint}/{spec.endpoint}"


def dependency_edges(model: ResourceModel) -> Iterator[tuple[ResourceSpec, ResourceSpec]]:
    """(dependency, dependent) for every reference of the model; a reference to an abstract
    resource (EducationOrganization) is an edge from each of its concrete subclasses."""
    subclasses: dict[tuple[str, str], list[ResourceSpec]] = {}
    for spec in model:
        if spec.superclass is not None:
            subclasses.setdefault((spec.superclass[0], spec.superclass[1]), []).append(spec)
    for spec in model:
        keys = {(r.target_project, r.target) for r in spec.references}
        keys |= {(d.target_project, d.target) for d in spec.descriptor_references}
        targets: dict[str, ResourceSpec] = {}
        for key in keys:
            found = model.by_name(*key)
            for target in ([found] if found is not None else []) + subclasses.get(key, []):
                if target is not spec:
                    targets[target.collection] = target
        for target in targets.values():
            yield target, spec


def load_order(model: ResourceModel) -> list[dict[str, Any]]:
    """Every resource with its load ``order`` (1 + the highest order of what it references), in
    an order in which loading never meets a missing reference; ties sorted by path."""
    needs: dict[str, set[str]] = {spec.collection: set() for spec in model}
    for dependency, dependent in dependency_edges(model):
        needs[dependent.collection].add(dependency.collection)
    order: dict[str, int] = {}
    visiting: set[str] = set()

    def level(collection: str) -> int:
        if collection in order:
            return order[collection]
        visiting.add(collection)
        # A reference back into the resources being resolved closes a cycle: it is optional
        # by construction (a required cycle could never be loaded), so it does not count.
        deepest = max((level(n) for n in sorted(needs[collection]) if n not in visiting), default=0)
        visiting.discard(collection)
        order[collection] = deepest + 1
        return order[collection]

    specs = sorted(model, key=_node)
    for spec in specs:
        level(spec.collection)
    rows = [
        {"resource": _node(spec), "order": order[spec.collection], "operations": list(_OPERATIONS)}
        for spec in specs
    ]
    rows.sort(key=lambda row: (row["order"], row["resource"]))
    return rows


def dependencies_graphml(model: ResourceModel) -> str:
    """The dependency graph as GraphML: one node per resource, an edge from each resource to
    every resource that references it."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
        '<graph id="EdFi Dependencies" edgedefault="directed">',
    ]
    lines += [f"<node id={quoteattr(_node(spec))}/>" for spec in sorted(model, key=_node)]
    edges = sorted({(_node(a), _node(b)) for a, b in dependency_edges(model)})
    lines += [f"<edge source={quoteattr(a)} target={quoteattr(b)}/>" for a, b in edges]
    lines += ["</graph>", "</graphml>", ""]
    return "\n".join(lines)


async def dependencies(request: Request) -> Response:
    """``GET /metadata/data/v3/dependencies``: the load order (JSON), or the graph as GraphML
    when the ``Accept`` header asks for ``application/graphml`` or ``text/graphml``."""
    model = app_store(request).model
    accept = request.headers.get("accept", "").lower()
    wanted = next((kind for kind in GRAPHML_TYPES if kind in accept), None)
    if wanted is not None:
        return Response(dependencies_graphml(model), media_type=wanted)
    return FastJSONResponse(load_order(model))


def routes() -> list[BaseRoute]:
    """Discovery and metadata routes (open to everyone)."""
    return [
        Route("/", discovery, methods=["GET"], name="discovery"),
        Route("/metadata/", metadata_list, methods=["GET"], name="metadata"),
        Route(
            "/metadata/data/v3/dependencies",
            dependencies,
            methods=["GET"],
            name="metadata_dependencies",
        ),
        Route(
            "/metadata/data/v3/{section}/swagger.json",
            section_document,
            methods=["GET"],
            name="metadata_section",
        ),
    ]
