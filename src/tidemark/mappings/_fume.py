"""The FUME conventions for mappings and aliases on a FHIR server (pure functions).

A server mapping is a StructureMap whose group rule carries the mapping-expression extension; the
alias ConceptMap maps each ``group.element.code`` to its first ``target.code``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAPPING_EXPRESSION_URL = "http://fhir.fume.health/StructureDefinition/mapping-expression"
FUME_CODE_SYSTEM = "http://codes.fume.health"
#: SNOMED CT "Information system software": the useContext code FUME tags its resources with.
USE_CONTEXT_SYSTEM = "http://snomed.info/sct"
USE_CONTEXT_CODE = "706594005"
ALIAS_CONCEPT_MAP_NAME = "FumeAliases"
ALIASES_FILE = "aliases.json"

FILE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
SERVER_KEY = re.compile(r"^[A-Za-z0-9_]+$")
ALIAS_KEY = re.compile(r"^[A-Za-z0-9_]+$")

#: The aliases FUME ships with; the lowest-precedence alias source (configurable).
BUILT_IN_ALIASES: dict[str, str] = {
    "exampleMrn": "http://this.is.an.example.uri/mrn",
    "ucum": "http://unitsofmeasure.org",
    "loinc": "http://loinc.org",
    "sct": "http://snomed.info/sct",
    "urn": "urn:ietf:rfc:3986",
    "ssn": "http://hl7.org/fhir/sid/us-ssn",
    "passportPrefix": "http://hl7.org/fhir/sid/passport-",
    "extDar": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
    "extLanguage": "http://hl7.org/fhir/StructureDefinition/language",
    "extGeolocation": "http://hl7.org/fhir/StructureDefinition/geolocation",
    "extStreetName": "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-streetName",
    "extHouseNumber": "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-houseNumber",
    "extApartment": "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-unitID",
}

#: How the alias ConceptMap is found when its id is not configured, and the narrower search used
#: when a server rejects the first one (results are always filtered client-side).
DEFAULT_ALIAS_SEARCH = {"name": ALIAS_CONCEPT_MAP_NAME, "context": f"{FUME_CODE_SYSTEM}|fume"}
DEFAULT_ALIAS_SEARCH_FALLBACK = {"name": ALIAS_CONCEPT_MAP_NAME}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def structure_map_expression(resource: Mapping[str, Any]) -> str | None:
    """The mapping text of a FUME StructureMap: the first rule extension
    ``mapping-expression`` with a non-empty ``valueExpression.expression``; else ``None``."""
    for group in _list(resource.get("group")):
        if not isinstance(group, dict):
            continue
        for rule in _list(group.get("rule")):
            if not isinstance(rule, dict):
                continue
            for extension in _list(rule.get("extension")):
                if (
                    not isinstance(extension, dict)
                    or extension.get("url") != MAPPING_EXPRESSION_URL
                ):
                    continue
                value = extension.get("valueExpression")
                expression = value.get("expression") if isinstance(value, dict) else None
                if isinstance(expression, str) and expression:
                    return expression
    return None


def _mentions_fume(coding: Any) -> bool:
    if not isinstance(coding, dict):
        return False
    system, code = coding.get("system"), coding.get("code")
    return (isinstance(system, str) and "fume" in system) or code == "fume"


def is_fume_mapping(resource: Mapping[str, Any]) -> bool:
    """Whether a StructureMap is a FUME mapping: it carries a mapping expression and, when it
    declares a ``useContext``, one of them has a coding whose system or code mentions FUME."""
    if resource.get("resourceType") != "StructureMap" or structure_map_expression(resource) is None:
        return False
    contexts = _list(resource.get("useContext"))
    if not contexts:
        return True
    for context in contexts:
        concept = context.get("valueCodeableConcept") if isinstance(context, dict) else None
        codings = _list(concept.get("coding")) if isinstance(concept, dict) else []
        if any(_mentions_fume(coding) for coding in codings):
            return True
    return False


def is_alias_concept_map(resource: Mapping[str, Any]) -> bool:
    """Whether a ConceptMap carries FUME's alias ``useContext`` (SNOMED 706594005 → fume)."""
    if resource.get("resourceType") != "ConceptMap":
        return False
    for context in _list(resource.get("useContext")):
        if not isinstance(context, dict):
            continue
        code = context.get("code")
        concept = context.get("valueCodeableConcept")
        if not (
            isinstance(code, dict)
            and code.get("system") == USE_CONTEXT_SYSTEM
            and code.get("code") == USE_CONTEXT_CODE
            and isinstance(concept, dict)
        ):
            continue
        for coding in _list(concept.get("coding")):
            if (
                isinstance(coding, dict)
                and coding.get("system") == FUME_CODE_SYSTEM
                and coding.get("code") == "fume"
            ):
                return True
    return False


def concept_map_aliases(resource: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The aliases of a ConceptMap (``element.code`` → first ``target.code``) and a warning for
    each element skipped (invalid key, missing value) or overridden (duplicate key)."""
    aliases: dict[str, str] = {}
    warnings: list[str] = []
    for group in _list(resource.get("group")):
        if not isinstance(group, dict):
            continue
        for element in _list(group.get("element")):
            if not isinstance(element, dict):
                continue
            key = element.get("code")
            targets = _list(element.get("target"))
            value = targets[0].get("code") if targets and isinstance(targets[0], dict) else None
            if not isinstance(key, str) or not ALIAS_KEY.match(key):
                warnings.append(f"alias key {key!r} is invalid (must match {ALIAS_KEY.pattern})")
                continue
            if not isinstance(value, str) or not value:
                warnings.append(f"alias {key!r} has no target code")
                continue
            if key in aliases:
                warnings.append(f"alias {key!r} appears more than once; the last one wins")
            aliases[key] = value
    return aliases, warnings


def file_aliases(value: Any) -> tuple[dict[str, str], list[str]]:
    """The aliases of a parsed ``aliases.json`` (an object of string values) and a warning for
    each entry skipped. Raises ``ValueError`` when the document is not a JSON object."""
    if not isinstance(value, dict):
        raise ValueError("aliases.json must hold a JSON object of alias → string")
    aliases: dict[str, str] = {}
    warnings: list[str] = []
    for key, item in value.items():
        if not ALIAS_KEY.match(key):
            warnings.append(f"alias key {key!r} is invalid (must match {ALIAS_KEY.pattern})")
        elif not isinstance(item, str):
            warnings.append(f"alias {key!r} must have a string value")
        else:
            aliases[key] = item
    return aliases, warnings
