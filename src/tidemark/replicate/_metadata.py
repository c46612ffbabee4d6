"""The replica's resource model read from the source's OpenAPI metadata (the Resources and
Descriptors documents an ODS/API, a Data Management Service or a tidemark lists under
``urls.openApiMetadata``), when no ApiSchema is given.

What the documents say, and how it becomes the model:

- every ``/{project}/{endpoint}`` path is a resource; its schema is the one its POST takes (or its
  GET lists); the schema's name (``edFi_session``) gives the project (``edFi`` is ``Ed-Fi`` of
  the discovery's data models) and the resource name (``Session``); the Descriptors document's
  resources are descriptors;
- a member whose schema carries a ``link`` is a reference (``edFi_schoolReference``); its target
  is named by that schema, or, for a role-named one, by the longest ending of its name that is a
  resource (``graduationSchoolYearTypeReference`` → ``SchoolYearType``); a target that is no
  resource is abstract (``EducationOrganization``);
- a string member whose name ends in ``Descriptor`` refers to the descriptor resource its name
  ends with;
- a resource's natural key is what its references carry: each member of the reference schemas
  that target it is found in its own body, at the top level or inside one of its objects (a
  member named ``programEducationOrganizationId`` is ``programReference.educationOrganizationId``).
  A resource nothing references is keyed by its ``x-Ed-Fi-isIdentity`` members and the members of
  its required references;
- an abstract target with one member (``educationOrganizationId``) has as subclasses the
  resources keyed by one ``<resourceName>Id`` of the same type; one with several members has the
  resources keyed by exactly those members;
- the GET parameters that are not paging parameters are the query fields.

Neither an ODS/API's nor tidemark's metadata says which resources allow identity updates: the
model allows none (a replica follows the source's key changes regardless).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tidemark.core import ModelMismatchError, TidemarkError, get_logger
from tidemark.store import ResourceModel, load_model

from ._source import EdFiSource

log = get_logger("replicate")

#: The sections of the metadata that describe resources.
_SECTIONS = ("resources", "descriptors")
#: Members the server owns, never part of the model's bodies.
_SERVER_MEMBERS = frozenset({"id", "_etag", "_lastModifiedDate", "link"})
#: GET parameters that page or filter by change version, not query fields.
_NOT_FIELDS = frozenset(
    {
        "offset",
        "limit",
        "pagetoken",
        "pagesize",
        "minchangeversion",
        "maxchangeversion",
        "totalcount",
        "number",
        "id",
        "if-none-match",
        "if-match",
        "use-snapshot",
        "snapshot-identifier",
    }
)
_KEPT_KEYWORDS = ("type", "format", "description")


async def source_model(source: EdFiSource) -> ResourceModel:
    """The resource model the source's OpenAPI metadata describes (the bundled sample model when
    the metadata describes exactly its resources, keys and references, so that ``tidemark
    serve`` opens the replica without options); a :class:`ModelMismatchError` when the metadata
    cannot be read or describes no resource."""
    discovery = source.discovery or await source.discover()
    where = discovery.metadata
    try:
        listing = (await source.get(where, authorized=False)).body
        rows = listing if isinstance(listing, list) else []
        wanted = [
            str(row["endpointUri"])
            for row in rows
            if isinstance(row, dict)
            and str(row.get("name", "")).lower() in _SECTIONS
            and row.get("endpointUri")
        ]
        documents = [(await source.get(url, authorized=False)).body for url in wanted]
    except TidemarkError as error:
        raise ModelMismatchError(
            f"cannot read the source's OpenAPI metadata at {where} ({error}); "
            "pass --api-schema with the source's ApiSchema"
        ) from error
    schema = api_schema_from_openapi(
        [d for d in documents if isinstance(d, dict)], discovery.data_models
    )
    if not any(p["resourceSchemas"] for p in schema["projectSchemas"].values()):
        raise ModelMismatchError(
            f"the source's OpenAPI metadata at {where} describes no resource; "
            "pass --api-schema with the source's ApiSchema"
        )
    model = load_model(schema, label=f"the OpenAPI metadata of {source.base_url}")
    sample = load_model()
    if _outline(model) == _outline(sample) and model.projects == sample.projects:
        model = sample
    log.info("model read from the source's metadata", model=model.describe())
    return model


def _outline(model: ResourceModel) -> dict[str, Any]:
    """What a replica relies on in a model: per resource, its key, references and descriptors."""
    return {
        spec.collection: (
            spec.is_descriptor,
            sorted(p.text for p in spec.identity_paths),
            sorted((r.target, r.object_path.text, r.fields) for r in spec.references),
            sorted((d.target, d.path.text) for d in spec.descriptor_references),
            None if spec.superclass is None else spec.superclass[:2],
        )
        for spec in model
    }


def _upper(name: str) -> str:
    return name[:1].upper() + name[1:]


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _letters(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


class _Schemas:
    """The named schemas of the documents, with ``$ref`` resolution."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named

    @staticmethod
    def name_of(node: Any) -> str | None:
        if isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            return str(node["$ref"]).rsplit("/", 1)[-1]
        if isinstance(node, Mapping):
            for key in ("allOf", "oneOf", "anyOf"):
                for part in node.get(key) or ():
                    found = _Schemas.name_of(part)
                    if found is not None:
                        return found
        return None

    def resolve(self, node: Any, depth: int = 0) -> dict[str, Any]:
        """``node`` with its ``$ref`` (and a single ``allOf`` part) resolved."""
        if depth > 32 or not isinstance(node, Mapping):
            return {}
        if "$ref" in node:
            return self.resolve(self.named.get(self.name_of(node) or "", {}), depth + 1)
        if "allOf" in node and "properties" not in node:
            merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
            for part in node["allOf"]:
                resolved = self.resolve(part, depth + 1)
                merged["properties"].update(resolved.get("properties") or {})
                merged["required"] += list(resolved.get("required") or [])
            return merged
        return dict(node)

    def is_reference(self, node: Any) -> bool:
        """Whether a member's schema is an Ed-Fi reference (an object carrying a ``link``)."""
        resolved = self.resolve(node)
        return resolved.get("type", "object") == "object" and "link" in (
            resolved.get("properties") or {}
        )

    def plain(self, node: Any, depth: int = 0) -> dict[str, Any]:
        """A self-contained JSON Schema of what a body may hold: structure, types and required
        members, ``$ref``s inlined, server members left out (the source validated the rest)."""
        resolved = self.resolve(node)
        out = {k: resolved[k] for k in _KEPT_KEYWORDS if k in resolved}
        properties = resolved.get("properties")
        if isinstance(properties, Mapping) and depth < 32:
            out.setdefault("type", "object")
            out["properties"] = {
                name: self.plain(child, depth + 1)
                for name, child in properties.items()
                if name not in _SERVER_MEMBERS and not name.startswith("x-")
            }
            required = [r for r in resolved.get("required") or [] if r in out["properties"]]
            if required:
                out["required"] = required
        if "items" in resolved and depth < 32:
            out["items"] = self.plain(resolved["items"], depth + 1)
        return out


