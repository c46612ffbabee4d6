"""Ed-Fi-shaped OpenAPI documents (Resources, Descriptors) generated from the loaded ApiSchema."""

from __future__ import annotations

import re
from typing import Any

from tidemark.store import ResourceModel, ResourceSpec

#: The OpenAPI document sections an Ed-Fi client asks for, by URL segment.
SECTIONS = ("resources", "descriptors")
#: What ``x-Ed-Fi-isIdentity`` marks: a member of the natural key.
IDENTITY = "x-Ed-Fi-isIdentity"
_SCALAR_KEYWORDS = (
    "type",
    "format",
    "description",
    "maxLength",
    "minLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "enum",
    "multipleOf",
)
_ID = {"type": "string", "description": "The resource identifier (assigned by the server)."}
_ETAG = {
    "type": "string",
    "description": "A unique system-generated value that identifies the version of the resource.",
}
_LAST_MODIFIED = {
    "type": "string",
    "format": "date-time",
    "description": "The date and time the resource was last modified.",
}
_LINK = {
    "type": "object",
    "properties": {"rel": {"type": "string"}, "href": {"type": "string"}},
}


def schema_prefix(project: str) -> str:
    """The prefix of a project's schema names as ODS/API writes it (``Ed-Fi`` → ``edFi``)."""
    letters = re.sub(r"[^A-Za-z0-9]", "", project)
    return letters[:1].lower() + letters[1:]


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _singular(name: str) -> str:
    for plural, single in (("ies", "y"), ("sses", "ss"), ("uses", "us"), ("xes", "x")):
        if name.endswith(plural):
            return name[: -len(plural)] + single
    return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


class _SchemaBuilder:
    """Turns one resource's ``jsonSchemaForInsert`` into named schemas with ``$ref``s."""

    def __init__(self, model: ResourceModel, schemas: dict[str, Any]) -> None:
        self.model = model
        self.schemas = schemas

    def resource(self, spec: ResourceSpec) -> str:
        prefix = schema_prefix(spec.project)
        name = f"{prefix}_{_camel(spec.resource_name)}"
        references = {
            ref.object_path.text: (schema_prefix(ref.target_project), ref.target)
            for ref in spec.references
        }
        identity = {path.text for path in spec.identity_paths}
        if spec.is_descriptor:
            identity |= {"$.namespace", "$.codeValue"}
        schema = self._object(spec.json_schema, "$", name, prefix, references, identity, False)
        properties = {"id": dict(_ID), **schema["properties"]}
        properties["_etag"] = dict(_ETAG)
        properties["_lastModifiedDate"] = dict(_LAST_MODIFIED)
        schema["properties"] = properties
        self.schemas[name] = schema
        return name

    def _object(
        self,
        source: dict[str, Any],
        path: str,
        stem: str,
        prefix: str,
        references: dict[str, tuple[str, str]],
        identity: set[str],
        is_item: bool,
    ) -> dict[str, Any]:
        required = list(source.get("required", []))
        properties: dict[str, Any] = {}
        for member, child in source.get("properties", {}).items():
            child_path = f"{path}.{member}"
            kind = child.get("type")
            if child_path in references:
                properties[member] = _ref(self._reference(member, child, references[child_path]))
            elif kind == "array":
                item_stem = f"{stem}{member[:1].upper()}{_singular(member[1:])}"
                item = self._object(
                    child.get("items", {}),
                    f"{child_path}[*]",
                    item_stem,
                    prefix,
                    references,
                    identity,
                    True,
                )
                self.schemas[item_stem] = item
                array: dict[str, Any] = {"type": "array", "items": _ref(item_stem)}
                for keyword in ("description", "minItems", "maxItems", "uniqueItems"):
                    if keyword in child:
                        array[keyword] = child[keyword]
                properties[member] = array
            elif kind == "object":
                embedded_stem = f"{stem}{member[:1].upper()}{member[1:]}"
                embedded = self._object(
                    child, child_path, embedded_stem, prefix, references, identity, False
                )
                self.schemas[embedded_stem] = embedded
                properties[member] = _ref(embedded_stem)
            else:
                scalar = {k: child[k] for k in _SCALAR_KEYWORDS if k in child}
                # A collection item's natural key is not in the ApiSchema; its required
                # members are (Ed-Fi items are keyed by what they must carry).
                if child_path in identity or (is_item and member in required):
                    scalar[IDENTITY] = True
                properties[member] = scalar
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        if "description" in source:
            schema["description"] = source["description"]
        if source.get("additionalProperties") is False and not is_item:
            schema["additionalProperties"] = False
        return schema

    def _reference(self, member: str, source: dict[str, Any], target: tuple[str, str]) -> str:
        prefix, target_name = target
        properties: dict[str, Any] = {}
        for name, child in source.get("properties", {}).items():
            properties[name] = {k: child[k] for k in _SCALAR_KEYWORDS if k in child}
            properties[name][IDENTITY] = True
        # Every member of a reference is part of the target's natural key, hence required
        # whenever the reference is given (as ODS/API declares it).
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if properties:
            schema["required"] = list(properties)
        properties["link"] = _ref("link")
        name = f"{prefix}_{_camel(target_name)}Reference"
        existing = self.schemas.get(name)
        if existing is not None and _shape(existing) != _shape(schema):
            # Same target, other members (a role-named reference): name it by its member.
            name = f"{prefix}_{member}"
        self.schemas[name] = schema
        return name


