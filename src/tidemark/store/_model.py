"""The resource model: what an Ed-Fi ApiSchema says about each resource and each body, without I/O."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema_rs

from tidemark.core import (
    ConfigurationError,
    DataValidationError,
    MalformedBodyError,
    canonical_bytes,
    canonical_hash,
    parse_json,
)

from ._index import IndexEntry
from ._paths import MISSING, JsonPath, iter_locations, parse_path
from ._query_fields import QueryField, query_fields_of

#: Members that a client may send but that the server owns; removed before validation.
SERVER_MEMBERS = ("id", "_etag", "_lastModifiedDate", "link")

#: The integers the store keeps exactly (and both engines can filter on): signed 64-bit.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: The largest magnitude below which every integer is exact as a double: a number written with
#: a fraction or exponent (``5.0``, ``1e3``) is taken as an integer only up to this size.
_EXACT_DOUBLE_INTEGER = 2**53

_Path = tuple[str | int, ...]


def _path_text(path: _Path) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _is_integer_schema(schema: Mapping[str, Any] | None) -> bool:
    kind = schema.get("type") if schema is not None else None
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind)


def _child_schema(schema: Mapping[str, Any] | None, member: str | int) -> Mapping[str, Any] | None:
    if schema is None:
        return None
    if isinstance(member, int):
        items = schema.get("items")
        return items if isinstance(items, Mapping) else None
    found = schema.get("properties", {}).get(member)
    if found is None:
        extra = schema.get("additionalProperties")
        found = extra if isinstance(extra, Mapping) else None
    return found if isinstance(found, Mapping) else None


def integer_nodes(schema: Mapping[str, Any]) -> frozenset[int]:
    """The ids of the nodes of ``schema`` whose subtree declares an ``integer`` (walked once per
    resource, so a body's walk can skip every member that cannot hold an integer)."""
    found: set[int] = set()
    order: list[Mapping[str, Any]] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(
            child
            for child in (*node.get("properties", {}).values(), node.get("items"))
            if isinstance(child, Mapping)
        )
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            stack.append(extra)
    for node in reversed(order):  # children before their parents
        children = [*node.get("properties", {}).values(), node.get("items")]
        extra = node.get("additionalProperties")
        children.append(extra)
        if _is_integer_schema(node) or any(id(c) in found for c in children if c is not None):
            found.add(id(node))
    return frozenset(found)


def check_numbers(
    schema: Mapping[str, Any], body: Any, *, only: frozenset[int] | None = None
) -> tuple[list[tuple[_Path, int]], dict[str, list[str]]]:
    """The numbers of ``body`` the store cannot keep exactly, and the integral numbers written
    with a fraction or exponent where ``schema`` expects an integer.

    Returns ``(replacements, problems)``: ``replacements`` are ``(path, int)`` for values such
    as ``5.0`` at an ``integer`` location (JSON Schema 2020-12 counts them as integers; they are
    stored as ``5``, never as a float); ``problems`` map JSON paths to messages for integers
    outside the signed 64-bit range, and for integral numbers at ``integer`` locations too
    large to be exact as a double (``1e308``, ``123456789012345678901234567890``). With
    ``only`` (:func:`integer_nodes`) only members that can hold an integer are visited, and
    out-of-range integers elsewhere go unnoticed. Iterative, so any depth is safe.
    """
    replacements: list[tuple[_Path, int]] = []
    problems: dict[str, list[str]] = {}
    stack: list[tuple[Mapping[str, Any] | None, Any, _Path]] = [(schema, body, ())]
    while stack:
        node, value, path = stack.pop()
        if only is not None and (node is None or id(node) not in only):
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                problems.setdefault(_path_text(path), []).append(
                    f"{value} is outside the range of a 64-bit integer "
                    f"({INT64_MIN} to {INT64_MAX})."
                )
        elif isinstance(value, float):
            if _is_integer_schema(node) and value.is_integer():
                if abs(value) <= _EXACT_DOUBLE_INTEGER:
                    replacements.append((path, int(value)))
                else:
                    problems.setdefault(_path_text(path), []).append(
                        f"{value!r} is not an integer this API can store exactly: write integers "
                        f"without a fraction or exponent, between {INT64_MIN} and {INT64_MAX}."
                    )
        elif isinstance(value, dict):
            for member, child in value.items():
                stack.append((_child_schema(node, member), child, (*path, member)))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                stack.append((_child_schema(node, index), child, (*path, index)))
    return replacements, problems


# Canonical JSON text that may hold a number the store cannot keep exactly: an integer of 19 or
# more digits (beyond 64 bits is possible), or a number with a fraction or exponent. A number
# follows ":", "," or "["; a string that happens to look alike only costs a walk of the body.
_LONG_INTEGER = re.compile(rb"[:,\[]-?[0-9]{19}")
_FRACTION = re.compile(rb"[:,\[]-?[0-9]+[.eE]")


def _replaced(body: dict[str, Any], replacements: list[tuple[_Path, int]]) -> dict[str, Any]:
    """A copy of ``body`` with the values at the given paths replaced (containers on those
    paths are copied, the rest shared)."""
    result = dict(body)
    copied: set[_Path] = {()}
    for path, new in replacements:
        container: Any = result
        for depth, step in enumerate(path[:-1]):
            prefix = path[: depth + 1]
            child = container[step]
            if prefix not in copied:
                child = dict(child) if isinstance(child, dict) else list(child)
                container[step] = child
                copied.add(prefix)
            container = child
        container[path[-1]] = new
    return result


def nul_problems(body: Any) -> dict[str, list[str]]:
    """JSON paths of strings (and member names) in ``body`` that contain ``\\u0000``.

    The store refuses them on both engines: PostgreSQL's JSON cannot hold the NUL character, so
    a stored one would make every filtered read of the collection fail. Iterative.
    """
    problems: dict[str, list[str]] = {}
    stack: list[tuple[Any, _Path]] = [(body, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                problems.setdefault(_path_text(path), []).append(
                    "The value contains the NUL character (\\u0000), which is not accepted; "
                    "remove it."
                )
        elif isinstance(value, dict):
            for member, child in value.items():
                if "\x00" in member:
                    problems.setdefault(_path_text((*path, member)), []).append(
                        "The member name contains the NUL character (\\u0000), which is not "
                        "accepted; remove it."
                    )
                stack.append((child, (*path, member)))
        elif isinstance(value, list):
            stack.extend((child, (*path, index)) for index, child in enumerate(value))
    return problems


def _canonical_text(body: Any) -> str:
    """The canonical JSON of ``body``; ``""`` when JSON cannot express it (the validation that
    follows names the offending value)."""
    try:
        return canonical_bytes(body).decode()
    except TypeError:
        return ""


def generic_facts(body: dict[str, Any]) -> Facts:
    """The :class:`Facts` of a body for a generic collection (FHIR, sync): any JSON object
    without NUL characters. Raises :class:`DataValidationError` naming each path with one."""
    facts = Facts.of(None, dict(body))
    if "\\u0000" in facts.text:  # canonical JSON escapes NUL; a match may be a literal "\\u0000"
        problems = nul_problems(body)
        if problems:
            raise DataValidationError(
                "Data validation failed. See 'validationErrors' for details.",
                validation_errors=problems,
            )
    return facts


SAMPLE_MODEL = "sample-api-schema.json"


def referential_id(project: str, resource_name: str, identity: Mapping[str, Any]) -> str:
    """The stable id of a natural key: a hash of the project, resource name and identity values.

    Two documents of one resource with equal identity values have equal referential ids, so the
    store can look up, reference and de-duplicate by natural key with one indexed column.
    """
    return canonical_hash([project, resource_name, sorted(identity.items())])


def descriptor_uri(body: Mapping[str, Any]) -> str:
    """A descriptor's URI ``namespace#codeValue``."""
    return f"{body.get('namespace', '')}#{body.get('codeValue', '')}"


def _descriptor_identity(uri: str) -> dict[str, Any]:
    # Descriptor URIs compare case-insensitively, as in the Ed-Fi ODS/API.
    return {"uri": uri.lower()}


@dataclass(frozen=True, slots=True)
class ReferenceSpec:
    """A reference from one resource to another (possibly inside arrays, possibly role-named)."""

    name: str
    target_project: str
    target: str
    object_path: JsonPath
    fields: tuple[tuple[str, str], ...]
    in_identity: bool

    def identities(self, body: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each present reference object as (location, identity of its target)."""
        if self.object_path.has_wildcard:
            objects: Iterable[tuple[str, Any]] = iter_locations(body, self.object_path)
        else:
            single = self.object_path.value(body)
            objects = () if single is MISSING else ((self.object_path.text, single),)
        for location, obj in objects:
            if not isinstance(obj, dict):
                continue
            identity: dict[str, Any] = {}
            for member, target_path in self.fields:
                if member in obj:
                    identity[target_path] = obj[member]
            if identity:
                yield location, identity

    def rewrite(self, body: Any, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        """Replace, in place, every reference object pointing at ``old`` with ``new`` values."""
        changed = False
        for obj in self.object_path.values(body):
            if not isinstance(obj, dict):
                continue
            if all(
                obj.get(member, MISSING) == old.get(path, MISSING) for member, path in self.fields
            ):
                for member, path in self.fields:
                    if path in new and obj.get(member, MISSING) != new[path]:
                        obj[member] = new[path]
                        changed = True
        return changed


@dataclass(frozen=True, slots=True)
class DescriptorReferenceSpec:
    """A descriptor reference: a URI string at ``path`` naming a document of ``target``."""

    name: str
    target_project: str
    target: str
    path: JsonPath
    in_identity: bool


class ResolvedReference(NamedTuple):
    """One reference found in a body: what it points at, its referential id, and where it is
    (for error messages). Build it with :meth:`of`."""

    target_project: str
    target: str
    identity: dict[str, Any]
    location: str
    referential_id: str

    @classmethod
    def of(
        cls,
        target_project: str,
        target: str,
        identity: dict[str, Any],
        location: str,
        *,
        descriptor: bool = False,
    ) -> ResolvedReference:
        """A reference with its referential id (descriptor URIs compare case-insensitively)."""
        key = _descriptor_identity(str(identity["uri"])) if descriptor else identity
        return cls(
            target_project, target, identity, location, referential_id(target_project, target, key)
        )

    def describe(self) -> str:
        """The target as a reader would write it: ``schoolId=255901`` or the descriptor URI."""
        if set(self.identity) == {"uri"}:
            return str(self.identity["uri"])
        return ", ".join(
            f"{path.rsplit('.', 1)[-1]}={value!r}" for path, value in self.identity.items()
        )


@dataclass
class ResourceSpec:
    """Everything the store needs to know about one resource of the model."""

    project: str
    project_endpoint: str
    resource_name: str
    endpoint: str
    identity_paths: tuple[JsonPath, ...]
    allow_identity_updates: bool
    is_descriptor: bool
    references: tuple[ReferenceSpec, ...]
    descriptor_references: tuple[DescriptorReferenceSpec, ...]
    json_schema: dict[str, Any]
    query_fields: dict[str, QueryField]
    equality_constraints: tuple[tuple[JsonPath, JsonPath], ...]
    superclass: tuple[str, str, JsonPath | None] | None = None
    _validator: Any = field(default=None, repr=False)
    _key_name_cache: tuple[tuple[JsonPath, str], ...] | None = field(default=None, repr=False)
    _integer_nodes: frozenset[int] | None = field(default=None, repr=False)
    _validator_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def collection(self) -> str:
        """The store collection that holds this resource's documents (``ed-fi:sessions``)."""
        return f"{self.project_endpoint}:{self.endpoint}"

    # -- identity --------------------------------------------------------------------------
    def identity(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The natural key values by identity path (descriptors: their lower-cased URI)."""
        if self.is_descriptor:
            return _descriptor_identity(descriptor_uri(body))
        identity: dict[str, Any] = {}
        for path in self.identity_paths:
            value = path.value(body)
            if value is MISSING:
                raise DataValidationError(
                    "Data validation failed. See 'validationErrors' for details.",
                    validation_errors={path.text: [f"{path.leaf} is required."]},
                )
            identity[path.text] = value
        return identity

    def aliases(self, identity: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(project, resource name, identity) under which other documents can reference this one:
        its own, and its superclass's for a subclass (a School is an EducationOrganization)."""
        names = [(self.project, self.resource_name, dict(identity))]
        if self.superclass is not None:
            project, name, super_path = self.superclass
            if super_path is not None and len(identity) == 1:
                names.append((project, name, {super_path.text: next(iter(identity.values()))}))
            else:
                names.append((project, name, dict(identity)))
        return names

    def key_values(
        self, body: Mapping[str, Any], identity: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The natural key as Change Queries report it: query-field names to values.

        ``identity`` (:meth:`identity` of ``body``), when given, saves walking the paths again.
        """
        if self.is_descriptor:
            return {"namespace": body.get("namespace"), "codeValue": body.get("codeValue")}
        values: dict[str, Any] = {}
        for path, name in self._key_names():
            value = path.value(body) if identity is None else identity.get(path.text, MISSING)
            values[name] = None if value is MISSING else value
        return values

    def _key_names(self) -> tuple[tuple[JsonPath, str], ...]:
        # Each identity path with the query-field name it is reported under (computed once).
        names = self._key_name_cache
        if names is None:
            by_path = {qf.paths[0].text: name for name, qf in self.query_fields.items() if qf.paths}
            names = tuple((path, by_path.get(path.text, path.leaf)) for path in self.identity_paths)
            self._key_name_cache = names
        return names

    # -- references --------------------------------------------------------------------------
    def resolve_references(self, body: Mapping[str, Any]) -> list[ResolvedReference]:
        """Every document and descriptor reference in ``body``, de-duplicated by target."""
        found: dict[str, ResolvedReference] = {}
        for spec in self.references:
            for location, identity in spec.identities(body):
                ref = ResolvedReference.of(spec.target_project, spec.target, identity, location)
                found.setdefault(ref.referential_id, ref)
        for dspec in self.descriptor_references:
            if dspec.path.has_wildcard:
                located: Iterable[tuple[str, Any]] = iter_locations(body, dspec.path)
            else:  # most are plain members, often absent: no list building for those
                value = dspec.path.value(body)
                located = () if value is MISSING else ((dspec.path.text, value),)
            for location, value in located:
                if isinstance(value, str):
                    ref = ResolvedReference.of(
                        dspec.target_project,
                        dspec.target,
                        {"uri": value},
                        location,
                        descriptor=True,
                    )
                    found.setdefault(ref.referential_id, ref)
        return list(found.values())

    def rewrite_references(
        self, body: Any, target: tuple[str, str], old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> bool:
        """Rewrite references to ``target`` (project, name) whose values equal ``old``."""
        changed = False
        for spec in self.references:
            if (spec.target_project, spec.target) == target:
                changed |= spec.rewrite(body, old, new)
        return changed

    # -- a body's facts ------------------------------------------------------------------------
    def client_facts(self, body: Any) -> Facts:
        """The :class:`Facts` of a body a client sent, without its server members (``id``,
        ``_etag``, ``_lastModifiedDate``, ``link``).

        Raises :class:`MalformedBodyError` unless ``body`` is a JSON object, and
        :class:`DataValidationError` listing every problem when it is not valid. Integral
        numbers written with a fraction at ``integer`` locations (``5.0``) are stored as
        integers (``5``).
        """
        if not isinstance(body, dict):
            raise MalformedBodyError("The request body must be a JSON object.")
        clean = {k: v for k, v in body.items() if k not in SERVER_MEMBERS}
        replacements = self.validate(clean, text := _canonical_text(clean))
        if replacements:
            clean, text = _replaced(clean, replacements), ""
        return Facts.of(self, clean, text)

    # -- validation --------------------------------------------------------------------------
    def _compiled(self) -> Any:
        with self._validator_lock:
            if self._validator is None:
                self._validator = jsonschema_rs.validator_for(
                    self.json_schema, validate_formats=True
                )
            return self._validator

    def validate(self, body: Mapping[str, Any], text: str | None = None) -> list[tuple[_Path, int]]:
        """Check ``body`` against ``jsonSchemaForInsert``, ``equalityConstraints``, the numbers
        the store can keep exactly (:func:`check_numbers`) and NUL characters
        (:func:`nul_problems`). ``text``: the body's canonical JSON, when already known.

        Raises :class:`DataValidationError` listing every problem by JSON path. Returns the
        integral floats at ``integer`` locations, to be stored as integers.
        """
        validator = self._compiled()
        problems: dict[str, list[str]] = {}
        if not validator.is_valid(body):
            for error in validator.iter_errors(body):
                path, message = _describe(error)
                problems.setdefault(path, []).append(message)
        if text is None:
            text = _canonical_text(body)
        encoded = text.encode()
        replacements: list[tuple[_Path, int]] = []
        found: dict[str, list[str]] = {}
        # The walks run only when the text shows they may find something (see the patterns);
        # no text (a value JSON cannot express, such as an integer beyond 64 bits): walk it all.
        if not encoded or _LONG_INTEGER.search(encoded):
            replacements, found = check_numbers(self.json_schema, body)
        elif _FRACTION.search(encoded):
            if self._integer_nodes is None:
                self._integer_nodes = integer_nodes(self.json_schema)
            replacements, found = check_numbers(self.json_schema, body, only=self._integer_nodes)
        if b"\\u0000" in encoded:
            found = {**found, **nul_problems(body)}
        for path, messages in found.items():
            problems.setdefault(path, []).extend(messages)
        for source, target in self.equality_constraints:
            values = source.values(body) + target.values(body)
            distinct = {canonical_hash(v) for v in values}
            if len(distinct) > 1:
                shown = ", ".join(sorted({repr(v) for v in values}))
                problems.setdefault(source.text, []).append(
                    f"All values supplied for '{source.leaf}' must match. Review all references "
                    f"(including those higher up in the resource's data) and align the following "
                    f"conflicting values: {shown}"
                )
        if problems:
            raise DataValidationError(
                "Data validation failed. See 'validationErrors' for details.",
                validation_errors=problems,
            )
        return replacements


def _describe(error: Any) -> tuple[str, str]:
    location = "$" + "".join(
        f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.instance_path
    )
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        return f"{location}.{kind.property}", f"{kind.property} is required."
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
        names = ", ".join(kind.unexpected)
        return location, f"Unexpected member(s) not allowed here: {names}."
    return location, str(error.message)


@dataclass(slots=True)
class Facts:
    """A body and what the model says about it, computed once (outside the writer, where
    possible): its canonical text, identity, the referential ids of its natural keys (its own
    first) with the resource names they stand for, the key values Change Queries report, the
    references by referential id, and its search-index entries."""

    body: dict[str, Any]
    text: str
    identity: dict[str, Any] = field(default_factory=dict)
    alias_ids: list[str] = field(default_factory=list)
    alias_names: list[str] = field(default_factory=list)
    key_values: str | None = None
    references: dict[str, ResolvedReference] = field(default_factory=dict)
    #: The body's search-index entries, when the store computed them (outside the writer).
    index: frozenset[IndexEntry] | None = None

    @property
    def referential_id(self) -> str | None:
        """The referential id of the body's own natural key (``None`` outside the model)."""
        return self.alias_ids[0] if self.alias_ids else None

    @classmethod
    def of(cls, spec: ResourceSpec | None, body: dict[str, Any], text: str | None = None) -> Facts:
        """The facts of ``body`` as it stands (not validated); ``spec`` ``None`` for a generic
        collection, whose body has only a canonical text (pass ``text`` when already known)."""
        if not text:
            text = canonical_bytes(body).decode()
        if spec is None:
            return cls(body, text)
        identity = spec.identity(body)
        aliases = spec.aliases(identity)
        return cls(
            body,
            text,
            identity,
            [referential_id(p, n, i) for p, n, i in aliases],
            [n for _p, n, _i in aliases],
            canonical_bytes(spec.key_values(body, identity)).decode(),
            {r.referential_id: r for r in spec.resolve_references(body)},
        )


class ResourceModel:
    """All resources of one or more ApiSchema projects, by endpoint and by resource name."""

    def __init__(
        self,
        specs: list[ResourceSpec],
        source: str,
        projects: Mapping[str, str] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.source = source
        #: Project name → version (``{"Ed-Fi": "5.1.0"}``), as the ApiSchema declares them.
        self.projects = dict(projects or {})
        #: The content hash of the ApiSchema (or of the resources, for a model built in code): a
        #: store records it and refuses to open with a different model by accident.
        self.fingerprint = fingerprint or canonical_hash(
            sorted(
                [spec.collection, [p.text for p in spec.identity_paths], spec.json_schema]
                for spec in specs
            )
        )
        self._by_endpoint: dict[tuple[str, str], ResourceSpec] = {}
        self._by_name: dict[tuple[str, str], ResourceSpec] = {}
        self._by_collection: dict[str, ResourceSpec] = {}
        for spec in specs:
            self._by_endpoint[(spec.project_endpoint, spec.endpoint.lower())] = spec
            self._by_name[(spec.project, spec.resource_name)] = spec
            self._by_collection[spec.collection] = spec
        self._project_endpoints = sorted({spec.project_endpoint for spec in specs})

    def __len__(self) -> int:
        return len(self._by_collection)

    def describe(self) -> str:
        """The model in a few words: ``Ed-Fi 5.1.0 from <source> (340 resources)``."""
        projects = ", ".join(f"{name} {version}".strip() for name, version in self.projects.items())
        return f"{projects or 'a model'} from {self.source} ({len(self)} resources)"

    def __iter__(self) -> Iterator[ResourceSpec]:
        return iter(self._by_collection.values())

    @property
    def project_endpoints(self) -> list[str]:
        """The URL names of the projects (``ed-fi``)."""
        return self._project_endpoints

    def find(self, project_endpoint: str, endpoint: str) -> ResourceSpec | None:
        """The resource served at ``/data/{project_endpoint}/{endpoint}`` (case-insensitive)."""
        return self._by_endpoint.get((project_endpoint.lower(), endpoint.lower()))

    def by_name(self, project: str, resource_name: str) -> ResourceSpec | None:
        """The resource with this project and resource name (``Ed-Fi``, ``Session``)."""
        return self._by_name.get((project, resource_name))

    def by_collection(self, collection: str) -> ResourceSpec | None:
        """The resource stored in ``collection`` (``ed-fi:sessions``), if it is a model resource."""
        return self._by_collection.get(collection)

    def dependency_order(self) -> list[ResourceSpec]:
        """Resources ordered so that every resource comes after those it references."""
        ordered: list[ResourceSpec] = []
        state: dict[str, int] = {}
        subclasses: dict[tuple[str, str], list[ResourceSpec]] = {}
        for spec in self:
            if spec.superclass is not None:
                subclasses.setdefault(spec.superclass[:2], []).append(spec)

        def targets(spec: ResourceSpec) -> Iterator[ResourceSpec]:
            keys = [(r.target_project, r.target) for r in spec.references]
            keys += [(d.target_project, d.target) for d in spec.descriptor_references]
            for key in keys:
                found = self._by_name.get(key)
                if found is not None:
                    yield found
                yield from subclasses.get(key, [])

        def visit(spec: ResourceSpec) -> None:
            mark = state.get(spec.collection, 0)
            if mark:
                return
            state[spec.collection] = 1
            for dependency in sorted(targets(spec), key=lambda s: s.collection):
                if dependency is not spec:
                    visit(dependency)
            state[spec.collection] = 2
            ordered.append(spec)

        for spec in sorted(self, key=lambda s: s.collection):
            visit(spec)
        return ordered


def _project_specs(project_endpoint: str, project: dict[str, Any]) -> list[ResourceSpec]:
    project_name = project.get("projectName", project_endpoint)
    specs = []
    for endpoint, raw in project.get("resourceSchemas", {}).items():
        identity_texts = list(raw.get("identityJsonPaths", []))
        identity_set = set(identity_texts)
        references: list[ReferenceSpec] = []
        descriptors: list[DescriptorReferenceSpec] = []
        for name, mapping in raw.get("documentPathsMapping", {}).items():
            if not mapping.get("isReference"):
                continue
            target_project = mapping.get("projectName", project_name)
            if mapping.get("isDescriptor"):
                path = parse_path(mapping["path"])
                descriptors.append(
                    DescriptorReferenceSpec(
                        name,
                        target_project,
                        mapping["resourceName"],
                        path,
                        path.text in identity_set,
                    )
                )
                continue
            pairs = mapping.get("referenceJsonPaths", [])
            if not pairs:
                continue
            ref_paths = [parse_path(p["referenceJsonPath"]) for p in pairs]
            parents = {p.parent.text for p in ref_paths}
            if len(parents) != 1:
                raise ConfigurationError(
                    f"{endpoint}.{name}: reference paths do not share one object: {sorted(parents)}"
                )
            fields = tuple(
                sorted(
                    (rp.leaf, p["identityJsonPath"]) for rp, p in zip(ref_paths, pairs, strict=True)
                )
            )
            references.append(
                ReferenceSpec(
                    name=name,
                    target_project=target_project,
                    target=mapping["resourceName"],
                    object_path=ref_paths[0].parent,
                    fields=fields,
                    in_identity=any(rp.text in identity_set for rp in ref_paths),
                )
            )
        query_fields = query_fields_of(raw)
        superclass = None
        if raw.get("isSubclass") and raw.get("superclassResourceName"):
            super_path = raw.get("superclassIdentityJsonPath")
            superclass = (
                raw.get("superclassProjectName", project_name),
                raw["superclassResourceName"],
                parse_path(super_path) if super_path else None,
            )
        specs.append(
            ResourceSpec(
                project=project_name,
                project_endpoint=project_endpoint.lower(),
                resource_name=raw["resourceName"],
                endpoint=endpoint,
                identity_paths=tuple(parse_path(p) for p in identity_texts),
                allow_identity_updates=bool(raw.get("allowIdentityUpdates")),
                is_descriptor=bool(raw.get("isDescriptor")),
                references=tuple(references),
                descriptor_references=tuple(descriptors),
                json_schema=raw.get("jsonSchemaForInsert") or {"type": "object"},
                query_fields=query_fields,
                equality_constraints=tuple(
                    (parse_path(c["sourceJsonPath"]), parse_path(c["targetJsonPath"]))
                    for c in raw.get("equalityConstraints", [])
                ),
                superclass=superclass,
            )
        )
    return specs


def load_model(
    source: str | Path | Mapping[str, Any] | None = None, *, label: str | None = None
) -> ResourceModel:
    """Load an Ed-Fi ApiSchema (a file path, or the parsed JSON); ``None`` loads the sample model.
    ``label`` names where the model came from (its :meth:`ResourceModel.describe`).

    Raises :class:`ConfigurationError` when the file is missing, not JSON or not an ApiSchema.
    """
    if source is None:
        text = resources.files("tidemark.store").joinpath(SAMPLE_MODEL).read_bytes()
        data, label = parse_json(text), f"tidemark sample model ({SAMPLE_MODEL})"
    elif isinstance(source, Mapping):
        data, label = dict(source), label or "<in-memory ApiSchema>"
    else:
        path = Path(source)
        try:
            data = parse_json(path.read_bytes())
        except OSError as exc:
            raise ConfigurationError(f"cannot read ApiSchema {path}: {exc}") from exc
        except ValueError as exc:
            raise ConfigurationError(f"ApiSchema {path} is not valid JSON: {exc}") from exc
        label = str(path)
    projects = data.get("projectSchemas") if isinstance(data, dict) else None
    if not isinstance(projects, dict) or not projects:
        raise ConfigurationError(f"{label} is not an Ed-Fi ApiSchema: no 'projectSchemas'")
    specs: list[ResourceSpec] = []
    versions: dict[str, str] = {}
    try:
        for project_endpoint, project in projects.items():
            specs.extend(_project_specs(project_endpoint, project))
            versions[project.get("projectName", project_endpoint)] = str(
                project.get("projectVersion", "")
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigurationError(f"{label}: malformed ApiSchema ({exc!r})") from exc
    return ResourceModel(specs, label, versions, canonical_hash(data))
