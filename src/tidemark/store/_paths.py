"""The JSONPath subset of ApiSchema documents: ``$.a.b`` and ``$.a[*].b`` (any depth of ``[*]``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A parsed path: object member names, each optionally followed by ``[*]`` (iterate an array)."""

    text: str
    steps: tuple[tuple[str, bool], ...]
    #: True when the path crosses an array (``[*]``); computed once, read for every document.
    has_wildcard: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "has_wildcard", any(is_array for _n, is_array in self.steps))

    @property
    def parent(self) -> JsonPath:
        """The path without its last member (``$.a[*].b.c`` → ``$.a[*].b``)."""
        if not self.steps:
            raise ValueError("the root has no parent")
        name, _ = self.steps[-1]
        cut = self.text.rfind("." + name)
        return JsonPath(self.text[:cut] if cut > 0 else "$", self.steps[:-1])

    @property
    def leaf(self) -> str:
        """The last member name."""
        return self.steps[-1][0]

    def values(self, document: Any) -> list[Any]:
        """Every value at this path (arrays expanded); absent members yield nothing."""
        return list(_walk(document, self.steps, 0))

    def value(self, document: Any) -> Any:
        """The single value at a wildcard-free path, or :data:`MISSING`."""
        if self.has_wildcard:
            return MISSING
        node = document
        for name, _is_array in self.steps:
            if not isinstance(node, dict):
                return MISSING
            node = node.get(name, MISSING)
            if node is MISSING:
                return MISSING
        return node

    def relative_to(self, prefix: JsonPath) -> JsonPath:
        """This path with ``prefix``'s steps removed (``prefix`` must be a proper prefix)."""
        n = len(prefix.steps)
        if self.steps[:n] != prefix.steps:
            raise ValueError(f"{prefix.text} is not a prefix of {self.text}")
        rest = self.steps[n:]
        return JsonPath(
            "$" + "".join(f".{name}" + ("[*]" if arr else "") for name, arr in rest), rest
        )

    def __str__(self) -> str:
        return self.text


def _walk(node: Any, steps: tuple[tuple[str, bool], ...], index: int) -> Iterator[Any]:
    if index == len(steps):
        yield node
        return
    name, is_array = steps[index]
    if not isinstance(node, dict) or name not in node:
        return
    child = node[name]
    if is_array:
        if isinstance(child, list):
            for item in child:
                yield from _walk(item, steps, index + 1)
    else:
        yield from _walk(child, steps, index + 1)


@lru_cache(maxsize=8192)
def parse_path(text: str) -> JsonPath:
    """Parse ``$.a.b[*].c``. Raises ``ValueError`` for anything outside the subset."""
    if text == "$":
        return JsonPath(text, ())
    if not text.startswith("$."):
        raise ValueError(f"unsupported JSON path {text!r}: must start with '$.'")
    steps: list[tuple[str, bool]] = []
    for part in text[2:].split("."):
        is_array = part.endswith("[*]")
        name = part[:-3] if is_array else part
        if not name or not name.replace("_", "").isalnum():
            raise ValueError(f"unsupported JSON path {text!r}: bad member {part!r}")
        steps.append((name, is_array))
    return JsonPath(text, tuple(steps))


def iter_locations(document: Any, path: JsonPath) -> list[tuple[str, Any]]:
    """Each value at ``path`` with its concrete location (``$.a[2].b``), for error messages."""
    found: list[tuple[str, Any]] = [("$", document)]
    for name, is_array in path.steps:
        following: list[tuple[str, Any]] = []
        for where, node in found:
            if not isinstance(node, dict) or name not in node:
                continue
            child = node[name]
            if not is_array:
                following.append((f"{where}.{name}", child))
            elif isinstance(child, list):
                following.extend((f"{where}.{name}[{i}]", item) for i, item in enumerate(child))
        if not following:
            return following
        found = following
    return found