def _resource_schemas(
    documents: Sequence[Mapping[str, Any]],
) -> tuple[_Schemas, dict[tuple[str, str], tuple[str, bool, list[Any]]]]:
    """The named schemas, and each resource path ``(project, endpoint)`` with its schema name,
    whether it is a descriptor, and its GET parameters."""
    named: dict[str, Any] = {}
    found: dict[tuple[str, str], tuple[str, bool, list[Any]]] = {}
    for document in documents:
        components = document.get("components") or {}
        named.update(components.get("schemas") or document.get("definitions") or {})
    parameters: dict[str, Any] = {}
    for document in documents:
        components = document.get("components") or {}
        parameters.update(components.get("parameters") or document.get("parameters") or {})
        descriptors = "descriptor" in str((document.get("info") or {}).get("title", "")).lower()
        for path, operations in (document.get("paths") or {}).items():
            parts = str(path).strip("/").split("/")
            if len(parts) != 2 or "{" in path or not isinstance(operations, Mapping):
                continue
            name = _operation_schema(operations)
            if name is None:
                continue
            is_descriptor = descriptors or (
                parts[1].endswith("Descriptors") and name.endswith("Descriptor")
            )
            listing = (operations.get("get") or {}).get("parameters") or []
            resolved = [
                parameters.get(_Schemas.name_of(p) or "", {}) if "$ref" in p else p
                for p in listing
                if isinstance(p, Mapping)
            ]
            found[(parts[0].lower(), parts[1])] = (name, is_descriptor, resolved)
    return _Schemas(named), found


