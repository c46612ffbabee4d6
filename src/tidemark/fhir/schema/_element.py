"""One ElementDefinition (of a differential) → one FHIRSchema element, before nesting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BINDING_NAME_EXT = "http://hl7.org/fhir/StructureDefinition/elementdefinition-bindingName"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"

# ElementDefinition keys that describe the definition rather than constrain data (or that the
# conversion consumes itself); everything else is carried over as is.
_DROPPED_KEYS = frozenset(
    (
        "path",
        "slicing",
        "sliceName",
        "id",
        "mapping",
        "example",
        "alias",
        "condition",
        "comment",
        "definition",
        "requirements",
        "extension",
    )
)

# fixed[x]/pattern[x] suffixes name the value's type capitalised; these are the primitives.
_PRIMITIVE_SUFFIXES = {
    "Instant": "instant",
    "Time": "time",
    "Date": "date",
    "DateTime": "dateTime",
    "Decimal": "decimal",
    "Boolean": "boolean",
    "Integer": "integer",
    "String": "string",
    "Uri": "uri",
    "Base64Binary": "base64Binary",
    "Code": "code",
    "Id": "id",
    "Oid": "oid",
    "UnsignedInt": "unsignedInt",
    "PositiveInt": "positiveInt",
    "Markdown": "markdown",
    "Url": "url",
    "Canonical": "canonical",
    "Uuid": "uuid",
}


def capitalize(text: str) -> str:
    """Upper-case the first character only (``dateTime`` → ``DateTime``)."""
    return text[:1].upper() + text[1:]


def type_name(code: str) -> str:
    """The last segment of a type code (a canonical URL for logical-model types)."""
    return code.rsplit("/", 1)[-1]


def parse_max(value: Any) -> int | None:
    """``ElementDefinition.max`` as a number, ``None`` for ``*`` or absent/unparseable values."""
    if not isinstance(value, str) or value == "*":
        return None
    if value.isdecimal():
        return int(value)
    digits = ""
    for char in value.strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def _reference_targets(types: list[Any]) -> list[str]:
    targets: set[str] = set()
    for item in types:
        if not isinstance(item, dict):
            continue
        profiles = item.get("targetProfile")
        if isinstance(profiles, str):
            targets.add(profiles)
        elif isinstance(profiles, list):
            targets.update(p for p in profiles if isinstance(p, str))
    return sorted(targets)


def normalize_binding(binding: Mapping[str, Any]) -> dict[str, Any]:
    """``strength``, ``valueSet`` and the ``bindingName`` extension of a binding."""
    result: dict[str, Any] = {}
    if "strength" in binding:
        result["strength"] = binding["strength"]
    if binding.get("valueSet"):
        result["valueSet"] = binding["valueSet"]
    for ext in binding.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == BINDING_NAME_EXT:
            if ext.get("valueString"):
                result["bindingName"] = ext["valueString"]
            break
    return result


def _constraints(items: Any) -> dict[str, Any] | None:
    if not isinstance(items, list) or not items:
        return None
    result: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            continue
        entry = {k: item[k] for k in ("expression", "human", "severity") if k in item}
        result[item["key"]] = entry
    return result


def element_reference(content_reference: str, url: str | None) -> list[Any]:
    """``#Questionnaire.item`` → ``[<sd url>, "elements", "item"]``."""
    local = content_reference.split("#", 1)[1] if "#" in content_reference else content_reference
    result: list[Any] = [url]
    for part in local.split(".")[1:]:
        result += ["elements", part]
    return result


def transform_element(
    element: Mapping[str, Any],
    sd_url: str | None,
    choice_binding: Mapping[str, Any] | None,
    base_max: Any = None,
) -> dict[str, Any]:
    """Convert one (choice-expanded) ElementDefinition; nesting and slices are done by the caller.

    ``choice_binding`` is the binding of the ``[x]`` declaration a typed choice variant came
    from. The private ``_required`` (``min == 1``) and ``_excluded`` (``max == 0``) flags are
    moved by the caller to the parent's ``required`` and ``excluded`` lists. ``base_max`` is
    ``ElementDefinition.base.max`` (from the snapshot) when known.
    """
    result: dict[str, Any] = {k: v for k, v in element.items() if k not in _DROPPED_KEYS}
    types = element.get("type")
    types = types if isinstance(types, list) and types else None
    first_type: Mapping[str, Any] = (
        types[0] if types is not None and isinstance(types[0], dict) else {}
    )
    code = first_type.get("code")

    if code == "Reference" and types is not None:
        refers = _reference_targets(types)
        types = [{"code": "Reference"}]
        first_type = types[0]
        result["type"] = types
        if refers:
            result["refers"] = refers

    # Binding: none on a choice declaration; a typed variant inherits its declaration's.
    binding = result.pop("binding", None)
    if "choices" in result:
        pass
    elif "choiceOf" in result and choice_binding is not None:
        result["binding"] = normalize_binding(choice_binding)
    elif isinstance(binding, dict) and binding.get("valueSet"):
        result["binding"] = normalize_binding(binding)

    constraints = _constraints(result.get("constraint"))
    if constraints is not None:
        result["constraint"] = constraints

    content_reference = result.pop("contentReference", None)
    if isinstance(content_reference, str):
        result["elementReference"] = element_reference(content_reference, sd_url)

    minimum = result.get("min")
    maximum = result.get("max")
    profiles = first_type.get("profile")
    extension_url = None
    if code == "Extension" and isinstance(profiles, list) and profiles and profiles[0]:
        extension_url = profiles[0]
    parsed = parse_max(maximum)
    if parsed == 0:
        # Decision D7: max 0 prohibits the element; the parent lists it in ``excluded``.
        result["_excluded"] = True
    if extension_url is not None:
        result["url"] = extension_url
        # Decision D2: extension elements keep only meaningful cardinality (no min 0, no "*").
        if not (isinstance(minimum, int) and minimum > 0):
            result.pop("min", None)
        result.pop("max", None)
        if parsed is not None:
            result["max"] = parsed
    else:
        result.pop("min", None)
        result.pop("max", None)
        base_parsed = parse_max(base_max)
        is_array = (
            maximum == "*"
            or (isinstance(minimum, int) and minimum >= 2)
            or (parsed is not None and parsed >= 2)
            # Decision D12: the JSON shape follows the base definition, so a profile that
            # limits a repeating element to max 1 still describes an array (of at most 1).
            or base_max == "*"
            or (base_parsed is not None and base_parsed >= 2)
        )
        if is_array:
            result["array"] = True
            if isinstance(minimum, int) and minimum > 0:
                result["min"] = minimum
            if maximum and maximum != "*" and parsed is not None:
                result["max"] = parsed
        if minimum == 1:
            result["_required"] = True

    if types is not None:
        type_ext = (first_type.get("extension") or [None])[0]
        if (
            isinstance(type_ext, dict)
            and type_ext.get("url") == FHIR_TYPE_EXT
            and isinstance(type_ext.get("valueUrl"), str)
            and type_ext["valueUrl"]
        ):
            result["type"] = type_ext["valueUrl"]
        elif isinstance(code, str):
            result["type"] = code
        else:
            result.pop("type", None)

    for key in [k for k in result if k.startswith(("pattern", "fixed"))]:
        value = result.pop(key)
        kind = "pattern" if key.startswith("pattern") else "fixed"
        suffix = key[len(kind) :]
        result[kind] = {"type": _PRIMITIVE_SUFFIXES.get(suffix, suffix), "value": value}
    pattern = result.get("pattern")
    if isinstance(pattern, dict) and pattern.get("type") and not result.get("type"):
        result["type"] = pattern["type"]
    return result