def _shape(schema: dict[str, Any]) -> tuple[Any, ...]:
    members = sorted((k, v.get("type")) for k, v in schema["properties"].items())
    return tuple(members), tuple(sorted(schema.get("required", [])))


def _query_parameter(name: str, kind: str) -> dict[str, Any]:
    types: dict[str, dict[str, Any]] = {
        "number": {"type": "number"},
        "boolean": {"type": "boolean"},
        "date": {"type": "string", "format": "date"},
        "date-time": {"type": "string", "format": "date-time"},
    }
    return {"name": name, "in": "query", "schema": types.get(kind, {"type": "string"})}


def _parameters(max_page_size: int) -> dict[str, dict[str, Any]]:
    def integer(name: str, text: str, **limits: int) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "description": text,
            "schema": {"type": "integer", "format": "int32", **limits},
        }

    return {
        "offset": integer("offset", "How many items to skip before returning results.", minimum=0),
        "limit": integer(
            "limit",
            "The maximum number of items to return (limit/offset paging).",
            minimum=0,
            maximum=max_page_size,
        ),
        "pageToken": {
            "name": "pageToken",
            "in": "query",
            "description": "The token of the page to retrieve, from the Next-Page-Token header of "
            "the previous page or from the partitions endpoint. Cannot be used with offset.",
            "schema": {"type": "string"},
        },
        "pageSize": integer(
            "pageSize",
            "The maximum number of items in the page (cursor paging, with pageToken).",
            minimum=0,
            maximum=max_page_size,
        ),
        "minChangeVersion": {
            "name": "minChangeVersion",
            "in": "query",
            "description": "Used in synchronization to set sequence minimum ChangeVersion.",
            "schema": {"type": "integer", "format": "int64"},
        },
        "maxChangeVersion": {
            "name": "maxChangeVersion",
            "in": "query",
            "description": "Used in synchronization to set sequence maximum ChangeVersion.",
            "schema": {"type": "integer", "format": "int64"},
        },
        "totalCount": {
            "name": "totalCount",
            "in": "query",
            "description": "Return the number of matching items in the Total-Count header.",
            "schema": {"type": "boolean", "default": False},
        },
        "number": integer(
            "number", "How many partitions to split the items into.", minimum=1, maximum=200
        ),
        "id": {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        "If-Match": {"name": "If-Match", "in": "header", "schema": {"type": "string"}},
        "If-None-Match": {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
    }


def _ok(
    description: str, schema: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    if headers:
        response["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return response


#: Responses every operation shares, defined once under ``components.responses``.
_RESPONSES = {
    "BadRequest": {"description": "Bad Request: see the problem document for the details."},
    "Unauthorized": {"description": "Unauthorized: the bearer token is missing or invalid."},
    "NotFound": {"description": "Not Found."},
    "Conflict": {"description": "Conflict: a reference does not resolve, or is still used."},
    "Gone": {"description": "Gone: the change-version window is no longer retained."},
}


def _response(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _parameter(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


_ERRORS = {"400": _response("BadRequest"), "401": _response("Unauthorized")}
_ERRORS_404 = {**_ERRORS, "404": _response("NotFound")}


def _paths(spec: ResourceSpec, schema_name: str) -> tuple[dict[str, Any], str]:
    base = f"/{spec.project_endpoint}/{spec.endpoint}"
    tags = [spec.endpoint]
    key = f"{schema_name}_key"
    fields = [_query_parameter(qf.name, qf.type) for qf in spec.query_fields.values()]
    paging = [_parameter(n) for n in ("offset", "limit", "minChangeVersion", "maxChangeVersion")]
    feed = [*paging, _parameter("totalCount")]
    listing = [*paging[:2], _parameter("pageToken"), _parameter("pageSize"), *paging[2:]]
    many = {"type": "array", "items": _ref(schema_name)}
    return {
        base: {
            "get": {
                "tags": tags,
                "operationId": f"get{spec.resource_name}s",
                "summary": "Retrieves resources by their property values (the Get pattern).",
                "parameters": [*listing, _parameter("totalCount"), *fields],
                "responses": {
                    "200": _ok(
                        "The matching resources.",
                        many,
                        {
                            "Total-Count": "The number of matching items (with totalCount=true).",
                            "Next-Page-Token": "The pageToken of the next page while items remain.",
                        },
                    ),
                    **_ERRORS,
                },
            },
            "post": {
                "tags": tags,
                "operationId": f"post{spec.resource_name}",
                "summary": "Creates or updates a resource by its natural key.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(schema_name)}},
                },
                "responses": {
                    "200": _ok("Updated.", headers={"Location": "The URL of the resource."}),
                    "201": _ok("Created.", headers={"Location": "The URL of the resource."}),
                    "409": _response("Conflict"),
                    **_ERRORS,
                },
            },
        },
        f"{base}/{{id}}": {
            "get": {
                "tags": tags,
                "operationId": f"get{spec.resource_name}ById",
                "parameters": [_parameter("id"), _parameter("If-None-Match")],
                "responses": {"200": _ok("The resource.", _ref(schema_name)), **_ERRORS_404},
            },
            "put": {
                "tags": tags,
                "operationId": f"put{spec.resource_name}",
                "parameters": [_parameter("id"), _parameter("If-Match")],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(schema_name)}},
                },
                "responses": {"204": {"description": "Updated."}, **_ERRORS_404},
            },
            "delete": {
                "tags": tags,
                "operationId": f"delete{spec.resource_name}ById",
                "parameters": [_parameter("id"), _parameter("If-Match")],
                "responses": {
                    "204": {"description": "Deleted."},
                    "409": _response("Conflict"),
                    **_ERRORS_404,
                },
            },
        },
        f"{base}/deletes": {
            "get": {
                "tags": tags,
                "operationId": f"deletes{spec.resource_name}s",
                "summary": "Retrieves deleted resources based on change version.",
                "parameters": feed,
                "responses": {
                    "200": _ok(
                        "The deletions.",
                        {"type": "array", "items": _ref(f"{schema_name}_delete")},
                    ),
                    "410": _response("Gone"),
                    **_ERRORS,
                },
            }
        },
        f"{base}/keyChanges": {
            "get": {
                "tags": tags,
                "operationId": f"keyChanges{spec.resource_name}s",
                "summary": "Retrieves natural-key changes based on change version.",
                "parameters": feed,
                "responses": {
                    "200": _ok(
                        "The key changes.",
                        {"type": "array", "items": _ref(f"{schema_name}_keyChange")},
                    ),
                    "410": _response("Gone"),
                    **_ERRORS,
                },
            }
        },
        f"{base}/partitions": {
            "get": {
                "tags": tags,
                "operationId": f"get{spec.resource_name}sPartitions",
                "summary": "Retrieves page tokens for parallel cursor paging.",
                "parameters": [_parameter("number"), *paging[2:], *fields],
                "responses": {
                    "200": _ok(
                        "The page tokens.",
                        {
                            "type": "object",
                            "properties": {
                                "pageTokens": {"type": "array", "items": {"type": "string"}}
                            },
                        },
                    ),
                    **_ERRORS,
                },
            }
        },
    }, key


def _change_schemas(spec: ResourceSpec, schema_name: str, key: str) -> dict[str, Any]:
    names = list(spec.key_values({}))
    key_schema = {"type": "object", "properties": {n: {} for n in names}}
    number = {"type": "integer", "format": "int64"}
    return {
        key: key_schema,
        f"{schema_name}_delete": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "changeVersion": number,
                "keyValues": _ref(key),
            },
        },
        f"{schema_name}_keyChange": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "changeVersion": number,
                "oldKeyValues": _ref(key),
                "newKeyValues": _ref(key),
            },
        },
    }


