"""Ed-Fi query fields: the document paths each one matches, the type of its values, and their keys."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tidemark.core import ParameterValidationError, canonical_hash

from ._index import KeyEntry, KeyIn
from ._paths import MISSING, JsonPath, parse_path

#: Numbers the databases can compare, and the largest a query value may be.
MAX_INTEGER = 2**63 - 1
_INTEGER = re.compile(r"^[+-]?[0-9]{1,19}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}$")

#: The value types of query fields: the JSON type ``jsonSchemaForInsert`` gives the path (with
#: its ``format`` for strings), and ``descriptor`` for descriptor URIs.
VALUE_TYPES = ("integer", "number", "boolean", "date", "date-time", "time", "descriptor", "string")
#: The value type of an ApiSchema ``queryFieldMapping`` type, when the JSON schema says nothing.
_DECLARED = {n: n for n in ("number", "boolean", "date", "date-time", "time")}


@dataclass(frozen=True, slots=True)
class QueryField:
    """A query parameter of a resource: the document paths it matches (a document matches when
    any of them holds the value), the type the ApiSchema declares (``type``) and the type of its
    values in documents (``value_type``, one of :data:`VALUE_TYPES`)."""

    name: str
    paths: tuple[JsonPath, ...]
    type: str
    value_type: str = ""

    @property
    def kind(self) -> str:
        """The value type (``value_type``, or the one the declared ``type`` implies)."""
        return self.value_type or _DECLARED.get(self.type, "string")

    def coerce(self, raw: str) -> Any:
        """The typed value of a query-string value. Raises ``ValueError`` whose message says
        what is required (``a number is required``)."""
        return coerce(self.kind, raw)

    def key(self, value: Any) -> str | None:
        """The index key of a typed value (as :meth:`coerce` returns or a document holds), or
        ``None`` when a value of that Python type never equals a value of this field."""
        return value_key(self.kind, value)


def coerce(kind: str, raw: str) -> Any:
    """A query-string value as a value of ``kind``; ``ValueError`` says what is required."""
    if kind == "integer":
        if _INTEGER.match(raw) and abs(int(raw)) <= MAX_INTEGER:
            return int(raw)
        raise ValueError("an integer is required")
    if kind == "number":
        try:
            number = Decimal(raw.strip())
        except InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite() or abs(number) > MAX_INTEGER or len(raw) > 64:
            raise ValueError("a number is required")
        return number
    if kind == "boolean":
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise ValueError("true or false is required")
    if kind == "date":
        try:
            if not _DATE.match(raw):
                raise ValueError(raw)
            date.fromisoformat(raw)
        except ValueError:
            raise ValueError("a date (YYYY-MM-DD) is required") from None
        return raw
    if kind == "date-time":
        if _moment_text(raw) is None:
            raise ValueError("a date and time (YYYY-MM-DDTHH:MM:SSZ) is required")
        return raw
    if kind == "time" and not _TIME.match(raw):
        raise ValueError("a time (HH:MM:SS) is required")
    return raw


def value_key(kind: str, value: Any) -> str | None:
    """The canonical text of ``value`` as a value of ``kind`` (equal values, equal texts:
    ``2025`` and ``2025``, ``0.50`` and ``0.5``, descriptor URIs in any case), or ``None`` when
    its Python type does not fit ``kind`` (a string never equals an integer)."""
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, float | Decimal) and math.isfinite(value) and value == int(value):
            return str(int(value))
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return None
        if isinstance(value, int):
            return str(value)
        number = value if isinstance(value, Decimal) else Decimal(repr(value))
        if not number.is_finite():
            return None
        return _decimal_text(number)
    if kind == "boolean":
        return ("true" if value else "false") if isinstance(value, bool) else None
    if not isinstance(value, str):
        return None
    if kind == "descriptor":
        return value.lower()  # descriptor URIs compare case-insensitively, as in the ODS/API
    if kind == "date-time":
        return _moment_text(value) or value
    return value


def _decimal_text(number: Decimal) -> str:
    number = number.normalize()
    return "0" if number.is_zero() else format(number, "f")


def _moment_text(text: str) -> str | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- from the ApiSchema: which paths a query field matches, and their types -------------------
def query_fields_of(resource: Mapping[str, Any]) -> dict[str, QueryField]:
    """The query fields of one ApiSchema resource schema.

    A field the ApiSchema maps to several paths matches any of them (the paths of one ODS/API
    column, as the Data Management Service reads them). A field mapped to one path whose member
    is the field's name is resolved again from ``documentPathsMapping``, because older ApiSchema
    generators kept one arbitrary path of all those ending in that name (DS 5.1 maps
    ``studentSchoolAssociations?schoolId`` to ``nextYearSchoolReference``): see
    :func:`column_paths`.
    """
    mapping = resource.get("queryFieldMapping", {}) or {}
    schema = resource.get("jsonSchemaForInsert") or {}
    descriptor_paths = {
        m["path"]
        for m in (resource.get("documentPathsMapping") or {}).values()
        if m.get("isDescriptor") and "path" in m
    }
    fields: dict[str, QueryField] = {}
    for name, entries in mapping.items():
        listed = [entry["path"] for entry in entries]
        declared = entries[0].get("type", "string") if entries else "string"
        if len(listed) == 1 and parse_path(listed[0]).steps and parse_path(listed[0]).leaf == name:
            texts = column_paths(resource, name, listed[0])
        else:
            texts = listed
        paths = tuple(parse_path(text) for text in texts)
        kinds = {
            "descriptor" if path.text in descriptor_paths else schema_type(schema, path)
            for path in paths
        }
        kinds.discard("")
        value_type = kinds.pop() if len(kinds) == 1 else ""
        fields[name] = QueryField(name, paths, declared, value_type)
    return fields


def schema_type(schema: Mapping[str, Any], path: JsonPath) -> str:
    """The value type ``schema`` gives ``path`` (``integer``, ``date`` …), or ``""`` if unknown."""
    node: Any = schema
    for name, is_array in path.steps:
        node = (node.get("properties") or {}).get(name) if isinstance(node, Mapping) else None
        if is_array and isinstance(node, Mapping):
            node = node.get("items")
        if not isinstance(node, Mapping):
            return ""
    kind = node.get("type")
    if kind == "string":
        fmt = node.get("format")
        return fmt if fmt in ("date", "date-time", "time") else "string"
    return kind if kind in ("integer", "number", "boolean") else ""


@dataclass(frozen=True, slots=True)
class _Candidate:
    path: str
    own: bool  # the resource's own member ($.name)
    origin: bool  # a plain (not role-named) reference to the resource the value belongs to


def column_paths(resource: Mapping[str, Any], name: str, listed: str) -> list[str]:
    """The paths of the ODS/API column that query field ``name`` filters on.

    Candidates are the top-level paths ending in ``name``: the resource's own member and the
    members of references at the top level of the document (paths inside arrays or nested
    objects are child tables in the ODS/API, not query fields). Paths tied by an equality
    constraint are one column (key unification) and are matched together. When several
    columns remain, the first rule that leaves one decides: the resource's own member; the
    column fed by a reference that is not role-named and whose target owns the value (an
    association's ``schoolReference.schoolId``, not ``nextYearSchoolReference.schoolId``, nor
    ``sessionReference.schoolId`` which a Session has from its School); the column in the
    resource's identity. A tie left after these rules matches any of its columns.
    """
    candidates = {listed: _Candidate(listed, listed == f"$.{name}", False)}
    for entry in (resource.get("documentPathsMapping") or {}).values():
        if not entry.get("isReference") or entry.get("isDescriptor"):
            path = entry.get("path")
            if path == f"$.{name}":
                candidates[path] = _Candidate(path, True, False)
            continue
        target = str(entry.get("resourceName", ""))
        for pair in entry.get("referenceJsonPaths", []):
            text = pair.get("referenceJsonPath", "")
            steps = parse_path(text).steps
            if len(steps) != 2 or steps[1][0] != name or any(a for _n, a in steps):
                continue
            plain = steps[0][0] == _lower_first(target) + "Reference"
            origin = plain and pair.get("identityJsonPath") == f"$.{name}"
            candidates[text] = _Candidate(text, False, origin)
    if len(candidates) == 1:
        return [listed]
    columns = _columns(candidates.values(), resource.get("equalityConstraints") or [])
    identity = set(resource.get("identityJsonPaths") or [])
    rules: tuple[Callable[[list[_Candidate]], bool], ...] = (
        lambda column: any(c.own for c in column),
        lambda column: any(c.origin for c in column),
        lambda column: any(c.path in identity for c in column),
    )
    for rule in rules:
        if len(columns) == 1:
            break
        kept = [column for column in columns if rule(column)]
        if kept:
            columns = kept
    chosen = [c.path for column in columns for c in column]
    return sorted(chosen, key=lambda p: (p not in identity, p != listed, p))


def _columns(
    candidates: Iterable[_Candidate], constraints: Iterable[Mapping[str, str]]
) -> list[list[_Candidate]]:
    """Candidates grouped into columns: paths tied (transitively) by equality constraints."""
    parent: dict[str, str] = {}

    def root(path: str) -> str:
        while parent.get(path, path) != path:
            path = parent[path]
        return path

    for constraint in constraints:
        a, b = root(constraint["sourceJsonPath"]), root(constraint["targetJsonPath"])
        if a != b:
            parent[a] = b
    groups: dict[str, list[_Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(root(candidate.path), []).append(candidate)
    return sorted(groups.values(), key=lambda column: min(c.path for c in column))


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


# -- the model's indexer, and ``where`` filters on query fields -------------------------------
class ModelIndexer:
    """The index entries of model documents: under each query field's name, the key of every
    value at its paths (typed as the ApiSchema types the path). Pure and thread-safe."""

    #: The version of the entries this class writes: change it when their form changes.
    FORMAT = 1

    def __init__(self, fields: Mapping[str, Mapping[str, QueryField]]) -> None:
        """``fields``: the query fields of each collection this indexer covers."""
        self._plans = {
            collection: tuple(
                (field.name, path, _KEYS.get(field.kind, _text_key))
                for field in by_name.values()
                for path in field.paths
            )
            for collection, by_name in fields.items()
        }
        described = sorted(
            (collection, field.name, field.kind, [p.text for p in field.paths])
            for collection, by_name in fields.items()
            for field in by_name.values()
        )
        self.fingerprint = canonical_hash(["ed-fi query fields", self.FORMAT, described])

    def entries(self, collection: str, body: Mapping[str, Any]) -> list[KeyEntry]:
        """One key entry per query-field value present in ``body``."""
        found: list[KeyEntry] = []
        for name, path, key_of in self._plans.get(collection, ()):
            if path.has_wildcard:
                for value in path.values(body):
                    key = key_of(value)
                    if key is not None:
                        found.append(KeyEntry(name, key))
                continue
            value = path.value(body)
            if value is not MISSING:
                key = key_of(value)
                if key is not None:
                    found.append(KeyEntry(name, key))
        return found


def _text_key(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _integer_key(value: Any) -> str | None:
    if type(value) is int:
        return str(value)
    return value_key("integer", value)


#: The key function of each value type (the others: :func:`value_key`).
_KEYS: dict[str, Callable[[Any], str | None]] = {
    "string": _text_key,
    "date": _text_key,
    "time": _text_key,
    "integer": _integer_key,
    **{
        kind: functools.partial(value_key, kind)
        for kind in ("number", "boolean", "descriptor", "date-time")
    },
}


def where_conditions(
    fields: Mapping[str, QueryField], where: Mapping[str, Any]
) -> tuple[list[KeyIn], dict[str, Any]] | None:
    """Split ``where`` into index conditions and the JSON-path filters left to scan.

    A key naming a query field matches that field (a string value is coerced to the field's
    type first; :class:`ParameterValidationError` names the field when it cannot be). A JSON
    path that is the single path of a query field is looked up in the index too, with the
    value taken as typed (``"2"`` never equals the integer ``2``). Other JSON paths stay
    filters on the stored JSON. ``None`` when some condition can never match.
    """
    by_path = {f.paths[0].text: f for f in fields.values() if len(f.paths) == 1}
    conditions: list[KeyIn] = []
    remaining: dict[str, Any] = {}
    for name, given in where.items():
        field = fields.get(name)
        value = given
        if field is None and name in by_path:
            field = by_path[name]
        elif field is not None and isinstance(given, str):
            try:
                value = field.coerce(given)
            except ValueError as exc:
                message = f"The value '{given[:40]}' is not valid for {name}: {exc}."
                raise ParameterValidationError(message, errors=[message]) from None
        elif field is None:
            if not name.startswith("$"):
                raise ParameterValidationError(
                    f"unknown query field {name!r}",
                    errors=[f"'{name}' is neither a query field nor a JSON path ($.a.b)."],
                )
            remaining[name] = given
            continue
        key = field.key(value)
        if key is None:
            return None
        conditions.append(KeyIn(field.name, [key]))
    return conditions, remaining
