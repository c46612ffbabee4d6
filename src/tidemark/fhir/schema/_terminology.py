"""ValueSet expansion over the ValueSets and CodeSystems of loaded packages, for bindings."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: Finds a ValueSet or CodeSystem by canonical URL (``url`` or ``url|version``), or ``None``.
ResourceLookup = Callable[[str], Mapping[str, Any] | None]
Codes = frozenset[tuple[str, str]]

#: CodeSystem.content values that list every code of the system.
_COMPLETE = frozenset({"complete"})


class Terminology:
    """Answers whether a code is in a ValueSet, expanding ValueSets from their definitions.

    Expansion follows ``compose``: ``include``/``exclude`` by explicit ``concept`` lists, by
    whole CodeSystems (when the CodeSystem is loaded and ``content`` is ``complete``), by
    ``is-a`` / ``descendent-of`` / ``=`` filters on a loaded CodeSystem's hierarchy, and by
    other ``valueSet`` imports; a stored ``expansion`` is used when there is no compose. Anything
    else (an external system such as SNOMED CT or LOINC, a filter on a property) makes the
    ValueSet unknown: :meth:`contains` then answers ``None`` and the caller does not judge.
    Thread-safe; expansions are cached.
    """

    def __init__(self, lookup: ResourceLookup) -> None:
        self._lookup = lookup
        self._cache: dict[str, Codes | None] = {}
        self._lock = threading.Lock()

    def expand(self, url: str) -> Codes | None:
        """Every ``(system, code)`` of the ValueSet at ``url``, or ``None`` when not knowable."""
        with self._lock:
            if url in self._cache:
                return self._cache[url]
        codes = self._expand(url, frozenset())
        with self._lock:
            self._cache[url] = codes
        return codes

    def contains(self, url: str, system: str | None, code: str) -> bool | None:
        """Whether ``code`` (of ``system``, or of any system when ``None``) is in the ValueSet;
        ``None`` when the ValueSet cannot be expanded from the loaded packages."""
        codes = self.expand(url)
        if codes is None:
            return None
        if system is None:
            return any(c == code for _s, c in codes)
        return (system, code) in codes

    # -- expansion -------------------------------------------------------------------------------
    def _find(self, url: str) -> Mapping[str, Any] | None:
        found = self._lookup(url)
        if found is None and "|" in url:
            found = self._lookup(url.split("|", 1)[0])
        return found

    def _expand(self, url: str, visiting: frozenset[str]) -> Codes | None:
        if url in visiting:
            return None
        value_set = self._find(url)
        if value_set is None or value_set.get("resourceType") != "ValueSet":
            return None
        compose = value_set.get("compose")
        if not isinstance(compose, Mapping):
            expansion = value_set.get("expansion")
            if isinstance(expansion, Mapping):
                return frozenset(_expansion_codes(expansion.get("contains")))
            return None
        inner = visiting | {url}
        included: set[tuple[str, str]] = set()
        for part in compose.get("include") or ():
            codes = self._part(part, inner)
            if codes is None:
                return None
            included |= codes
        for part in compose.get("exclude") or ():
            codes = self._part(part, inner)
            if codes is None:
                return None
            included -= codes
        return frozenset(included)

    def _part(self, part: Any, visiting: frozenset[str]) -> Codes | None:
        if not isinstance(part, Mapping):
            return None
        system = part.get("system")
        result: set[tuple[str, str]] | None = None
        if isinstance(system, str):
            version = part.get("version")
            concepts = part.get("concept")
            filters = part.get("filter")
            if isinstance(concepts, list):
                result = {
                    (system, c["code"])
                    for c in concepts
                    if isinstance(c, Mapping) and isinstance(c.get("code"), str)
                }
            else:
                code_system = self._code_system(system, version)
                if code_system is None:
                    return None
                if isinstance(filters, list) and filters:
                    result = _filtered(system, code_system, filters)
                    if result is None:
                        return None
                elif code_system.get("content") in _COMPLETE:
                    result = {(system, code) for code in _all_codes(code_system.get("concept"))}
                else:
                    return None
        for imported in part.get("valueSet") or ():
            if not isinstance(imported, str):
                return None
            codes = self._expand(imported, visiting)
            if codes is None:
                return None
            result = set(codes) if result is None else result & codes
        return frozenset(result) if result is not None else None

    def _code_system(self, system: str, version: Any) -> Mapping[str, Any] | None:
        found = self._find(f"{system}|{version}" if isinstance(version, str) else system)
        if found is None or found.get("resourceType") != "CodeSystem":
            return None
        return found


def _expansion_codes(contains: Any) -> Iterable[tuple[str, str]]:
    for item in contains if isinstance(contains, list) else ():
        if not isinstance(item, Mapping):
            continue
        if isinstance(item.get("system"), str) and isinstance(item.get("code"), str):
            yield item["system"], item["code"]
        yield from _expansion_codes(item.get("contains"))


def _all_codes(concepts: Any) -> Iterable[str]:
    for concept in concepts if isinstance(concepts, list) else ():
        if isinstance(concept, Mapping) and isinstance(concept.get("code"), str):
            yield concept["code"]
            yield from _all_codes(concept.get("concept"))


def _subtree(concepts: Any, code: str) -> list[Mapping[str, Any]] | None:
    """The concept ``code`` and everything below it in a CodeSystem hierarchy."""
    for concept in concepts if isinstance(concepts, list) else ():
        if not isinstance(concept, Mapping):
            continue
        if concept.get("code") == code:
            return [concept]
        found = _subtree(concept.get("concept"), code)
        if found is not None:
            return found
    return None


def _filtered(
    system: str, code_system: Mapping[str, Any], filters: list[Any]
) -> set[tuple[str, str]] | None:
    codes: set[str] | None = None
    for item in filters:
        if not isinstance(item, Mapping) or item.get("property") != "concept":
            return None
        op, value = item.get("op"), item.get("value")
        if not isinstance(value, str):
            return None
        top = _subtree(code_system.get("concept"), value)
        if top is None:
            return None
        if op == "is-a":
            selected = set(_all_codes(top))
        elif op == "descendent-of":
            selected = set(_all_codes(top[0].get("concept")))
        elif op == "=":
            selected = {value}
        else:
            return None
        codes = selected if codes is None else codes & selected
    return {(system, code) for code in codes or ()}
