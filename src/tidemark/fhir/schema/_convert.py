"""StructureDefinition (its differential) → FHIRSchema, in the format of the fhir-schema project.

The algorithm is the one of the reference converters (the Clojure ``fhir-clj/fhir-schema`` and its
TypeScript port ``@atomic-ehr/fhirschema``): walk the differential in order, turn each path into
"enter"/"exit" (and "enter-slice"/"exit-slice") actions against the previous path, and fold
the converted elements into a nested tree with a stack. Where the reference converters are wrong
by the FHIR specification this module deliberately differs; each difference is listed in
``docs/fhirschema-decisions.md`` and marked ``Decision Dn`` below.

Pure, synchronous and deterministic: no I/O, no global state, the input is never modified.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Mapping
from typing import Any

import orjson

from tidemark.core import UnprocessableError

from ._element import capitalize, parse_max, transform_element, type_name

FHIRSchema = dict[str, Any]

_Path = list[dict[str, Any]]
_Action = dict[str, Any]


class ConversionError(UnprocessableError):
    """The input is not a StructureDefinition the converter can read."""

    code = "unprocessable:fhirschema-conversion"
    title = "FHIRSchema Conversion Failed"


def _class_of(sd: Mapping[str, Any]) -> str:
    if sd.get("kind") == "resource" and sd.get("derivation") == "constraint":
        return "profile"
    if sd.get("type") == "Extension":
        return "extension"
    kind = sd.get("kind")
    return kind if isinstance(kind, str) and kind else "unknown"


def _header(sd: Mapping[str, Any]) -> FHIRSchema:
    header: FHIRSchema = {}
    for key in ("name", "type", "kind"):
        if sd.get(key) is not None:
            header[key] = sd[key]
    header["class"] = _class_of(sd)
    for key in (
        "url",
        "version",
        "description",
        "package_name",
        "package_version",
        "package_id",
        "derivation",
    ):
        if sd.get(key):
            header[key] = sd[key]
    if sd.get("baseDefinition") and sd.get("type") != "Element":
        header["base"] = sd["baseDefinition"]
    if sd.get("abstract"):
        header["abstract"] = sd["abstract"]
    return header


def _is_choice(element: Mapping[str, Any]) -> bool:
    if element["path"].endswith("[x]"):
        return True
    types = element.get("type")
    if isinstance(types, list) and len(types) > 1:
        return len({t.get("code") for t in types if isinstance(t, dict)}) > 1
    return False


def _choice_names(field: str, types: list[Any]) -> list[str]:
    return [field + capitalize(type_name(str(t.get("code")))) for t in types]


def _expand_choice(element: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``value[x]`` → the declaration ``value`` (with ``choices``) and one element per type."""
    path: str = element["path"]
    base_path = path.removesuffix("[x]")
    field = base_path.rsplit(".", 1)[-1]
    types = element.get("type")
    if not isinstance(types, list):
        # Decision D5: an untyped [x] in a profile still constrains the choice (cardinality,
        # mustSupport, binding...); keep it as the declaration instead of dropping it.
        return [{**element, "path": base_path}]
    declaration = {k: v for k, v in element.items() if k not in ("type", "binding")}
    declaration["path"] = base_path
    declaration["choices"] = _choice_names(field, types)
    expanded = [declaration]
    for item in types:
        variant = {k: v for k, v in element.items() if k != "binding"}
        variant["path"] = base_path + capitalize(type_name(str(item.get("code"))))
        variant["type"] = [item]
        variant["choiceOf"] = field
        if element.get("binding"):
            variant["_declarationBinding"] = element["binding"]
        expanded.append(variant)
    return expanded


def _is_type_slicing_root(element: Mapping[str, Any]) -> bool:
    if not element["path"].endswith("[x]") or element.get("sliceName"):
        return False
    slicing = element.get("slicing")
    discriminator = slicing.get("discriminator") if isinstance(slicing, dict) else None
    return (
        isinstance(discriminator, list)
        and len(discriminator) == 1
        and isinstance(discriminator[0], dict)
        and discriminator[0].get("type") == "type"
        and str(discriminator[0].get("path", "")).strip() == "$this"
    )


