"""An OpenAPI 3.1 document of the whole server, generated from the loaded resource model (the
data routes in the Data Management Service layout; the ODS/API layout ``/data/v3`` is the same)."""

from __future__ import annotations

from typing import Any

from tidemark import __version__
from tidemark.store import ResourceModel, ResourceSpec

_QUERY_TYPES: dict[str, dict[str, Any]] = {
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "date-time": {"type": "string", "format": "date-time"},
    "time": {"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}:[0-9]{2}$"},
    "string": {"type": "string"},
}

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem_responses(*codes: int) -> dict[str, Any]:
    texts = {
        304: "Not modified",
        400: "Bad request (validation or parameters)",
        401: "Unauthorized",
        404: "Not found",
        409: "Conflict (unresolved reference, dependent items, duplicate identity)",
        410: "Gone (changes no longer retained)",
        412: "Precondition failed (optimistic lock)",
        413: "Payload too large",
        415: "Unsupported media type",
    }
    out: dict[str, Any] = {}
    for code in codes:
        if code == 304:
            out["304"] = {"description": texts[304]}
        else:
            out[str(code)] = {
                "description": texts[code],
                "content": {"application/problem+json": {"schema": _PROBLEM}},
            }
    return out


def _insert_schema(spec: ResourceSpec) -> dict[str, Any]:
    schema = {k: v for k, v in spec.json_schema.items() if k != "$schema"}
    properties = dict(schema.get("properties", {}))
    # Clients may echo what the server returned; the server ignores these members.
    properties.setdefault("id", {"type": "string"})
    properties.setdefault("_etag", {"type": "string"})
    properties.setdefault("_lastModifiedDate", {"type": "string"})
    schema["properties"] = properties
    return schema


def _representation_schema(name: str) -> dict[str, Any]:
    return {
        "allOf": [
            {"$ref": f"#/components/schemas/{name}"},
            {
                "type": "object",
                "required": ["id", "_etag", "_lastModifiedDate"],
                "properties": {
                    "id": {"type": "string"},
                    "_etag": {"type": "string"},
                    "_lastModifiedDate": {"type": "string", "format": "date-time"},
                },
            },
        ]
    }


