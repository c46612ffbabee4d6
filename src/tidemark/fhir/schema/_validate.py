"""Validate a FHIR resource (JSON) against FHIRSchemas: its type, base chain, profiles, extensions.

A value is validated against the *set* of schema elements that apply to it at once: the
element definitions of every schema on the path (base type, profiles, slices), plus the
schemas of their types and base types. An element is known when any of them defines it; every
one of them contributes its constraints. See ``docs/fhirschema-decisions.md`` for the list of
checks and the invariants evaluated.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidemark.core import Counters, get_logger
from tidemark.fhir.fhirpath import PRIMITIVE_TYPES, FhirPathUnsupported, evaluate_invariant

from ._outcome import Severity, ValidationIssue, ValidationResult
from ._primitives import check_primitive
from ._resolve import FHIR_BASE, SchemaResolver, type_url
from ._terminology import Terminology

_log = get_logger("fhir.schema")

_ABSTRACT_RESOURCES = frozenset(("Resource", "DomainResource"))
_RESOURCE_NAME = re.compile(r"[A-Z][A-Za-z]+")
_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")

Element = Mapping[str, Any]


def _is_absolute(url: str) -> bool:
    return "://" in url or url.startswith("urn:")


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def matches_pattern(value: Any, pattern: Any) -> bool:
    """FHIR pattern semantics: every part of ``pattern`` is present in ``value``; a pattern
    array item must match some item of the value array; primitives compare equal."""
    if isinstance(pattern, Mapping):
        return isinstance(value, Mapping) and all(
            key in value and matches_pattern(value[key], part) for key, part in pattern.items()
        )
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return len(pattern) == 1 and matches_pattern(value, pattern[0])
        return all(any(matches_pattern(v, p) for v in value) for p in pattern)
    return _json_equal(value, pattern)


@dataclass
class _Run:
    """State of one validation: issues so far, and the resources around the current node."""

    issues: list[ValidationIssue] = field(default_factory=list)
    root: Mapping[str, Any] | None = None
    resource: Mapping[str, Any] | None = None

    def add(self, severity: Severity, code: str, message: str, path: str) -> None:
        self.issues.append(ValidationIssue(severity, code, message, path))

    def error(self, code: str, message: str, path: str) -> None:
        self.add("error", code, message, path)


class Validator:
    """Validates resources against FHIRSchemas found through a :data:`SchemaResolver`.

    Thread-safe (the schema chains it caches are read-only). ``counters`` holds
    ``validations``, ``invariants_evaluated`` and ``invariants_skipped`` (expressions outside
    the supported FHIRPath subset), ``bindings_checked`` and ``bindings_unchecked`` (required
    bindings whose ValueSet ``terminology`` cannot expand).

    With ``terminology``, codes under a ``required`` binding must be in the bound ValueSet: a
    ``code`` by its value, a ``Coding`` by system and code, a ``CodeableConcept`` by at least one
    of its codings (one without codings is not judged).
    """

    def __init__(
        self,
        resolver: SchemaResolver,
        *,
        invariants: bool = True,
        terminology: Terminology | None = None,
    ) -> None:
        self.resolver = resolver
        self.invariants = invariants
        self.terminology = terminology
        self._chains: dict[str, list[Mapping[str, Any]]] = {}
        self._lock = threading.Lock()
        self.counters = Counters(
            "validations",
            "invariants_evaluated",
            "invariants_skipped",
            "bindings_checked",
            "bindings_unchecked",
        )

    # ----- schema lookup -------------------------------------------------------------------

    def _resolve(self, url: str) -> Mapping[str, Any] | None:
        schema = self.resolver(url)
        if schema is None and "|" in url:
            schema = self.resolver(url.split("|", 1)[0])
        return schema

    def chain(self, url: str) -> list[Mapping[str, Any]]:
        """The schema at ``url`` followed by its base schemas (empty when ``url`` is unknown)."""
        cached = self._chains.get(url)
        if cached is not None:
            return cached
        result: list[Mapping[str, Any]] = []
        seen: set[str] = set()
        current: str | None = url
        while current and current not in seen:
            seen.add(current)
            schema = self._resolve(current)
            if schema is None:
                break
            result.append(schema)
            base = schema.get("base")
            current = base if isinstance(base, str) else None
        with self._lock:
            self._chains[url] = result
        return result

    def _is_primitive(self, type_code: str) -> bool:
        chain = self.chain(type_url(type_code))
        if chain:
            return chain[0].get("kind") == "primitive-type"
        return type_code in PRIMITIVE_TYPES

    def _element_at(self, reference: Sequence[Any]) -> Element | None:
        if not reference or not isinstance(reference[0], str):
            return None
        node: Any = self._resolve(reference[0])
        for step in reference[1:]:
            node = node.get(step) if isinstance(node, Mapping) else None
        return node if isinstance(node, Mapping) else None

    def _expand(self, defs: Sequence[Element]) -> list[Element]:
        """``defs`` plus the schemas of their types (with base chains) and element references."""
        result: list[Element] = []
        seen: set[int] = set()
        queue = list(defs)
        while queue:
            item = queue.pop(0)
            if id(item) in seen:
                continue
            seen.add(id(item))
            result.append(item)
            element_type = item.get("type")
            if isinstance(element_type, str) and element_type:
                queue.extend(self.chain(type_url(element_type)))
            reference = item.get("elementReference")
            if isinstance(reference, list):
                target = self._element_at(reference)
                if target is not None:
                    queue.append(target)
        return result

    def _profile_type(self, url: str) -> str | None:
        if url.startswith(FHIR_BASE) and "/" not in url[len(FHIR_BASE) :]:
            return url[len(FHIR_BASE) :].split("|", 1)[0]
        chain = self.chain(url)
        kind = chain[0].get("type") if chain else None
        return kind if isinstance(kind, str) else None

    def element_repeats(self, resource_type: str, names: Sequence[str]) -> bool | None:
        """Whether the element reached by ``names`` from a ``resource_type`` root (e.g.
        ``["name", "given"]``) is an array; ``None`` when the schemas do not define it."""
        defs: list[Element] = list(self.chain(type_url(resource_type)))
        for position, name in enumerate(names):
            found = [
                elements[name]
                for definition in self._expand(defs)
                if isinstance(elements := definition.get("elements"), Mapping)
                and isinstance(elements.get(name), Mapping)
            ]
            if not found:
                return None
            if position == len(names) - 1:
                return any(bool(item.get("array")) for item in found)
            defs = found
        return None

    # ----- entry point ---------------------------------------------------------------------

    def validate(self, resource: Any, *, profiles: Sequence[str] = ()) -> ValidationResult:
        """Validate ``resource`` against its type, the profiles in ``meta.profile`` and
        ``profiles``. Never raises for bad input: problems are issues of the result."""
        self.counters.increment("validations")
        run = _Run()
        if isinstance(resource, Mapping):
            run.root = resource
            resource_type = resource.get("resourceType")
            path = resource_type if isinstance(resource_type, str) else "$"
            self._validate_resource(run, resource, path, profiles, ())
        else:
            run.error("structure", "a resource must be a JSON object", "$")
        return ValidationResult(tuple(run.issues))

    # ----- resources -----------------------------------------------------------------------

    def _validate_resource(
        self,
        run: _Run,
        resource: Mapping[str, Any],
        path: str,
        profiles: Sequence[str],
        extra: Sequence[Element],
    ) -> None:
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str):
            run.error("structure", "resource has no resourceType", path)
            return
        chain = self.chain(type_url(resource_type))
        if not chain or chain[0].get("kind") != "resource":
            run.error("structure", f"unknown resource type {resource_type!r}", path)
            return
        schemas: list[Element] = [*chain, *extra]
        meta = resource.get("meta")
        claimed = meta.get("profile") if isinstance(meta, Mapping) else None
        wanted = [p for p in (claimed if isinstance(claimed, list) else []) if isinstance(p, str)]
        for profile in [*wanted, *profiles]:
            profile_chain = self.chain(profile)
            if not profile_chain:
                run.add(
                    "warning",
                    "not-found",
                    f"profile {profile} is not known; the resource was not checked against it",
                    path,
                )
                continue
            if profile_chain[0].get("type") != resource_type:
                run.error(
                    "structure",
                    f"profile {profile} is for {profile_chain[0].get('type')}, not {resource_type}",
                    path,
                )
                continue
            schemas.extend(profile_chain)
        outer = run.resource
        run.resource = resource
        try:
            self._validate_object(run, resource, self._expand(schemas), path, is_resource=True)
            self._resource_invariants(run, resource, path)
        finally:
            run.resource = outer

    def _resource_invariants(self, run: _Run, resource: Mapping[str, Any], path: str) -> None:
        """dom-2..dom-6 (root constraints of DomainResource, not carried in FHIRSchema)."""
        resource_id = resource.get("id")
        if isinstance(resource_id, str) and not _ID.fullmatch(resource_id):
            run.error("value", f"{resource_id!r} is not a valid id", f"{path}.id")
        contained = resource.get("contained")
        if not isinstance(contained, list):
            contained = []
        references = _references(resource)
        for index, item in enumerate(contained):
            if not isinstance(item, Mapping):
                continue
            where = f"{path}.contained[{index}]"
            if item.get("contained"):
                run.error(
                    "invariant", "dom-2: a contained resource SHALL NOT contain resources", where
                )
            meta = item.get("meta")
            if isinstance(meta, Mapping) and ("versionId" in meta or "lastUpdated" in meta):
                run.error(
                    "invariant",
                    "dom-4: a contained resource SHALL NOT have meta.versionId or meta.lastUpdated",
                    where,
                )
            if isinstance(meta, Mapping) and meta.get("security"):
                run.error(
                    "invariant",
                    "dom-5: a contained resource SHALL NOT have a security label",
                    where,
                )
            item_id = item.get("id")
            if (
                isinstance(item_id, str)
                and f"#{item_id}" not in references
                and "#" not in _references(item)
            ):
                run.error(
                    "invariant",
                    "dom-3: a contained resource SHALL be referenced from elsewhere in the "
                    "resource or refer to the containing resource",
                    where,
                )
        text = resource.get("text")
        is_domain = resource.get("resourceType") not in ("Bundle", "Parameters", "Binary")
        if is_domain and not (isinstance(text, Mapping) and text.get("div")):
            run.add(
                "warning",
                "invariant",
                "dom-6: a resource should have narrative for robust management",
                path,
            )

    # ----- values --------------------------------------------------------------------------

    def _validate_value(self, run: _Run, value: Any, defs: Sequence[Element], path: str) -> None:
        declared = [d["type"] for d in defs if isinstance(d.get("type"), str) and d["type"]]
        if any(t in _ABSTRACT_RESOURCES for t in declared):
            if not isinstance(value, Mapping):
                run.error("structure", "a resource must be a JSON object", path)
                return
            constraints = [d for d in defs if d.get("type") not in _ABSTRACT_RESOURCES]
            self._validate_resource(run, value, path, (), [_without_type(d) for d in constraints])
            return
        expanded = self._expand(defs)
        for definition in expanded:
            if "fixed" in definition:
                fixed = definition["fixed"]
                expected = fixed.get("value") if isinstance(fixed, Mapping) else fixed
                if not _json_equal(value, expected):
                    run.error("value", f"value must be exactly {_show(expected)}", path)
            if "pattern" in definition:
                pattern = definition["pattern"]
                expected = pattern.get("value") if isinstance(pattern, Mapping) else pattern
                if not matches_pattern(value, expected):
                    run.error("value", f"value must match the pattern {_show(expected)}", path)
        primitive = next((t for t in declared if self._is_primitive(t)), None)
        if primitive is not None:
            problem = check_primitive(primitive, value)
            if problem:
                run.error("value", problem, path)
                return
        elif not isinstance(value, Mapping):
            kind = declared[0] if declared else "an element"
            run.error("structure", f"expected an object ({kind}), found {_json_kind(value)}", path)
            return
        else:
            self._validate_object(run, value, expanded, path, is_resource=False)
            if any(t == "Reference" for t in declared):
                self._check_reference(run, value, defs, path)
        if self.terminology is not None:
            self._check_bindings(run, value, defs, declared, path)
        self._check_invariants(run, value, expanded, path, primitive)

    def _validate_object(
        self,
        run: _Run,
        value: Mapping[str, Any],
        expanded: Sequence[Element],
        path: str,
        *,
        is_resource: bool,
        has_value: bool = False,
    ) -> None:
        known: dict[str, list[Element]] = {}
        for definition in expanded:
            elements = definition.get("elements")
            if isinstance(elements, Mapping):
                for name, element in elements.items():
                    if isinstance(element, Mapping):
                        known.setdefault(name, []).append(element)
        if not is_resource and not has_value and not (set(value) - {"id"}):
            run.error("invariant", "ele-1: an element must have a value or children", path)
        for key, child in value.items():
            if key == "resourceType" and is_resource:
                continue
            if key.startswith("_"):
                name = key[1:]
                if name not in known:
                    run.error("structure", f"unknown element {key!r}", f"{path}.{key}")
                elif name not in value:
                    self._validate_primitive_extension(run, child, f"{path}.{key}")
                continue
            defs = known.get(key)
            if not defs:
                run.error("structure", f"unknown element {key!r}", f"{path}.{key}")
                continue
            self._check_choice_allowed(run, key, defs, known, f"{path}.{key}")
            self._validate_property(
                run, key, child, value.get("_" + key), defs, path=f"{path}.{key}"
            )
        self._check_presence(run, value, expanded, known, path)

    def _check_choice_allowed(
        self,
        run: _Run,
        key: str,
        defs: Sequence[Element],
        known: Mapping[str, Sequence[Element]],
        path: str,
    ) -> None:
        choice = next((d["choiceOf"] for d in defs if isinstance(d.get("choiceOf"), str)), None)
        if choice is None:
            return
        for declaration in known.get(choice, ()):
            allowed = declaration.get("choices")
            if isinstance(allowed, list) and key not in allowed:
                run.error(
                    "structure",
                    f"{key} is not allowed here (allowed: {', '.join(allowed)})",
                    path,
                )
                return

    def _present(
        self, value: Mapping[str, Any], name: str, known: Mapping[str, Sequence[Element]]
    ) -> list[str]:
        """The keys of ``value`` that realise element ``name`` (a choice has several names)."""
        keys = [k for k in (name, "_" + name) if value.get(k) is not None]
        if keys:
            return keys
        return [key for key in value if any(d.get("choiceOf") == name for d in known.get(key, ()))]

    def _check_presence(
        self,
        run: _Run,
        value: Mapping[str, Any],
        expanded: Sequence[Element],
        known: Mapping[str, Sequence[Element]],
        path: str,
    ) -> None:
        required: dict[str, None] = {}
        excluded: dict[str, None] = {}
        for definition in expanded:
            for name in definition.get("required") or ():
                required.setdefault(name)
            for name in definition.get("excluded") or ():
                excluded.setdefault(name)
        for name in required:
            if not self._present(value, name, known):
                run.error("required", f"missing required element {name!r}", f"{path}.{name}")
        for name in excluded:
            for key in self._present(value, name, known):
                run.error("structure", f"element {key!r} is prohibited here", f"{path}.{key}")
        choices: dict[str, list[str]] = {}
        for key in value:
            for definition in known.get(key, ()):
                choice = definition.get("choiceOf")
                if isinstance(choice, str):
                    choices.setdefault(choice, [])
                    if key not in choices[choice]:
                        choices[choice].append(key)
                    break
        for choice, keys in choices.items():
            if len(keys) > 1:
                run.error(
                    "structure",
                    f"only one of {', '.join(keys)} may be present ({choice}[x])",
                    f"{path}.{keys[1]}",
                )

    def _validate_property(
        self,
        run: _Run,
        key: str,
        value: Any,
        extension_value: Any,
        defs: Sequence[Element],
        *,
        path: str,
    ) -> None:
        if value is None:
            if extension_value is None:
                run.error("structure", "null is not a valid value", path)
            return
        is_array = any(d.get("array") for d in defs)
        if not is_array:
            if isinstance(value, list):
                run.error("structure", f"{key} must be a single value, not an array", path)
                return
            self._validate_value(run, value, defs, path)
            if extension_value is not None:
                self._validate_primitive_extension(
                    run, extension_value, f"{path[: -len(key)]}_{key}", has_value=True
                )
            return
        if not isinstance(value, list):
            run.error("structure", f"{key} must be an array", path)
            return
        if not value:
            run.error("structure", "an array must not be empty", path)
            return
        for definition in defs:
            low, high = definition.get("min"), definition.get("max")
            if isinstance(low, int) and len(value) < low:
                run.error(
                    "structure", f"{key} needs at least {low} item(s), found {len(value)}", path
                )
            if isinstance(high, int) and len(value) > high:
                run.error(
                    "structure", f"{key} allows at most {high} item(s), found {len(value)}", path
                )
        extra_defs = self._slice_items(run, value, defs, path)
        extensions = extension_value if isinstance(extension_value, list) else []
        is_extension = key in ("extension", "modifierExtension")
        for index, item in enumerate(value):
            where = f"{path}[{index}]"
            item_defs = [*defs, *extra_defs.get(index, ())]
            if item is None:
                if index >= len(extensions) or extensions[index] is None:
                    run.error("structure", "null is not a valid value", where)
                continue
            if is_extension and isinstance(item, Mapping):
                item_defs += self._extension_definition(
                    run, item, where, modifier=key == "modifierExtension"
                )
            self._validate_value(run, item, item_defs, where)
        prefix = path[: -len(key)]
        for index, extension in enumerate(extensions):
            if extension is not None:
                has_value = index < len(value) and value[index] is not None
                self._validate_primitive_extension(
                    run, extension, f"{prefix}_{key}[{index}]", has_value=has_value
                )

    def _validate_primitive_extension(
        self, run: _Run, value: Any, path: str, *, has_value: bool = False
    ) -> None:
        """``_name`` (id and extensions of a primitive); ele-1 counts the primitive's value."""
        if not isinstance(value, Mapping):
            found = _json_kind(value)
            run.error("structure", f"expected an object with id/extension, found {found}", path)
            return
        element = self._expand(self.chain(type_url("Element")))
        self._validate_object(run, value, element, path, is_resource=False, has_value=has_value)

    def _extension_definition(
        self, run: _Run, item: Mapping[str, Any], path: str, *, modifier: bool
    ) -> list[Element]:
        url = item.get("url")
        if isinstance(url, str):
            if "value" in {k[:5] for k in item} and item.get("extension"):
                run.error(
                    "invariant",
                    "ext-1: an extension must have either extensions or a value, not both",
                    path,
                )
            if _is_absolute(url):
                chain = self.chain(url)
                if chain:
                    return [chain[0]]
                if modifier:
                    run.error("not-supported", f"unknown modifier extension {url}", path)
                else:
                    run.add("warning", "not-found", f"unknown extension {url}", path)
        return []

    # ----- slicing -------------------------------------------------------------------------

    def _slice_items(
        self, run: _Run, items: list[Any], defs: Sequence[Element], path: str
    ) -> dict[int, list[Element]]:
        extra: dict[int, list[Element]] = {}
        for definition in defs:
            slicing = definition.get("slicing")
            slices = slicing.get("slices") if isinstance(slicing, Mapping) else None
            if not isinstance(slicing, Mapping) or not isinstance(slices, Mapping) or not slices:
                continue
            matchers: dict[str, Callable[[Any], bool]] = {}
            for name, node in slices.items():
                matcher = _slice_matcher(slicing, node)
                if matcher is not None:
                    matchers[name] = matcher
            counts = dict.fromkeys(matchers, 0)
            order = list(slices)
            last_position = -1
            for index, item in enumerate(items):
                if item is None:
                    continue
                chosen = next((n for n in order if n in matchers and matchers[n](item)), None)
                if chosen is None:
                    if slicing.get("rules") == "closed" and len(matchers) == len(slices):
                        run.error(
                            "structure",
                            "item matches no slice and the slicing is closed",
                            f"{path}[{index}]",
                        )
                    continue
                counts[chosen] += 1
                schema = slices[chosen].get("schema")
                if isinstance(schema, Mapping):
                    extra.setdefault(index, []).append(schema)
                position = order.index(chosen)
                if slicing.get("ordered") and position < last_position:
                    run.error(
                        "structure",
                        f"slice {chosen!r} is out of order (the slicing is ordered)",
                        f"{path}[{index}]",
                    )
                last_position = max(last_position, position)
            for name, count in counts.items():
                node = slices[name]
                low, high = node.get("min"), node.get("max")
                if isinstance(low, int) and count < low:
                    run.error(
                        "structure",
                        f"slice {name!r} needs at least {low} item(s), found {count}",
                        path,
                    )
                if isinstance(high, int) and count > high:
                    run.error(
                        "structure",
                        f"slice {name!r} allows at most {high} item(s), found {count}",
                        path,
                    )
        return extra

    # ----- bindings --------------------------------------------------------------------------

    def _check_bindings(
        self, run: _Run, value: Any, defs: Sequence[Element], declared: Sequence[str], path: str
    ) -> None:
        assert self.terminology is not None
        urls: dict[str, None] = {}
        for definition in defs:
            binding = definition.get("binding")
            if isinstance(binding, Mapping) and binding.get("strength") == "required":
                url = binding.get("valueSet")
                if isinstance(url, str):
                    urls.setdefault(url)
        if not urls:
            return
        codings = _codings(value, declared)
        if not codings:
            return
        for url in urls:
            answers = [self.terminology.contains(url, system, code) for system, code in codings]
            if any(answer is None for answer in answers):
                self.counters.increment("bindings_unchecked")
                continue
            self.counters.increment("bindings_checked")
            if not any(answers):
                shown = ", ".join(
                    f"{system}|{code}" if system else repr(code) for system, code in codings
                )
                run.error(
                    "code-invalid",
                    f"{shown} is not in the value set {url} (required binding)",
                    path,
                )

    # ----- references and invariants -------------------------------------------------------

    def _check_reference(
        self, run: _Run, value: Mapping[str, Any], defs: Sequence[Element], path: str
    ) -> None:
        allowed_sets = [d["refers"] for d in defs if isinstance(d.get("refers"), list)]
        if not allowed_sets:
            return
        target = self._target_type(run, value)
        if target is None:
            return
        for allowed in allowed_sets:
            types = {self._profile_type(url) for url in allowed if isinstance(url, str)}
            if None in types or "Resource" in types:
                continue  # a target we cannot type, or any resource: nothing to check
            if target not in types:
                run.error(
                    "structure",
                    f"reference to {target} is not allowed here (allowed: {', '.join(sorted(t for t in types if t))})",
                    path,
                )
                return

    def _target_type(self, run: _Run, value: Mapping[str, Any]) -> str | None:
        declared = value.get("type")
        if isinstance(declared, str) and _RESOURCE_NAME.fullmatch(declared):
            return declared
        reference = value.get("reference")
        if not isinstance(reference, str) or reference.startswith("urn:"):
            return None
        if reference.startswith("#"):
            contained = (run.resource or {}).get("contained")
            for item in contained if isinstance(contained, list) else ():
                if isinstance(item, Mapping) and item.get("id") == reference[1:]:
                    found = item.get("resourceType")
                    return found if isinstance(found, str) else None
            return None
        parts = reference.split("?", 1)[0].split("#", 1)[0].rstrip("/").split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and _RESOURCE_NAME.fullmatch(parts[-2]):
            return parts[-2]
        return None

    def _check_invariants(
        self,
        run: _Run,
        value: Any,
        expanded: Sequence[Element],
        path: str,
        primitive: str | None,
    ) -> None:
        if not self.invariants:
            return
        seen: set[str] = set()
        for definition in expanded:
            constraints = definition.get("constraint")
            if not isinstance(constraints, Mapping):
                continue
            for key, constraint in constraints.items():
                if key in seen or not isinstance(constraint, Mapping):
                    continue
                seen.add(key)
                expression = constraint.get("expression")
                if not isinstance(expression, str):
                    continue
                try:
                    outcome = evaluate_invariant(
                        expression,
                        value,
                        resource=run.resource,
                        root_resource=run.root,
                        focus_type=primitive,
                    )
                except (FhirPathUnsupported, RecursionError) as exc:
                    self.counters.increment("invariants_skipped")
                    _log.debug("invariant skipped", key=key, reason=str(exc))
                    continue
                self.counters.increment("invariants_evaluated")
                if outcome is False:
                    severity: Severity = (
                        "warning" if constraint.get("severity") == "warning" else "error"
                    )
                    human = constraint.get("human") or expression
                    run.add(severity, "invariant", f"{key}: {human}", path)