def _collapse_choice_type_slicing(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Type slicing on a choice (``value[x]`` sliced by ``$this`` type) is the plain choice.

    The slices ``value[x]:valueQuantity`` become the typed variants (``valueQuantity``), their
    children are re-parented under the variant, and the declaration keeps the slicing rules.
    """
    result: list[dict[str, Any]] = []
    i = 0
    while i < len(elements):
        element = elements[i]
        if not _is_type_slicing_root(element):
            result.append(element)
            i += 1
            continue
        root_path: str = element["path"]
        base_path = root_path.removesuffix("[x]")
        field = base_path.rsplit(".", 1)[-1]
        root_rest = {k: v for k, v in element.items() if k not in ("slicing", "type")}
        root_types = element.get("type") or []
        choices = _choice_names(field, root_types)
        sliced: set[str] = set()
        collapsed: list[dict[str, Any]] = []
        variant_path: str | None = None
        j = i + 1
        while j < len(elements) and elements[j]["path"].startswith(root_path):
            item = elements[j]
            item_types = item.get("type")
            if (
                item["path"] == root_path
                and item.get("sliceName")
                and isinstance(item_types, list)
                and len(item_types) == 1
            ):
                name = capitalize(type_name(str(item_types[0].get("code"))))
                variant_path = base_path + name
                sliced.add(field + name)
                variant = {k: v for k, v in item.items() if k != "sliceName"}
                variant["path"] = variant_path
                variant["choiceOf"] = field
                collapsed.append(variant)
            elif item["path"].startswith(root_path + ".") and variant_path:
                collapsed.append({**item, "path": variant_path + item["path"][len(root_path) :]})
            else:
                collapsed.append(item)
                variant_path = None
            j += 1
        declaration = {**root_rest, "path": base_path, "_choiceSlicing": element.get("slicing")}
        if choices:
            declaration["choices"] = choices
        result.append(declaration)
        for item_type in root_types:
            name = capitalize(type_name(str(item_type.get("code"))))
            if field + name in sliced:
                continue
            variant = {k: v for k, v in root_rest.items() if k != "binding"}
            variant.update(path=base_path + name, type=[item_type], choiceOf=field)
            result.append(variant)
        result.extend(collapsed)
        i = j
    return result


def _parse_path(element: Mapping[str, Any]) -> _Path:
    path: _Path = [{"el": part} for part in element["path"].split(".")[1:]]
    if not path:
        return path
    last = path[-1]
    maximum = element.get("max")
    parsed_max = parse_max(maximum) if maximum and maximum != "*" else None
    slicing = element.get("slicing")
    if isinstance(slicing, dict):
        item_slicing = dict(slicing)
        if "min" in element:
            item_slicing["min"] = element["min"]
        if parsed_max is not None:
            item_slicing["max"] = parsed_max
        last["slicing"] = item_slicing
    if element.get("sliceName"):
        slice_info: dict[str, Any] = {}
        if "min" in element:
            slice_info["min"] = element["min"]
        if parsed_max is not None:
            slice_info["max"] = parsed_max
        last["slice"] = slice_info
        last["sliceName"] = element["sliceName"]
    return path


def _enrich_path(previous: _Path, new: _Path) -> _Path:
    """Children inherit the slice (name, slicing, cardinality) of the path they continue."""
    enriched: _Path = []
    for i, item in enumerate(new):
        if i < len(previous) and previous[i]["el"] == item["el"]:
            enriched.append({**previous[i], **item})
        else:
            enriched.append(item)
    return enriched


def _common_length(previous: _Path, new: _Path) -> int:
    length = 0
    for a, b in zip(previous, new, strict=False):
        if a["el"] != b["el"]:
            break
        length += 1
    return length


def _exit_slice(item: Mapping[str, Any]) -> _Action:
    action: _Action = {"type": "exit-slice", "sliceName": item["sliceName"]}
    if "slicing" in item:
        action["slicing"] = item["slicing"]
    if "slice" in item:
        action["slice"] = item["slice"]
    return action


def _actions(previous: _Path, new: _Path) -> list[_Action]:
    common = _common_length(previous, new)
    actions: list[_Action] = []
    for i in range(len(previous) - 1, common - 1, -1):
        item = previous[i]
        if item.get("sliceName"):
            actions.append(_exit_slice(item))
        actions.append({"type": "exit", "el": item["el"]})
    if common > 0:
        before, after = previous[common - 1], new[common - 1]
        if (
            before.get("sliceName")
            and after.get("sliceName")
            and before["sliceName"] != after["sliceName"]
        ):
            actions.append(_exit_slice(before))
        if after.get("sliceName") and before.get("sliceName") != after["sliceName"]:
            actions.append({"type": "enter-slice", "sliceName": after["sliceName"]})
        if common == len(new):
            return actions
    for item in new[common:]:
        actions.append({"type": "enter", "el": item["el"]})
        if item.get("sliceName"):
            actions.append({"type": "enter-slice", "sliceName": item["sliceName"]})
    return actions


def _lookup(value: Any, steps: list[str]) -> Any:
    for step in steps:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def _slice_match(slicing: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """The ``match`` of a slice: the fixed/pattern values at its value/pattern discriminators."""
    discriminators = slicing.get("discriminator")
    match: dict[str, Any] = {}
    if not isinstance(discriminators, list):
        return match
    for discriminator in discriminators:
        if not isinstance(discriminator, dict):
            continue
        if discriminator.get("type") not in ("pattern", "value"):
            continue
        path = str(discriminator.get("path", "")).strip()
        if path == "$this":
            constant = schema.get("pattern") or schema.get("fixed")
            value = constant.get("value") if isinstance(constant, dict) else None
            if isinstance(value, dict):
                match.update(value)
            elif value:
                match["value"] = value
            continue
        parts = [p for p in path.split(".") if p.strip()]
        steps: list[str] = []
        for position, part in enumerate(parts):
            steps.append(part)
            if position < len(parts) - 1:
                steps.append("elements")
        for kind in ("pattern", "fixed"):
            found = _lookup(schema, ["elements", *steps, kind])
            if isinstance(found, dict) and "value" in found:
                _set_path(match, parts, found["value"])
                break
        else:
            if parts == ["url"] and isinstance(schema.get("url"), str):
                # Decision D4: an extension slice's url is its profile's canonical URL.
                match["url"] = schema["url"]
    _wrap_arrays(match, schema)
    return match


def _set_path(match: dict[str, Any], parts: list[str], value: Any) -> None:
    target = match
    for part in parts[:-1]:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[parts[-1]] = value


def _wrap_arrays(match: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Values matched inside array elements become one-item arrays (``coding: [{...}]``)."""
    elements = schema.get("elements")
    if not isinstance(elements, dict):
        return
    for key, value in list(match.items()):
        definition = elements.get(key)
        if not isinstance(definition, dict) or not isinstance(value, dict):
            continue
        _wrap_arrays(value, definition)
        if definition.get("array"):
            match[key] = [value]


_SLICE_CARDINALITY = frozenset(("min", "max", "array", "_required", "_excluded"))


def _build_slice(
    action: _Action, parent: Mapping[str, Any], schema: dict[str, Any]
) -> dict[str, Any]:
    # Decision D3: a slice schema constrains each matched item; how many items the slice takes
    # is the slice's own min/max, so the element's cardinality does not belong in it.
    schema = {k: v for k, v in schema.items() if k not in _SLICE_CARDINALITY}
    existing = parent.get("slicing")
    slicing_info = existing if existing is not None else action.get("slicing") or {}
    node: dict[str, Any] = {"match": _slice_match(slicing_info, schema), "schema": schema}
    cardinality = action.get("slice") or {}
    if cardinality.get("min") is not None and cardinality["min"] != 0:
        node["min"] = cardinality["min"]
    if cardinality.get("max") is not None:
        node["max"] = cardinality["max"]
    slicing = dict(existing) if isinstance(existing, dict) else {}
    if action.get("slicing"):
        slicing.update(action["slicing"])
    slices = dict(slicing.get("slices") or {})
    slices[action["sliceName"]] = node
    slicing["slices"] = slices
    return {**parent, "slicing": slicing}


def _slicing_to_extensions(element: Mapping[str, Any]) -> dict[str, Any]:
    slicing = element.get("slicing")
    slices = slicing.get("slices") if isinstance(slicing, dict) else None
    extensions: dict[str, Any] = {}
    if not isinstance(slices, dict):
        return extensions
    for name, node in slices.items():
        schema = node.get("schema")
        if not schema:
            continue
        extension: dict[str, Any] = {}
        match = node.get("match")
        if isinstance(match, dict) and "url" in match:
            extension["url"] = match["url"]
        if node.get("min") is not None and node["min"] != 0:
            extension["min"] = node["min"]
        if node.get("max") is not None:
            extension["max"] = node["max"]
        extension.update(
            (k, v) for k, v in schema.items() if k not in ("slicing", "elements", "type", "min")
        )
        schema_min = schema.get("min")
        if schema_min is not None and schema_min != 0 and "min" not in extension:
            extension["min"] = schema_min
        extensions[name] = extension
    return extensions


def _add_element(name: str, parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    # Both dicts come off the stack and belong to this conversion alone (nothing else refers
    # to them, and their ``elements``/``required``/``excluded`` were created here), so they are
    # updated in place: copying them for every element made large resources quadratic.
    if name == "extension":
        parent["extensions"] = _slicing_to_extensions(child)
    required = child.pop("_required", None)
    excluded = child.pop("_excluded", None)
    parent.setdefault("elements", {})[name] = child
    if excluded:
        _add_sorted(parent.setdefault("excluded", []), name)
    if required:
        _add_sorted(parent.setdefault("required", []), child.get("choiceOf") or name)
    return parent


def _add_sorted(names: list[str], name: str) -> None:
    """``required``/``excluded`` are sets, written sorted (as the reference does)."""
    if name not in names:
        bisect.insort(names, name)


def _apply(stack: list[dict[str, Any]], actions: list[_Action], value: dict[str, Any]) -> None:
    for i, action in enumerate(actions):
        kind = action["type"]
        if kind in ("enter", "enter-slice"):
            following = actions[i + 1]["type"] if i + 1 < len(actions) else None
            # Decision D1: entering an element straight into one of its slices (the slicing is
            # inherited) opens an empty sliced element; the slice's constraints are the slice's.
            opens_container = kind == "enter" and following == "enter-slice"
            stack.append({} if following == "enter" or opens_container else value)
        else:
            child = stack.pop()
            parent = stack.pop()
            if kind == "exit":
                stack.append(_add_element(action["el"], parent, child))
            else:
                stack.append(_build_slice(action, parent, child))


def _detached(value: FHIRSchema) -> FHIRSchema:
    """A deep copy sharing nothing with the input StructureDefinition (orjson: fast, in C)."""
    try:
        return orjson.loads(orjson.dumps(value))  # type: ignore[no-any-return]
    except orjson.JSONEncodeError as exc:
        raise ConversionError(
            f"StructureDefinition holds a value JSON cannot express: {exc}"
        ) from exc


def _snapshot_index(
    sd: Mapping[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]:
    """From the snapshot: bindings of choice elements (by path; ``None`` without a snapshot),
    slicings (by id) and base cardinality ``base.max`` (by id)."""
    snapshot = sd.get("snapshot")
    elements = snapshot.get("element") if isinstance(snapshot, dict) else None
    if not isinstance(elements, list):
        return None, {}, {}
    bindings: dict[str, Any] = {}
    slicings: dict[str, Any] = {}
    base_max: dict[str, Any] = {}
    for element in elements:
        if not isinstance(element, dict):
            continue
        base = element.get("base")
        if isinstance(base, dict) and isinstance(element.get("id"), str):
            base_max.setdefault(element["id"], base.get("max"))
        if str(element.get("path", "")).endswith("[x]") and element.get("binding"):
            bindings.setdefault(element["path"], element["binding"])
        slicing = element.get("slicing")
        if isinstance(slicing, dict) and isinstance(element.get("id"), str):
            slicings.setdefault(
                element["id"],
                {k: slicing[k] for k in ("discriminator", "rules", "ordered") if k in slicing},
            )
    return bindings, slicings, base_max


def _slicing_root_id(element: Mapping[str, Any]) -> str:
    element_id = str(element.get("id") or element["path"])
    suffix = f":{element['sliceName']}"
    return element_id[: -len(suffix)] if element_id.endswith(suffix) else element_id


def _differential(sd: Mapping[str, Any]) -> list[dict[str, Any]]:
    differential = sd.get("differential")
    elements = differential.get("element") if isinstance(differential, dict) else None
    if elements is None:
        return []
    if not isinstance(elements, list):
        raise ConversionError("differential.element is not a list")
    result = []
    for element in elements:
        if not isinstance(element, dict) or not isinstance(element.get("path"), str):
            raise ConversionError(f"differential element without a path: {element!r:.200}")
        if "." in element["path"]:
            result.append(dict(element))
    return result


def convert(structure_definition: Mapping[str, Any]) -> FHIRSchema:
    """Convert a StructureDefinition to FHIRSchema (from its differential).

    Returns a new JSON-ready dict; ``canonical_bytes`` of the result is identical across runs
    and processes. Raises :class:`ConversionError` when the input is not a StructureDefinition.
    """
    sd = structure_definition
    if isinstance(sd, Mapping) and not isinstance(sd, dict):
        sd = dict(sd)
    if not isinstance(sd, dict) or sd.get("resourceType", "StructureDefinition") != (
        "StructureDefinition"
    ):
        raise ConversionError("not a StructureDefinition")
    header = _header(sd)
    if sd.get("kind") == "primitive-type":
        return _detached(header)

    elements = _collapse_choice_type_slicing(_differential(sd))
    sd_url = sd.get("url")
    sd_type = sd.get("type")
    choice_bindings, inherited_slicings, base_maxima = _snapshot_index(sd)
    stack: list[dict[str, Any]] = [header]
    previous: _Path = []
    queue = deque(elements)
    index = 0
    while queue:
        element = queue.popleft()
        if _is_choice(element):
            expanded = _expand_choice(element)
            queue.extendleft(reversed(expanded))
            if expanded and "choices" in expanded[0]:
                index += 1  # the reference numbers the [x] element itself, then its parts
            continue
        path = _enrich_path(previous, _parse_path(element))
        if path and path[-1].get("sliceName") and "slicing" not in path[-1]:
            # Decision D11: the slicing of a slice declared in a base profile comes from the
            # snapshot, so the slice still gets its discriminator and match.
            inherited = inherited_slicings.get(_slicing_root_id(element))
            if inherited:
                path[-1]["slicing"] = dict(inherited)
        actions = _actions(previous, path)
        declaration_binding = element.pop("_declarationBinding", None)
        choice_binding = None
        if "choiceOf" in element:
            # Decision D6: a typed variant takes the binding of the [x] declaration named
            # ``<type>.<choiceOf>[x]`` in the snapshot (the reference uses the SD's id, which
            # only equals the type in base definitions), or without a snapshot the declaration's.
            if choice_bindings is None:
                choice_binding = declaration_binding
            else:
                choice_binding = choice_bindings.get(f"{sd_type}.{element['choiceOf']}[x]")
        own_base = element.get("base")
        base_max = (
            own_base.get("max")
            if isinstance(own_base, dict)
            else base_maxima.get(str(element.get("id")))
        )
        converted = transform_element(element, sd_url, choice_binding, base_max)
        choice_slicing = converted.pop("_choiceSlicing", None)
        if choice_slicing:
            converted["slicing"] = choice_slicing
        converted["index"] = index
        index += 1
        _apply(stack, actions, converted)
        previous = path
    _apply(stack, _actions(previous, []), {"index": index})
    if len(stack) != 1:
        raise ConversionError(f"differential does not nest: {len(stack)} open elements remain")
    return _detached(stack[0])