def _operation_schema(operations: Mapping[str, Any]) -> str | None:
    post = operations.get("post") or {}
    body = post.get("requestBody") or {}
    for content in (body.get("content") or {}).values():
        name = _Schemas.name_of(content.get("schema"))
        if name is not None:
            return name
    for parameter in post.get("parameters") or []:  # Swagger 2: a body parameter
        if isinstance(parameter, Mapping) and parameter.get("in") == "body":
            name = _Schemas.name_of(parameter.get("schema"))
            if name is not None:
                return name
    ok = ((operations.get("get") or {}).get("responses") or {}).get("200") or {}
    schemas = [c.get("schema") for c in (ok.get("content") or {}).values()]
    schemas.append(ok.get("schema"))
    for schema in schemas:
        if isinstance(schema, Mapping) and isinstance(schema.get("items"), Mapping):
            name = _Schemas.name_of(schema["items"])
            if name is not None:
                return name
    return None


class _Reference:
    def __init__(self, path: str, member: str, target: str, members: list[str]) -> None:
        self.path = path  # the reference object's JSON path
        self.member = member
        self.target = target
        self.members = members


def _walk(
    schemas: _Schemas, node: Any, path: str, depth: int = 0
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every member of a body schema, depth first: ``(path of the member, its name, its
    resolved schema)``."""
    resolved = schemas.resolve(node)
    if depth > 16:
        return
    for name, child in (resolved.get("properties") or {}).items():
        if name in _SERVER_MEMBERS:
            continue
        member = schemas.resolve(child)
        here = f"{path}.{name}"
        yield here, name, member
        if member.get("type") == "array":
            yield from _walk(schemas, member.get("items"), f"{here}[*]", depth + 1)
        elif "properties" in member:
            yield from _walk(schemas, member, here, depth + 1)


def _target(name: str, candidates: Mapping[str, Any], *, whole: bool = False) -> str | None:
    """The longest ending of ``name`` (at a capital letter) that names one of ``candidates``,
    compared without case (``cteProgramServiceDescriptor`` is ``CTEProgramServiceDescriptor``);
    only ``name`` itself when ``whole``."""
    lowered = {key.lower(): key for key in candidates}
    upper = _upper(name)
    starts = [0] if whole else [0, *(i for i, c in enumerate(upper) if c.isupper() and i > 0)]
    for start in starts:
        found = lowered.get(upper[start:].lower())
        if found is not None:
            return found
    return None


def _shape(schema: Mapping[str, Any]) -> list[str]:
    return sorted(m for m in schema.get("properties") or {} if m not in _SERVER_MEMBERS)


def _identity_paths(
    members: Sequence[str],
    scalars: Mapping[str, str],
    objects: Mapping[str, list[str]],
    required: set[str],
) -> list[str]:
    """Where a body holds each member of its references' schemas: ``scalars`` are its top-level
    scalar members (name → path), ``objects`` its top-level objects (name → their members); of
    several objects holding a member, the required ones (a key is never optional)."""
    held = {o: m for o, m in objects.items() if o in required}
    if held:
        objects = {**held, **{o: m for o, m in objects.items() if o not in required}}
    paths: list[str] = []
    claimed: set[str] = set()
    plain: list[str] = []
    for member in members:
        if member in scalars:
            paths.append(scalars[member])
            continue
        prefixed = [
            f"$.{owner}.{inner}"
            for owner, inner_members in objects.items()
            for inner in inner_members
            if member != inner
            and member.endswith(_upper(inner))
            and owner.startswith(member[: -len(inner)])
        ]
        if prefixed:
            paths.append(prefixed[0])
            claimed.add(prefixed[0])
        else:
            plain.append(member)
    for member in plain:
        found = [
            owner
            for owner, inner_members in objects.items()
            if member in inner_members and f"$.{owner}.{member}" not in claimed
        ]
        if any(owner in required for owner in found):
            found = [owner for owner in found if owner in required]
        paths += [f"$.{owner}.{member}" for owner in found]
    return sorted(set(paths))


def _member_for(path: str, members: Sequence[str]) -> str | None:
    """The reference member that carries the identity value at ``path`` of the target."""
    steps = path[2:].split(".")
    leaf = steps[-1]
    if len(steps) > 1:
        owner = steps[-2].removesuffix("Reference")
        for member in members:
            stem = member[: -len(leaf)] if member.endswith(_upper(leaf)) else ""
            if member != leaf and stem and owner.startswith(stem):
                return member
    return leaf if leaf in members else None


def _field_type(schema: Mapping[str, Any]) -> str:
    kind, fmt = schema.get("type"), schema.get("format")
    if kind in ("integer", "number"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if fmt in ("date", "date-time"):
        return str(fmt)
    return "string"


def api_schema_from_openapi(
    documents: Sequence[Mapping[str, Any]], data_models: Mapping[str, str]
) -> dict[str, Any]:
    """An Ed-Fi ApiSchema (what :func:`tidemark.store.load_model` reads) built from OpenAPI
    documents as the module docstring describes; ``data_models`` are the discovery's project
    names and versions. Deterministic: the same documents give the same ApiSchema."""
    schemas, paths = _resource_schemas(documents)
    by_prefix = {_letters(name): name for name in data_models}
    projects: dict[str, dict[str, Any]] = {}
    resources: dict[str, dict[str, Any]] = {}  # resource name → what is known of it
    for (project_endpoint, endpoint), (name, is_descriptor, parameters) in sorted(paths.items()):
        prefix, _sep, camel = name.partition("_")
        if not camel:
            prefix, camel = project_endpoint, name
        project = by_prefix.get(_letters(prefix), by_prefix.get(_letters(project_endpoint)))
        project = project or project_endpoint
        resources[_upper(camel)] = {
            "project": project,
            "project_endpoint": project_endpoint,
            "endpoint": endpoint,
            "schema": schemas.named.get(name) or {},
            "is_descriptor": is_descriptor,
            "parameters": parameters,
        }
    descriptors = {n for n, r in resources.items() if r["is_descriptor"]}
    concrete = {n: r for n, r in resources.items() if not r["is_descriptor"]}

    # References of every resource, and the members each target is referenced by.
    references: dict[str, list[_Reference]] = {}
    descriptor_paths: dict[str, list[tuple[str, str]]] = {}
    members_of: dict[str, set[str]] = {}
    member_types: dict[str, dict[str, str]] = {}
    for name, info in resources.items():
        found: list[_Reference] = []
        described: list[tuple[str, str]] = []
        for path, member, child in _walk(schemas, info["schema"], "$"):
            if any(path.startswith(f"{ref.path}.") for ref in found):
                continue  # a member of a reference
            raw = _find_raw(schemas, info["schema"], path)
            if schemas.is_reference(raw):
                inner = [m for m in (child.get("properties") or {}) if m not in _SERVER_MEMBERS]
                target = _reference_target(schemas, raw, member, child, concrete)
                found.append(_Reference(path, member, target, sorted(inner)))
                members_of.setdefault(target, set()).update(inner)
                for inner_name, inner_schema in (child.get("properties") or {}).items():
                    kinds = member_types.setdefault(target, {})
                    kinds.setdefault(inner_name, str(schemas.resolve(inner_schema).get("type")))
            elif child.get("type") == "string" and member.endswith("Descriptor"):
                descriptor = _target(member, dict.fromkeys(descriptors))
                if descriptor is not None:
                    described.append((path, descriptor))
        references[name] = found
        descriptor_paths[name] = described

    identity: dict[str, list[str]] = {}
    scalar_types: dict[str, dict[str, str]] = {}
    for name, info in concrete.items():
        top = schemas.resolve(info["schema"]).get("properties") or {}
        scalars: dict[str, str] = {}
        objects: dict[str, list[str]] = {}
        marked: list[str] = []
        for member, raw in top.items():
            if member in _SERVER_MEMBERS:
                continue
            child = schemas.resolve(raw)
            if "properties" in child:
                objects[member] = [m for m in child["properties"] if m not in _SERVER_MEMBERS]
            elif child.get("type") != "array":
                scalars[member] = f"$.{member}"
                if raw.get("x-Ed-Fi-isIdentity") or child.get("x-Ed-Fi-isIdentity"):
                    marked.append(member)
        required = set(schemas.resolve(info["schema"]).get("required") or [])
        scalar_types[name] = {
            m: str(schemas.resolve(top[m]).get("type")) for m in scalars if m in top
        }
        if name in members_of:
            identity[name] = _identity_paths(sorted(members_of[name]), scalars, objects, required)
        else:  # nothing references it: its marked members and required references
            paths_found = [scalars[m] for m in marked]
            for ref in references[name]:
                owner = ref.path[2:]
                if owner in required:
                    paths_found += [f"{ref.path}.{m}" for m in ref.members]
            identity[name] = sorted(set(paths_found))

    # Abstract targets: their identity and their subclasses.
    abstract: dict[str, list[str]] = {}
    superclass: dict[str, tuple[str, str | None]] = {}
    for target in sorted(set(members_of) - set(resources)):
        members = sorted(members_of[target])
        if len(members) == 1:
            [member] = members
            abstract[target] = [f"$.{member}"]
            kind = member_types.get(target, {}).get(member)
            for name in sorted(concrete):
                own = f"{_camel(name)}Id"
                if (
                    identity[name] == [f"$.{own}"]
                    and member.endswith("Id")
                    and scalar_types[name].get(own) == kind
                ):
                    superclass[name] = (target, f"$.{member}")
            continue
        for name in sorted(concrete):
            mapped = [_member_for(p, members) for p in identity[name]]
            if identity[name] and None not in mapped and set(mapped) == set(members):
                abstract.setdefault(target, identity[name])
                superclass[name] = (target, None)
        abstract.setdefault(target, [f"$.{m}" for m in members])

    for name, info in sorted(resources.items()):
        project_endpoint = info["project_endpoint"]
        entry = projects.setdefault(
            project_endpoint,
            {
                "projectName": info["project"],
                "projectVersion": data_models.get(info["project"], ""),
                "isExtensionProject": False,
                "abstractResources": {},
                "resourceSchemas": {},
            },
        )
        mapping: dict[str, Any] = {}
        for ref in references[name]:
            target_paths = identity.get(ref.target) or abstract.get(ref.target) or []
            pairs: list[dict[str, str]] = []
            for target_path in target_paths:
                carried = _member_for(target_path, ref.members)
                if carried is None:
                    pairs = []
                    break
                pairs.append(
                    {"identityJsonPath": target_path, "referenceJsonPath": f"{ref.path}.{carried}"}
                )
            if not pairs:
                log.warning(
                    "a reference of the source's metadata does not match its target's key; "
                    "kept as a plain object",
                    resource=name,
                    reference=ref.path,
                    target=ref.target,
                )
                continue
            holder = resources.get(ref.target)
            mapping[ref.path] = {
                "isReference": True,
                "isDescriptor": False,
                "projectName": holder["project"] if holder else info["project"],
                "resourceName": ref.target,
                "referenceJsonPaths": pairs,
            }
        for path, target in descriptor_paths[name]:
            mapping[path] = {
                "isReference": True,
                "isDescriptor": True,
                "path": path,
                "projectName": resources[target]["project"],
                "resourceName": target,
            }
        fields = _query_fields(schemas, info, mapping)
        raw_schema: dict[str, Any] = {
            "resourceName": name,
            "isDescriptor": info["is_descriptor"],
            "allowIdentityUpdates": False,
            "identityJsonPaths": [] if info["is_descriptor"] else identity.get(name, []),
            "documentPathsMapping": mapping,
            "queryFieldMapping": fields,
            "jsonSchemaForInsert": schemas.plain(info["schema"]),
        }
        if name in superclass:
            parent, parent_path = superclass[name]
            raw_schema.update(
                {
                    "isSubclass": True,
                    "superclassProjectName": info["project"],
                    "superclassResourceName": parent,
                    "superclassIdentityJsonPath": parent_path,
                }
            )
        entry["resourceSchemas"][info["endpoint"]] = raw_schema
    for target, target_paths in abstract.items():
        for entry in projects.values():
            entry["abstractResources"][target] = {"identityJsonPaths": target_paths}
    return {"projectSchemas": projects}


def _reference_target(
    schemas: _Schemas,
    raw: Any,
    member: str,
    resolved: Mapping[str, Any],
    concrete: Mapping[str, Any],
) -> str:
    """The resource a reference points to: the one its schema is named after
    (``edFi_schoolReference``); for a role-named schema whose members differ from the target's
    own reference schema (``edFi_graduationSchoolYearTypeReference``), the resource its name
    ends with; else the abstract resource it is named after."""
    named = schemas.name_of(raw) or ""
    prefix, _sep, stem = named.partition("_")
    stem = (stem or member).removesuffix("Reference")
    found = _target(stem, concrete, whole=True)
    if found is not None:
        return found
    for candidate in (stem, member.removesuffix("Reference")):
        target = _target(candidate, concrete)
        if target is None:
            continue
        own = schemas.named.get(f"{prefix}_{_camel(target)}Reference")
        if own is not None and _shape(schemas.resolve(own)) != _shape(resolved):
            return target
    return _upper(stem)


def _find_raw(schemas: _Schemas, root: Any, path: str) -> Any:
    """The unresolved schema of the member at ``path`` (``$.a[*].b``) of ``root``."""
    node: Any = root
    for step in path[2:].split("."):
        array = step.endswith("[*]")
        name = step.removesuffix("[*]")
        node = (schemas.resolve(node).get("properties") or {}).get(name)
        if array:
            node = schemas.resolve(node).get("items")
    return node


def _query_fields(
    schemas: _Schemas, info: Mapping[str, Any], mapping: Mapping[str, Any]
) -> dict[str, list[dict[str, str]]]:
    """The resource's query fields: each GET parameter that is not a paging one, at the scalar
    members (outside arrays) whose name it is."""
    scalars: dict[str, list[str]] = {}
    for path, member, child in _walk(schemas, info["schema"], "$"):
        if "[*]" in path or "properties" in child or child.get("type") == "array":
            continue
        scalars.setdefault(member, []).append(path)
    fields: dict[str, list[dict[str, str]]] = {}
    for parameter in info["parameters"]:
        name = str(parameter.get("name", ""))
        if parameter.get("in") != "query" or name.lower() in _NOT_FIELDS:
            continue
        found = scalars.get(name)
        if not found:
            continue
        kind = _field_type(parameter.get("schema") or parameter)
        fields[name] = [{"path": path, "type": kind} for path in sorted(found)]
    return fields