def _slice_matcher(slicing: Mapping[str, Any], node: Any) -> Callable[[Any], bool] | None:
    """How to tell whether an item belongs to a slice, or ``None`` when it cannot be told."""
    if not isinstance(node, Mapping):
        return None
    match = node.get("match")
    if isinstance(match, Mapping) and match:
        return lambda item: matches_pattern(item, match)
    discriminators = slicing.get("discriminator")
    schema = node.get("schema")
    if (
        not isinstance(discriminators, list)
        or len(discriminators) != 1
        or not isinstance(schema, Mapping)
    ):
        return None
    discriminator = discriminators[0]
    if not isinstance(discriminator, Mapping) or discriminator.get("type") != "type":
        return None
    where = str(discriminator.get("path", "")).strip()
    if where == "$this" and isinstance(schema.get("type"), str):
        wanted = schema["type"]
        return lambda item: isinstance(item, Mapping) and item.get("resourceType") == wanted
    elements = schema.get("elements")
    target = elements.get(where) if isinstance(elements, Mapping) else None
    if isinstance(target, Mapping) and isinstance(target.get("type"), str):
        wanted = target["type"]
        return lambda item: (
            isinstance(item, Mapping)
            and isinstance(item.get(where), Mapping)
            and item[where].get("resourceType") == wanted
        )
    return None


