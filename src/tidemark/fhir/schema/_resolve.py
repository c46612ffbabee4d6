"""Resolving FHIRSchemas by canonical URL: type URLs, dependencies, and a package-backed resolver."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from tidemark.core import Counters, get_logger
from tidemark.fhir.packages import FhirPackage, PackageSet

from ._convert import FHIRSchema, convert

_log = get_logger("fhir.schema")

#: A schema resolver: canonical URL (optionally ``url|version``) → FHIRSchema, or ``None``.
#: It must be safe to call from several threads; the validator never mutates what it returns.
SchemaResolver = Callable[[str], FHIRSchema | None]

FHIR_BASE = "http://hl7.org/fhir/StructureDefinition/"


def type_url(type_code: str) -> str:
    """The canonical URL of a FHIRSchema ``type`` (``HumanName`` → its core StructureDefinition).

    Absolute type codes (logical models, ``urn:`` URLs) are returned unchanged.
    """
    if "://" in type_code or type_code.startswith("urn:"):
        return type_code
    return FHIR_BASE + type_code


def _walk_elements(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    elements = node.get("elements")
    if isinstance(elements, Mapping):
        for element in elements.values():
            if isinstance(element, Mapping):
                yield element
                yield from _walk_elements(element)
                yield from _walk_slices(element)


def _walk_slices(element: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    slicing = element.get("slicing")
    slices = slicing.get("slices") if isinstance(slicing, Mapping) else None
    if isinstance(slices, Mapping):
        for node in slices.values():
            schema = node.get("schema") if isinstance(node, Mapping) else None
            if isinstance(schema, Mapping):
                yield schema
                yield from _walk_elements(schema)
                yield from _walk_slices(schema)


def schema_dependencies(schema: Mapping[str, Any]) -> list[str]:
    """Canonical URLs a schema depends on, sorted: its base, the types of its elements, the
    extensions it uses (``url``), reference targets (``refers``) and element references.

    The schema's own URL is left out. Use it to invalidate dependents when a definition changes.
    """
    found: set[str] = set()
    base = schema.get("base")
    if isinstance(base, str):
        found.add(base)
    for element in _walk_elements(schema):
        element_type = element.get("type")
        if isinstance(element_type, str) and element_type:
            found.add(type_url(element_type))
        url = element.get("url")
        if isinstance(url, str) and "://" in url:
            found.add(url)
        refers = element.get("refers")
        if isinstance(refers, list):
            found.update(r for r in refers if isinstance(r, str))
        reference = element.get("elementReference")
        if isinstance(reference, list) and reference and isinstance(reference[0], str):
            found.add(reference[0])
    extensions = schema.get("extensions")
    if isinstance(extensions, Mapping):
        for extension in extensions.values():
            url = extension.get("url") if isinstance(extension, Mapping) else None
            if isinstance(url, str) and "://" in url:
                found.add(url)
    own = schema.get("url")
    found.discard(own if isinstance(own, str) else "")
    return sorted(found)


class PackageSchemaResolver:
    """A :data:`SchemaResolver` over loaded packages: converts each StructureDefinition on first
    use and keeps the result in memory (unbounded; the schema store in ``tidemark.schemas`` is
    the bounded, persistent one).

    Thread-safe. Returned schemas are shared: do not modify them. ``counters`` holds
    ``conversions``, ``hits`` and ``misses`` (unknown URLs).
    """

    def __init__(self, packages: PackageSet | FhirPackage | Iterable[FhirPackage]) -> None:
        if isinstance(packages, PackageSet):
            self.packages = packages
        elif isinstance(packages, FhirPackage):
            self.packages = PackageSet([packages])
        else:
            self.packages = PackageSet(packages)
        self._schemas: dict[str, FHIRSchema | None] = {}
        self._lock = threading.Lock()
        self.counters = Counters("conversions", "hits", "misses")

    def __call__(self, url: str) -> FHIRSchema | None:
        if url in self._schemas:
            cached = self._schemas[url]
            self.counters.increment("hits" if cached is not None else "misses")
            return cached
        resource = self.packages.resource(url)
        if resource is None or resource.get("resourceType") != "StructureDefinition":
            schema = None
            self.counters.increment("misses")
        else:
            schema = convert(resource)
            self.counters.increment("conversions")
            _log.debug("schema converted", url=url)
        with self._lock:
            return self._schemas.setdefault(url, schema)

    def urls(self) -> list[str]:
        """Canonical URLs of every StructureDefinition the packages define."""
        return [entry.url for _, entry in self.packages.structure_definitions() if entry.url]