def _paths_for(spec: ResourceSpec, max_page_size: int) -> dict[str, Any]:
    name = f"{spec.project_endpoint.replace('-', '_')}_{spec.resource_name}"
    base = f"/data/{spec.project_endpoint}/{spec.endpoint}"
    ref = {"$ref": f"#/components/schemas/{name}"}
    representation = {"$ref": f"#/components/schemas/{name}_representation"}
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}
    if_none_match = {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
    }
    list_params: list[dict[str, Any]] = [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 0, "maximum": max_page_size},
        },
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "totalCount", "in": "query", "schema": {"type": "boolean"}},
    ]
    window_params: list[dict[str, Any]] = [
        {"name": "minChangeVersion", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "maxChangeVersion", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    ]
    feed_params = list_params + window_params
    field_params = [
        {"name": qf.name, "in": "query", "schema": _QUERY_TYPES.get(qf.type, {"type": "string"})}
        for qf in spec.query_fields.values()
    ]
    cursor_params: list[dict[str, Any]] = [
        {"name": "pageToken", "in": "query", "schema": {"type": "string"}},
        {
            "name": "pageSize",
            "in": "query",
            "schema": {"type": "integer", "minimum": 0, "maximum": max_page_size},
        },
    ]
    list_params = feed_params + cursor_params + field_params
    tag = [spec.endpoint]
    return {
        base: {
            "get": {
                "operationId": f"get_{name}",
                "tags": tag,
                "summary": f"List {spec.resource_name} documents",
                "parameters": list_params,
                "responses": {
                    "200": {
                        "description": "A page of documents",
                        "headers": {
                            "Total-Count": {"schema": {"type": "integer"}},
                            "Next-Page-Token": {"schema": {"type": "string"}},
                        },
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": representation}
                            }
                        },
                    },
                    **_problem_responses(400, 401, 404),
                },
            },
            "post": {
                "operationId": f"post_{name}",
                "tags": tag,
                "summary": f"Create or update a {spec.resource_name} by its natural key",
                "parameters": [if_none_match],
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
                "responses": {
                    "200": {"description": "Updated (or unchanged)"},
                    "201": {"description": "Created"},
                    **_problem_responses(400, 401, 404, 409, 412, 413, 415),
                },
            },
        },
        f"{base}/{{id}}": {
            "get": {
                "operationId": f"get_{name}_by_id",
                "tags": tag,
                "parameters": [id_param, if_none_match],
                "responses": {
                    "200": {
                        "description": "The document",
                        "content": {"application/json": {"schema": representation}},
                    },
                    **_problem_responses(304, 401, 404),
                },
            },
            "put": {
                "operationId": f"put_{name}",
                "tags": tag,
                "parameters": [id_param, if_match, if_none_match],
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
                "responses": {
                    "204": {"description": "Replaced"},
                    **_problem_responses(400, 401, 404, 409, 412, 413, 415),
                },
            },
            "delete": {
                "operationId": f"delete_{name}",
                "tags": tag,
                "parameters": [id_param, if_match],
                "responses": {
                    "204": {"description": "Deleted"},
                    **_problem_responses(401, 404, 409, 412),
                },
            },
        },
        f"{base}/deletes": {
            "get": {
                "operationId": f"get_{name}_deletes",
                "tags": tag,
                "summary": f"Deleted {spec.resource_name} documents in a change-version window",
                "parameters": feed_params,
                "responses": {
                    "200": {
                        "description": "Deletions",
                        "content": {"application/json": {"schema": {"type": "array"}}},
                    },
                    **_problem_responses(400, 401, 404, 410),
                },
            }
        },
        f"{base}/partitions": {
            "get": {
                "operationId": f"get_{name}_partitions",
                "tags": tag,
                "summary": f"Page tokens splitting {spec.resource_name} documents for parallel walks",
                "parameters": [
                    {
                        "name": "number",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                    *window_params,
                    *field_params,
                ],
                "responses": {
                    "200": {
                        "description": "Page tokens",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_problem_responses(400, 401, 404, 410),
                },
            }
        },
        f"{base}/keyChanges": {
            "get": {
                "operationId": f"get_{name}_key_changes",
                "tags": tag,
                "summary": f"Natural-key changes of {spec.resource_name} documents in a window",
                "parameters": feed_params,
                "responses": {
                    "200": {
                        "description": "Key changes",
                        "content": {"application/json": {"schema": {"type": "array"}}},
                    },
                    **_problem_responses(400, 401, 404, 410),
                },
            }
        },
        f"{base}/{{id}}/history": {
            "get": {
                "operationId": f"get_{name}_history",
                "tags": tag,
                "parameters": [id_param],
                "responses": {
                    "200": {
                        "description": "Previous representations, newest first",
                        "content": {"application/json": {"schema": {"type": "array"}}},
                    },
                    **_problem_responses(401, 404),
                },
            }
        },
    }


def openapi_document(
    model: ResourceModel, *, max_page_size: int = 500, server_url: str = "/"
) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the data API for ``model`` (deterministic output)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "correlationId": {"type": "string"},
                "validationErrors": {"type": "object"},
                "errors": {"type": "array", "items": {"type": "string"}},
            },
        }
    }
    for spec in sorted(model, key=lambda s: s.collection):
        name = f"{spec.project_endpoint.replace('-', '_')}_{spec.resource_name}"
        schemas[name] = _insert_schema(spec)
        schemas[f"{name}_representation"] = _representation_schema(name)
        paths.update(_paths_for(spec, max_page_size))
    paths["/changeQueries/v1/availableChangeVersions"] = {
        "get": {
            "operationId": "get_available_change_versions",
            "tags": ["changeQueries"],
            "responses": {
                "200": {
                    "description": "The oldest and newest change versions",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["oldestChangeVersion", "newestChangeVersion"],
                                "properties": {
                                    "oldestChangeVersion": {"type": "integer"},
                                    "newestChangeVersion": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                **_problem_responses(401),
            },
        }
    }
    paths["/health"] = {
        "get": {
            "operationId": "get_health",
            "tags": ["operation"],
            "responses": {
                "200": {"description": "Healthy"},
                "503": {"description": "Database unreachable"},
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidemark data API",
            "version": __version__,
            "description": f"Generated from {model.source}.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": schemas},
    }