def _references(value: Any) -> set[str]:
    """Every ``reference`` string anywhere inside ``value``."""
    found: set[str] = set()
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, Mapping):
            reference = current.get("reference")
            if isinstance(reference, str):
                found.add(reference)
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return found


def _codings(value: Any, declared: Sequence[str]) -> list[tuple[str | None, str]]:
    """The (system, code) pairs a bound value carries, by its declared type."""
    if isinstance(value, str) and not any(t in ("Coding", "CodeableConcept") for t in declared):
        return [(None, value)] if any(t == "code" for t in declared) else []
    if not isinstance(value, Mapping):
        return []
    items = value.get("coding") if "CodeableConcept" in declared else [value]
    pairs: list[tuple[str | None, str]] = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping) and isinstance(item.get("code"), str):
            system = item.get("system")
            pairs.append((system if isinstance(system, str) else None, item["code"]))
    return pairs


def _without_type(definition: Element) -> Element:
    return {k: v for k, v in definition.items() if k != "type"}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return "an object"


def _show(value: Any) -> str:
    import orjson

    text = orjson.dumps(value).decode()
    return text if len(text) <= 120 else text[:117] + "..."


def validate(
    resource: Any, resolver: SchemaResolver, *, profiles: Sequence[str] = ()
) -> ValidationResult:
    """Validate ``resource`` with a one-off :class:`Validator` over ``resolver``.

    Keep a :class:`Validator` instead when validating many resources: it caches schema chains.
    """
    return Validator(resolver).validate(resource, profiles=profiles)