def edfi_openapi_document(
    model: ResourceModel, section: str, *, data_root: str = "/data/v3", max_page_size: int = 500
) -> dict[str, Any]:
    """The OpenAPI 3.0 document of one section (``resources`` or ``descriptors``) of ``model``,
    shaped as ODS/API 7.x serves it: ``paths`` relative to ``data_root``, top-level ``tags``,
    named schemas (``edFi_student``, ``edFi_schoolReference``,
    ``edFi_studentSchoolAssociationAlternativeGraduationPlan`` …) with ``$ref``s, ``required``,
    types and ``x-Ed-Fi-isIdentity`` on the members of natural keys. Deterministic.
    """
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}")
    descriptors = section == "descriptors"
    schemas: dict[str, Any] = {"link": dict(_LINK)}
    builder = _SchemaBuilder(model, schemas)
    paths: dict[str, Any] = {}
    tags = []
    for spec in sorted(model, key=lambda s: (s.project_endpoint, s.endpoint)):
        if spec.is_descriptor != descriptors:
            continue
        name = builder.resource(spec)
        resource_paths, key = _paths(spec, name)
        paths.update(resource_paths)
        schemas.update(_change_schemas(spec, name, key))
        text = spec.json_schema.get("description") or f"The {spec.resource_name} resource."
        tags.append({"name": spec.endpoint, "description": text})
    return {
        "openapi": "3.0.1",
        "info": {
            "title": f"Ed-Fi {section.title()} (tidemark)",
            "version": "3",
            "description": f"Generated from {model.source}.",
        },
        "servers": [{"url": data_root}],
        "tags": tags,
        "paths": paths,
        "components": {
            "parameters": _parameters(max_page_size),
            "responses": _RESPONSES,
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "oauth2_client_credentials": {
                    "type": "oauth2",
                    "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}},
                }
            },
        },
        "security": [{"oauth2_client_credentials": []}],
    }
