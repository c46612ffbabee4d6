"""FHIRPath Patch (a ``Parameters`` body of ``operation`` parameters) applied to a resource (pure).

Paths are the FHIRPath subset patches use: element names (a choice element by its base name,
``Observation.value``), ``[n]``, ``first()``, ``last()``, ``extension('url')`` and
``where(a.b = 'x' and c = 1)``. Whether a missing element repeats (``add`` appends to an array
or sets a single value) is asked of ``repeats``, which knows the resource definitions.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tidemark.core import BadRequestError, UnprocessableError

#: ``repeats(resource_type, element_names)``: whether the element at that path (names from the
#: resource root, e.g. ``["name", "given"]``) is an array; ``None`` when it cannot tell.
RepeatsOracle = Callable[[str, Sequence[str]], bool | None]

_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<string>'(?:[^'\\]|\\.)*')|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<punct>[.\[\]()=,]))"
)


@dataclass
class _Node:
    """An element a path selected: where it sits (``holder[key]`` or ``holder[key][index]``)."""

    holder: dict[str, Any] | None
    key: str | None
    index: int | None
    value: Any
    names: tuple[str, ...]

    def set(self, value: Any) -> None:
        assert self.holder is not None and self.key is not None
        if self.index is None:
            self.holder[self.key] = value
        else:
            self.holder[self.key][self.index] = value

    def remove(self) -> None:
        assert self.holder is not None and self.key is not None
        if self.index is None:
            del self.holder[self.key]
            return
        items = self.holder[self.key]
        del items[self.index]
        if not items:
            del self.holder[self.key]


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise BadRequestError(f"FHIRPath Patch: cannot read the path {text!r}.")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Path:
    """A parsed patch path, evaluated against a resource."""

    def __init__(self, text: str, resource_type: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.position = 0
        self.resource_type = resource_type

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self, value: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token is None or (value is not None and token[1] != value):
            raise BadRequestError(f"FHIRPath Patch: unexpected end or token in {self.text!r}.")
        self.position += 1
        return token

    def evaluate(self, resource: dict[str, Any]) -> list[_Node]:
        self.position = 0
        nodes = [_Node(None, None, None, resource, ())]
        first = self._peek()
        if first is not None and first[0] == "name" and first[1] == self.resource_type:
            self._take()
        elif first is not None and first[0] == "name" and first[1][:1].isupper():
            raise UnprocessableError(
                f"FHIRPath Patch: the path {self.text!r} is not on a {self.resource_type}."
            )
        else:
            self.position = 0
            nodes = self._step(nodes, self._take("." if first == ("punct", ".") else None))
        while self._peek() is not None:
            token = self._take()
            if token == ("punct", "."):
                nodes = self._step(nodes, self._take())
            elif token == ("punct", "["):
                index = int(self._take()[1])
                self._take("]")
                nodes = nodes[index : index + 1]
            else:
                raise BadRequestError(f"FHIRPath Patch: unexpected {token[1]!r} in {self.text!r}.")
        return nodes

    def _step(self, nodes: list[_Node], token: tuple[str, str]) -> list[_Node]:
        kind, name = token
        if kind != "name":
            raise BadRequestError(f"FHIRPath Patch: expected a name in {self.text!r}.")
        if self._peek() == ("punct", "("):
            return self._function(nodes, name)
        return [child for node in nodes for child in _children(node, name)]

    def _function(self, nodes: list[_Node], name: str) -> list[_Node]:
        self._take("(")
        if name == "first":
            self._take(")")
            return nodes[:1]
        if name == "last":
            self._take(")")
            return nodes[-1:]
        if name == "extension":
            url = _literal(self._take())
            self._take(")")
            return [
                child
                for node in nodes
                for child in _children(node, "extension")
                if isinstance(child.value, dict) and child.value.get("url") == url
            ]
        if name == "where":
            conditions: list[tuple[list[str], Any]] = []
            while True:
                path = [self._take()[1]]
                while self._peek() == ("punct", "."):
                    self._take()
                    path.append(self._take()[1])
                self._take("=")
                conditions.append((path, _literal(self._take())))
                if self._peek() == ("name", "and"):
                    self._take()
                    continue
                self._take(")")
                break
            return [node for node in nodes if all(_holds(node.value, p, v) for p, v in conditions)]
        raise UnprocessableError(f"FHIRPath Patch: the function {name}() is not supported.")


def _children(node: _Node, name: str) -> list[_Node]:
    value = node.value
    if not isinstance(value, dict):
        return []
    keys = (
        [name]
        if name in value
        else [k for k in value if k.startswith(name) and k[len(name) : len(name) + 1].isupper()]
    )
    found: list[_Node] = []
    for key in keys:
        child = value[key]
        names = (*node.names, name)
        if isinstance(child, list):
            found += [_Node(value, key, i, item, names) for i, item in enumerate(child)]
        else:
            found.append(_Node(value, key, None, child, names))
    return found


def _literal(token: tuple[str, str]) -> Any:
    kind, text = token
    if kind == "string":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if kind == "number":
        return float(text) if "." in text else int(text)
    if kind == "name" and text in ("true", "false"):
        return text == "true"
    raise BadRequestError(f"FHIRPath Patch: {text!r} is not a literal.")


def _holds(value: Any, path: Sequence[str], wanted: Any) -> bool:
    current = [value]
    for name in path:
        following: list[Any] = []
        for item in current:
            if isinstance(item, dict) and name in item:
                child = item[name]
                following += child if isinstance(child, list) else [child]
        current = following
    return any(item == wanted and type(item) is type(wanted) for item in current)


# -- the operations ------------------------------------------------------------------------------
def _parts(parameter: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    parts: dict[str, Mapping[str, Any]] = {}
    for part in parameter.get("part") or ():
        if isinstance(part, Mapping) and isinstance(part.get("name"), str):
            parts[part["name"]] = part
    return parts


def _value_of(part: Mapping[str, Any] | None) -> Any:
    """The value a ``value`` part carries: its ``value[x]``, or a complex value made of parts."""
    if part is None:
        raise BadRequestError("FHIRPath Patch: the operation needs a value.")
    for key, value in part.items():
        if key.startswith("value") and key != "value":
            return copy.deepcopy(value)
    if isinstance(part.get("part"), list):
        built: dict[str, Any] = {}
        for child in part["part"]:
            if not isinstance(child, Mapping) or not isinstance(child.get("name"), str):
                continue
            item = _value_of(child)
            name = child["name"]
            if name in built:
                existing = built[name]
                built[name] = [*existing, item] if isinstance(existing, list) else [existing, item]
            else:
                built[name] = item
        return built
    raise BadRequestError("FHIRPath Patch: the value part has no value[x] and no parts.")


def _string(parts: Mapping[str, Mapping[str, Any]], name: str) -> str:
    part = parts.get(name)
    value = part.get("valueString") if part else None
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"FHIRPath Patch: the operation needs a {name} (valueString).")
    return value


def _integer(parts: Mapping[str, Mapping[str, Any]], name: str) -> int:
    part = parts.get(name)
    value = part.get("valueInteger") if part else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequestError(f"FHIRPath Patch: the operation needs a {name} (valueInteger >= 0).")
    return value


def _one(nodes: list[_Node], path: str, operation: str) -> _Node:
    if len(nodes) != 1:
        raise UnprocessableError(
            f"FHIRPath Patch: {operation} needs the path {path!r} to select one element; "
            f"it selects {len(nodes)}."
        )
    return nodes[0]


def _list_at(
    resource: dict[str, Any], resource_type: str, path: str, operation: str
) -> tuple[dict[str, Any], str, list[Any]]:
    """The array a path names (``Patient.identifier``): its holder, member name and items."""
    head, dot, name = path.rpartition(".")
    if not dot or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name):
        raise BadRequestError(
            f"FHIRPath Patch: {operation} needs a path ending in an element name."
        )
    holder = _one(_Path(head, resource_type).evaluate(resource), head, operation).value
    if not isinstance(holder, dict):
        raise UnprocessableError(f"FHIRPath Patch: {head!r} is not an element with children.")
    items = holder.get(name, [])
    if not isinstance(items, list):
        raise UnprocessableError(f"FHIRPath Patch: {path!r} is not a repeating element.")
    return holder, name, items


def apply_fhirpath_patch(
    resource: Mapping[str, Any], parameters: Mapping[str, Any], repeats: RepeatsOracle
) -> dict[str, Any]:
    """``resource`` after the FHIRPath Patch ``parameters`` (a Parameters resource); the input
    is not changed. Every operation applies, in order, or none (the error is raised).

    Raises 400 for a malformed patch, 422 for one that does not fit the resource.
    """
    result = copy.deepcopy(dict(resource))
    resource_type = str(result.get("resourceType", ""))
    operations = [
        p
        for p in parameters.get("parameter") or ()
        if isinstance(p, Mapping) and p.get("name") == "operation"
    ]
    if not operations:
        raise BadRequestError("FHIRPath Patch: the Parameters hold no operation.")
    for operation in operations:
        parts = _parts(operation)
        kind = (parts.get("type") or {}).get("valueCode")
        path = _string(parts, "path")
        if kind == "replace":
            node = _one(_Path(path, resource_type).evaluate(result), path, "replace")
            node.set(_value_of(parts.get("value")))
        elif kind == "delete":
            nodes = _Path(path, resource_type).evaluate(result)
            if len(nodes) > 1:
                _one(nodes, path, "delete")
            for node in nodes:
                if node.holder is None:
                    raise UnprocessableError(
                        "FHIRPath Patch: the resource itself cannot be deleted."
                    )
                node.remove()
        elif kind == "add":
            node = _one(_Path(path, resource_type).evaluate(result), path, "add")
            name = _string(parts, "name")
            value = _value_of(parts.get("value"))
            if not isinstance(node.value, dict):
                raise UnprocessableError(f"FHIRPath Patch: {path!r} cannot have children.")
            existing = node.value.get(name)
            if isinstance(existing, list):
                existing.append(value)
            elif existing is not None:
                raise UnprocessableError(
                    f"FHIRPath Patch: {path}.{name} already has a value; use replace."
                )
            else:
                array = repeats(resource_type, (*node.names, name))
                if array is None:
                    raise UnprocessableError(
                        f"FHIRPath Patch: cannot tell whether {resource_type}.{name} repeats; "
                        "the server needs the FHIR packages that define it (--fhir-package)."
                    )
                node.value[name] = [value] if array else value
        elif kind == "insert":
            holder, name, items = _list_at(result, resource_type, path, "insert")
            index = _integer(parts, "index")
            if index > len(items):
                raise UnprocessableError(
                    f"FHIRPath Patch: index {index} is past the end of {path} ({len(items)})."
                )
            holder[name] = [*items[:index], _value_of(parts.get("value")), *items[index:]]
        elif kind == "move":
            holder, name, items = _list_at(result, resource_type, path, "move")
            source, destination = _integer(parts, "source"), _integer(parts, "destination")
            if source >= len(items) or destination >= len(items):
                raise UnprocessableError(
                    f"FHIRPath Patch: move {source} → {destination} is outside {path} "
                    f"({len(items)} items)."
                )
            moved = items.pop(source)
            items.insert(destination, moved)
        else:
            raise BadRequestError(
                f"FHIRPath Patch: unknown operation type {kind!r} (add, insert, delete, "
                "replace, move)."
            )
    return result
