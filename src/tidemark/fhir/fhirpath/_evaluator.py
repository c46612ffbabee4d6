"""A sound FHIRPath evaluator over FHIR JSON: parser, collections, operators and functions.

Soundness over coverage: anything outside the subset (an unknown function, a type test whose
answer is not known from the JSON, terminology, ``resolve()``, date arithmetic...) raises
:class:`FhirPathUnsupported` and the caller skips the invariant instead of guessing. The
supported subset is listed in ``docs/fhirschema-decisions.md``.

Collections are Python lists of :class:`Item`; ``evaluate`` returns such a list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from ._model import CHOICE_NAMES, COMPLEX_TYPES, PRIMITIVE_TYPES, SUPERTYPES


class FhirPathUnsupported(Exception):
    """The expression uses something this evaluator does not implement (or cannot decide)."""


class Item(NamedTuple):
    """One value in a collection; ``type_name`` when the JSON tells it (choice suffix, resource)."""

    value: Any
    type_name: str | None = None


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>@[0-9T][0-9T:.+\-Z]*)
  | (?P<number>[0-9]+(?:\.[0-9]+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]*`)
  | (?P<var>%[A-Za-z_][A-Za-z0-9_]*|%`[^`]*`|%'[^']*')
  | (?P<special>\$this|\$index|\$total)
  | (?P<op><=|>=|!=|!~|[-+*/|&=~<>.,()\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)

_KEYWORD_OPS = frozenset(
    ("and", "or", "xor", "implies", "in", "contains", "is", "as", "div", "mod")
)

# Binary operator precedence (higher binds tighter), from the FHIRPath specification.
_PRECEDENCE = {
    "*": 7,
    "/": 7,
    "div": 7,
    "mod": 7,
    "+": 6,
    "-": 6,
    "&": 6,
    "is": 5,
    "as": 5,
    "|": 4,
    "<": 3,
    ">": 3,
    "<=": 3,
    ">=": 3,
    "=": 2,
    "~": 2,
    "!=": 2,
    "!~": 2,
    "in": 1,
    "contains": 1,
    "and": 0,
    "or": -1,
    "xor": -1,
    "implies": -2,
}

Node = tuple[Any, ...]


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise FhirPathUnsupported(f"cannot read FHIRPath at {text[pos : pos + 20]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind == "ws":
            continue
        value = match.group()
        if kind == "ident" and value in _KEYWORD_OPS:
            kind = "op"
        tokens.append((kind, value))
    tokens.append(("end", ""))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        got = self.take()[1]
        if got != value:
            raise FhirPathUnsupported(f"expected {value!r}, found {got!r}")

    def parse(self) -> Node:
        node = self.expression(-10)
        if self.peek()[0] != "end":
            raise FhirPathUnsupported(f"unexpected {self.peek()[1]!r}")
        return node

    def expression(self, min_precedence: int) -> Node:
        left = self.unary()
        while True:
            kind, value = self.peek()
            precedence = _PRECEDENCE.get(value) if kind == "op" else None
            if precedence is None or precedence < min_precedence:
                return left
            self.take()
            if value in ("is", "as"):
                left = ("typeop", value, left, self.type_specifier())
                continue
            right = self.expression(precedence + 1)
            left = ("binary", value, left, right)

    def type_specifier(self) -> str:
        kind, name = self.take()
        if kind != "ident":
            raise FhirPathUnsupported("expected a type name")
        while self.peek()[1] == ".":
            self.take()
            name = f"{name}.{self.take()[1]}"
        return name.rsplit(".", 1)[-1].strip("`")

    def unary(self) -> Node:
        kind, value = self.peek()
        if kind == "op" and value in ("+", "-"):
            self.take()
            return ("negate" if value == "-" else "plus", self.unary())
        return self.postfix()

    def postfix(self) -> Node:
        node = self.term()
        while True:
            value = self.peek()[1]
            if value == ".":
                self.take()
                node = self.invocation(node)
            elif value == "[":
                self.take()
                index = self.expression(-10)
                self.expect("]")
                node = ("index", node, index)
            else:
                return node

    def invocation(self, focus: Node | None) -> Node:
        kind, name = self.take()
        if kind != "ident" and not (kind == "op" and name.isalpha()):
            raise FhirPathUnsupported(f"expected a name after '.', found {name!r}")
        name = name.strip("`")
        if self.peek()[1] == "(":
            self.take()
            args: list[Node] = []
            if self.peek()[1] != ")":
                args.append(self.expression(-10))
                while self.peek()[1] == ",":
                    self.take()
                    args.append(self.expression(-10))
            self.expect(")")
            return ("call", focus, name, args)
        return ("member", focus, name)

    def term(self) -> Node:
        kind, value = self.peek()
        if value == "(":
            self.take()
            node = self.expression(-10)
            self.expect(")")
            return node
        if value == "{":
            self.take()
            self.expect("}")
            return ("literal", [])
        if kind == "string":
            self.take()
            return ("literal", [Item(_unescape(value[1:-1]), "string")])
        if kind == "number":
            self.take()
            number: int | float = float(value) if "." in value else int(value)
            return ("literal", [Item(number, "decimal" if "." in value else "integer")])
        if kind == "datetime":
            self.take()
            return ("literal", [Item(value[1:], "dateTime")])
        if kind == "var":
            self.take()
            return ("var", value[1:].strip("`'"))
        if kind == "special":
            self.take()
            return ("special", value)
        if kind == "op" and value.isalpha() and self.tokens[self.pos + 1][1] == "(":
            return self.invocation(None)  # a function named like an operator: as(), is()...
        if kind == "ident":
            if value in ("true", "false"):
                self.take()
                return ("literal", [Item(value == "true", "boolean")])
            return self.invocation(None)
        raise FhirPathUnsupported(f"unexpected {value!r}")


def _unescape(text: str) -> str:
    replacements = {"\\'": "'", '\\"': '"', "\\\\": "\\", "\\n": "\n", "\\t": "\t", "\\r": "\r"}
    return re.sub(r"\\.", lambda m: replacements.get(m.group(), m.group()[1:]), text)


@lru_cache(maxsize=2048)
def parse(expression: str) -> Node:
    """Parse ``expression``; raises :class:`FhirPathUnsupported` for syntax outside the subset."""
    return _Parser(expression).parse()


@dataclass
class _Context:
    variables: dict[str, list[Item]]
    this: list[Item]
    index: int | None = None


def _items_of(value: Any, type_name: str | None = None) -> list[Item]:
    if value is None:
        return []
    if type(value) is list:
        return [Item(v, type_name) for v in value if v is not None]
    return [Item(value, type_name)]


def _resource_type(item: Item) -> str | None:
    if isinstance(item.value, Mapping) and isinstance(item.value.get("resourceType"), str):
        return str(item.value["resourceType"])
    return item.type_name


#: Type tag of an item standing for a primitive that has only an extension (``_birthDate``).
EXTENSION_ONLY = "$extension-only"


def _primitive_extensions(value: Mapping[str, Any], name: str) -> list[Item]:
    """Items for ``_name`` entries whose primitive value is absent: the element still exists."""
    extra = value.get("_" + name)
    primary = value.get(name)
    if isinstance(extra, Mapping) and primary is None:
        return [Item(extra, EXTENSION_ONLY)]
    if isinstance(extra, list):
        values = primary if isinstance(primary, list) else []
        return [
            Item(ext, EXTENSION_ONLY)
            for i, ext in enumerate(extra)
            if isinstance(ext, Mapping) and (i >= len(values) or values[i] is None)
        ]
    return []


class Unresolved(dict[str, Any]):
    """What ``resolve()`` gives for a reference to another resource: its type and id only.

    Navigating into it (beyond ``id``) raises :class:`FhirPathUnsupported`: the referenced
    resource is not read, so its content is not known.
    """


def _member(items: list[Item], name: str) -> list[Item]:
    result: list[Item] = []
    underscored = "_" + name
    for item in items:
        value = item.value
        if type(value) is not dict:
            if isinstance(value, Unresolved):
                if name not in ("id", "resourceType"):
                    raise FhirPathUnsupported("resolve() gives only the type and id of a resource")
            elif not isinstance(value, Mapping):
                if name in ("extension", "id"):
                    raise FhirPathUnsupported("extensions of primitive values are not navigated")
                continue
        if name in value:
            result += _items_of(value[name])
            if underscored in value:
                result += _primitive_extensions(value, name)
            continue
        if underscored in value:
            result += _primitive_extensions(value, name)
            continue
        if name[:1].isupper() and value.get("resourceType") == name:
            result.append(item)
            continue
        if name not in CHOICE_NAMES:
            continue
        for key, child in value.items():
            if key.startswith(name) and len(key) > len(name):
                type_name = _TYPE_SUFFIXES.get(key[len(name) :])
                if type_name is not None:
                    result += _items_of(child, type_name) + _primitive_extensions(value, key)
        for key in value:
            if key.startswith("_" + name) and key[1:] not in value:
                type_name = _TYPE_SUFFIXES.get(key[len(name) + 1 :])
                if type_name is not None:
                    result += _primitive_extensions(value, key[1:])
    return result


#: JSON suffix of a choice element → the type it names (``valueDateTime`` → ``dateTime``).
_TYPE_SUFFIXES = {p[:1].upper() + p[1:]: p for p in PRIMITIVE_TYPES} | {c: c for c in COMPLEX_TYPES}


def _singleton(items: list[Item]) -> Item | None:
    if not items:
        return None
    if len(items) > 1:
        raise FhirPathUnsupported("a collection of more than one item where one was expected")
    return items[0]


def _truth(items: list[Item]) -> bool | None:
    """Boolean evaluation of a collection: empty → None, single boolean → it, single item → True."""
    item = _singleton(items)
    if item is None:
        return None
    if isinstance(item.value, bool):
        return item.value
    return True


def _bool(value: bool | None) -> list[Item]:
    return [] if value is None else [Item(value, "boolean")]


def _check_comparable(items: list[Item]) -> None:
    if any(item.type_name == EXTENSION_ONLY for item in items):
        raise FhirPathUnsupported("comparing a primitive that has only an extension")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _equivalent(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    return _equal(a, b)


def _distinct(items: list[Item]) -> list[Item]:
    result: list[Item] = []
    for item in items:
        if not any(_equal(item.value, seen.value) for seen in result):
            result.append(item)
    return result


def _compare(op: str, a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        a, b = _comparable_quantities(a, b)
    if isinstance(a, bool) or isinstance(b, bool):
        raise FhirPathUnsupported("booleans are not ordered")
    both_numbers = isinstance(a, int | float) and isinstance(b, int | float)
    both_strings = isinstance(a, str) and isinstance(b, str)
    if not (both_numbers or both_strings):
        raise FhirPathUnsupported("comparison of values of different kinds")
    if both_strings and (_looks_temporal(a) or _looks_temporal(b)) and len(a) != len(b):
        raise FhirPathUnsupported("comparison of dates with different precision")
    if op == "<":
        return bool(a < b)
    if op == ">":
        return bool(a > b)
    if op == "<=":
        return bool(a <= b)
    return bool(a >= b)


def _comparable_quantities(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[Any, Any]:
    """The values of two quantities in the same unit; unsupported when units differ."""
    unit_a = (a.get("system"), a.get("code") or a.get("unit"))
    unit_b = (b.get("system"), b.get("code") or b.get("unit"))
    if "value" not in a or "value" not in b or unit_a != unit_b:
        raise FhirPathUnsupported("comparison of quantities without values or in other units")
    if a.get("comparator") or b.get("comparator"):
        raise FhirPathUnsupported("comparison of quantities with a comparator")
    return a["value"], b["value"]


def _looks_temporal(text: str) -> bool:
    return bool(re.match(r"\d{4}(-\d\d)?", text)) or bool(re.match(r"\d\d:\d\d", text))


class _Evaluator:
    def __init__(self, variables: dict[str, list[Item]]) -> None:
        self.variables = variables

    def eval(self, node: Node, focus: list[Item], ctx: _Context) -> list[Item]:
        kind = node[0]
        if kind == "member":
            base = focus if node[1] is None else self.eval(node[1], focus, ctx)
            return _member(base, node[2])
        if kind == "literal":
            return list(node[1])
        if kind == "call":
            base = focus if node[1] is None else self.eval(node[1], focus, ctx)
            return self.call(node[2], base, node[3], ctx)
        if kind == "index":
            base = self.eval(node[1], focus, ctx)
            index = _singleton(self.eval(node[2], focus, ctx))
            if index is None or not isinstance(index.value, int) or isinstance(index.value, bool):
                raise FhirPathUnsupported("indexer must be an integer")
            return [base[index.value]] if 0 <= index.value < len(base) else []
        if kind == "var":
            found = self.variables.get(node[1]) or _CONSTANTS.get(node[1])
            if found is None:
                if node[1] in self.variables:
                    return []
                raise FhirPathUnsupported(f"unknown variable %{node[1]}")
            return list(found)
        if kind == "special":
            if node[1] == "$this":
                return list(ctx.this)
            if node[1] == "$index" and ctx.index is not None:
                return [Item(ctx.index, "integer")]
            raise FhirPathUnsupported(node[1])
        if kind in ("negate", "plus"):
            items = self.eval(node[1], focus, ctx)
            item = _singleton(items)
            if item is None:
                return []
            if not isinstance(item.value, int | float) or isinstance(item.value, bool):
                raise FhirPathUnsupported("unary sign on a non-number")
            return [Item(-item.value if kind == "negate" else item.value, item.type_name)]
        if kind == "typeop":
            items = self.eval(node[2], focus, ctx)
            if node[1] == "is":
                item = _singleton(items)
                return [] if item is None else [Item(self.is_type(item, node[3]), "boolean")]
            return [i for i in items if self.is_type(i, node[3])]
        if kind == "binary":
            return self.binary(node[1], node[2], node[3], focus, ctx)
        raise FhirPathUnsupported(kind)

    def is_type(self, item: Item, type_name: str) -> bool:
        actual = _resource_type(item)
        if actual is None:
            raise FhirPathUnsupported(f"the type of a value is not known (testing {type_name})")
        wanted = type_name.lower()
        if wanted in ("resource", "domainresource") and isinstance(item.value, Mapping):
            kind = item.value.get("resourceType")
            if isinstance(kind, str):
                return wanted == "resource" or kind not in ("Bundle", "Binary", "Parameters")
        name: str | None = actual
        while name is not None:
            if name.lower() == wanted:
                return True
            name = SUPERTYPES.get(name)
        return False

    def binary(
        self, op: str, left_node: Node, right_node: Node, focus: list[Item], ctx: _Context
    ) -> list[Item]:
        if op in ("and", "or", "xor", "implies"):
            left = _truth(self.eval(left_node, focus, ctx))
            if op == "and" and left is False:
                return _bool(False)
            if op == "or" and left is True:
                return _bool(True)
            if op == "implies" and left is False:
                return _bool(True)
            right = _truth(self.eval(right_node, focus, ctx))
            if op == "and":
                if right is False:
                    return _bool(False)
                return _bool(True) if left is True and right is True else []
            if op == "or":
                if right is True:
                    return _bool(True)
                return _bool(False) if left is False and right is False else []
            if op == "xor":
                return [] if left is None or right is None else _bool(left != right)
            if right is True:
                return _bool(True)
            return _bool(False) if left is True and right is False else []
        left_items = self.eval(left_node, focus, ctx)
        right_items = self.eval(right_node, focus, ctx)
        if op != "|":
            _check_comparable(left_items)
            _check_comparable(right_items)
        if op == "|":
            return _distinct(left_items + right_items)
        if op in ("in", "contains"):
            needle, haystack = (
                (left_items, right_items) if op == "in" else (right_items, left_items)
            )
            item = _singleton(needle)
            if item is None:
                return []
            return _bool(any(_equal(item.value, h.value) for h in haystack))
        if op in ("=", "!="):
            if not left_items or not right_items:
                return []
            same = len(left_items) == len(right_items) and all(
                _equal(a.value, b.value) for a, b in zip(left_items, right_items, strict=True)
            )
            return _bool(same if op == "=" else not same)
        if op in ("~", "!~"):
            same = len(left_items) == len(right_items) and all(
                _equivalent(a.value, b.value) for a, b in zip(left_items, right_items, strict=True)
            )
            return _bool(same if op == "~" else not same)
        lhs, rhs = _singleton(left_items), _singleton(right_items)
        if op == "&":
            return [Item(_text(lhs) + _text(rhs), "string")]
        if lhs is None or rhs is None:
            return []
        if op in ("<", ">", "<=", ">="):
            return _bool(_compare(op, lhs.value, rhs.value))
        return self.arithmetic(op, lhs.value, rhs.value)

    def arithmetic(self, op: str, a: Any, b: Any) -> list[Item]:
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return [Item(a + b, "string")]
        numbers = (int, float)
        if (
            isinstance(a, bool)
            or isinstance(b, bool)
            or not (isinstance(a, numbers) and isinstance(b, numbers))
        ):
            raise FhirPathUnsupported(f"arithmetic {op} on non-numbers")
        if op == "+":
            return [Item(a + b)]
        if op == "-":
            return [Item(a - b)]
        if op == "*":
            return [Item(a * b)]
        if b == 0:
            return []
        if op == "/":
            return [Item(a / b, "decimal")]
        if op == "div":
            return [Item(int(a // b), "integer")]
        return [Item(a % b)]

    def call(self, name: str, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
        function = _FUNCTIONS.get(name)
        if function is None:
            raise FhirPathUnsupported(f"function {name}()")
        return function(self, focus, args, ctx)  # type: ignore[no-any-return]

    def each(self, focus: list[Item], node: Node, ctx: _Context) -> list[list[Item]]:
        results = []
        for index, item in enumerate(focus):
            inner = _Context(ctx.variables, [item], index)
            results.append(self.eval(node, [item], inner))
        return results


def _text(item: Item | None) -> str:
    return "" if item is None else str(item.value)


def _arity(args: Sequence[Node], *allowed: int) -> None:
    if len(args) not in allowed:
        raise FhirPathUnsupported("wrong number of arguments")


def _string_arg(ev: _Evaluator, args: Sequence[Node], ctx: _Context) -> str:
    item = _singleton(ev.eval(args[0], ctx.this, ctx))
    if item is None or not isinstance(item.value, str):
        raise FhirPathUnsupported("expected a string argument")
    return item.value


def _string_focus(focus: list[Item]) -> str | None:
    item = _singleton(focus)
    if item is None:
        return None
    if not isinstance(item.value, str):
        raise FhirPathUnsupported("string function on a non-string")
    return item.value


def _fn_exists(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 0, 1)
    if args:
        focus = _fn_where(ev, focus, args, ctx)
    return _bool(bool(focus))


def _fn_empty(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 0)
    return _bool(not focus)


def _fn_not(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 0)
    value = _truth(focus)
    return [] if value is None else _bool(not value)


def _fn_count(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 0)
    return [Item(len(focus), "integer")]


def _fn_has_value(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 0)
    item = focus[0] if len(focus) == 1 else None
    return _bool(
        item is not None
        and item.type_name != EXTENSION_ONLY
        and not isinstance(item.value, Mapping | list)
    )


def _fn_where(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 1)
    return [
        item
        for item, result in zip(focus, ev.each(focus, args[0], ctx), strict=True)
        if _truth(result) is True
    ]


def _fn_all(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 1)
    return _bool(all(_truth(result) is True for result in ev.each(focus, args[0], ctx)))


def _fn_select(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 1)
    return [item for result in ev.each(focus, args[0], ctx) for item in result]


def _fn_first(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 0)
    return focus[:1]


def _fn_last(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 0)
    return focus[-1:]


def _fn_tail(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 0)
    return focus[1:]


def _fn_single(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 0)
    item = _singleton(focus)
    return [] if item is None else [item]


def _fn_distinct(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 0)
    return _distinct(focus)


def _fn_is_distinct(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 0)
    return _bool(len(_distinct(focus)) == len(focus))


def _fn_children(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 0)
    result: list[Item] = []
    for item in focus:
        if isinstance(item.value, Mapping):
            for key, child in item.value.items():
                if key != "resourceType":
                    result += _items_of(child)
    return result


def _fn_descendants(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 0)
    result: list[Item] = []
    layer = _fn_children(ev, focus, (), ctx)
    while layer:
        result += layer
        layer = _fn_children(ev, layer, (), ctx)
    return result


def _type_argument(node: Node) -> str:
    """The type name an ``ofType``/``as``/``is`` argument names (``Quantity``, ``FHIR.uri``)."""
    if node[0] == "member" and (node[1] is None or node[1][0] == "member"):
        return str(node[2])
    raise FhirPathUnsupported("expected a type name")


def _fn_of_type(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 1)
    type_name = _type_argument(args[0])
    return [item for item in focus if ev.is_type(item, type_name)]


def _fn_as(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 1)
    type_name = _type_argument(args[0])
    return [item for item in focus if ev.is_type(item, type_name)]


def _fn_is(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 1)
    item = _singleton(focus)
    return [] if item is None else _bool(ev.is_type(item, _type_argument(args[0])))


_REFERENCE = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)


def _contained(roots: list[Item], id: str) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = []
    for root in roots:
        contained = root.value.get("contained") if isinstance(root.value, Mapping) else None
        found.extend(
            resource
            for resource in (contained if isinstance(contained, list) else [])
            if isinstance(resource, Mapping) and resource.get("id") == id
        )
    return found


def _fn_resolve(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    """Contained resources resolve fully; other references to their type and id only."""
    _arity(args, 0)
    result: list[Item] = []
    for item in focus:
        value = item.value
        target = value.get("reference") if isinstance(value, Mapping) else None
        if not isinstance(target, str):
            if isinstance(value, str):
                raise FhirPathUnsupported("resolve() of a canonical or uri")
            continue
        if target.startswith("#"):
            root = ev.variables.get("rootResource") or ev.variables.get("resource") or []
            result.extend(Item(found) for found in _contained(root, target[1:]))
            continue
        match = _REFERENCE.search(target)
        if match is not None:
            stub = Unresolved(resourceType=match["type"], id=match["id"])
            result.append(Item(stub, match["type"]))
    return result


def _fn_union(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 1)
    return _distinct(focus + ev.eval(args[0], ctx.this, ctx))


def _fn_combine(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 1)
    return focus + ev.eval(args[0], ctx.this, ctx)


def _fn_intersect(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 1)
    other = ev.eval(args[0], ctx.this, ctx)
    return _distinct([i for i in focus if any(_equal(i.value, o.value) for o in other)])


def _fn_exclude(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 1)
    other = ev.eval(args[0], ctx.this, ctx)
    return [i for i in focus if not any(_equal(i.value, o.value) for o in other)]


def _fn_subset_of(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 1)
    other = ev.eval(args[0], ctx.this, ctx)
    return _bool(all(any(_equal(i.value, o.value) for o in other) for i in focus))


def _fn_superset_of(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 1)
    other = ev.eval(args[0], ctx.this, ctx)
    return _bool(all(any(_equal(o.value, i.value) for i in focus) for o in other))


def _fn_repeat(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 1)
    result: list[Item] = []
    layer = focus
    while layer:
        fresh = [
            item
            for found in ev.each(layer, args[0], ctx)
            for item in found
            if not any(item.value is seen.value for seen in result)
        ]
        result += fresh
        layer = fresh
    return result


def _integer_argument(ev: _Evaluator, node: Node, ctx: _Context) -> int:
    item = _singleton(ev.eval(node, ctx.this, ctx))
    if item is None or not isinstance(item.value, int) or isinstance(item.value, bool):
        raise FhirPathUnsupported("expected an integer argument")
    return item.value


def _fn_skip(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 1)
    return focus[max(0, _integer_argument(ev, args[0], ctx)) :]


def _fn_take(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 1)
    return focus[: max(0, _integer_argument(ev, args[0], ctx))]


def _fn_replace_matches(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 2)
    text = _string_focus(focus)
    if text is None:
        return []
    pattern, replacement = (_string_arg(ev, [arg], ctx) for arg in args)
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as exc:
        raise FhirPathUnsupported(f"regex: {exc}") from exc
    # FHIRPath writes group references as $1; Python as \1.
    python_replacement = re.sub(r"\$(\d+)", r"\\\1", replacement.replace("\\", "\\\\"))
    return [Item(compiled.sub(python_replacement, text), "string")]


def _fn_extension(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 1)
    url = _string_arg(ev, args, ctx)
    return [
        i
        for i in _member(focus, "extension")
        if isinstance(i.value, Mapping) and i.value.get("url") == url
    ]


def _fn_iif(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    _arity(args, 2, 3)
    condition = _truth(ev.eval(args[0], focus, ctx))
    if condition is True:
        return ev.eval(args[1], focus, ctx)
    return ev.eval(args[2], focus, ctx) if len(args) == 3 else []


def _fn_matches(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 1)
    text = _string_focus(focus)
    if text is None:
        return []
    try:
        pattern = re.compile(_string_arg(ev, args, ctx), re.DOTALL)
    except re.error as exc:
        raise FhirPathUnsupported(f"regex: {exc}") from exc
    return _bool(pattern.search(text) is not None)


def _string_fn(apply: Callable[[str, list[str]], Any], arg_count: int) -> Any:
    def function(
        ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
    ) -> list[Item]:
        _arity(args, arg_count)
        text = _string_focus(focus)
        if text is None:
            return []
        values = [_string_arg(ev, [arg], ctx) for arg in args]
        result = apply(text, values)
        if isinstance(result, bool):
            return _bool(result)
        return [Item(result, "integer" if isinstance(result, int) else "string")]

    return function


def _fn_boolean_all(expected: bool, every: bool) -> Any:
    def function(
        ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
    ) -> list[Item]:
        _arity(args, 0)
        flags = [item.value for item in focus]
        if not all(isinstance(f, bool) for f in flags):
            raise FhirPathUnsupported("boolean aggregate over non-booleans")
        return _bool(
            all(f is expected for f in flags) if every else any(f is expected for f in flags)
        )

    return function


def _fn_to_string(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 0)
    item = _singleton(focus)
    if item is None:
        return []
    value = item.value
    if isinstance(value, bool):
        return [Item("true" if value else "false", "string")]
    if isinstance(value, str | int):
        return [Item(str(value), "string")]
    raise FhirPathUnsupported("toString() of this value")


def _fn_to_integer(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 0)
    item = _singleton(focus)
    if item is None:
        return []
    value = item.value
    if isinstance(value, bool):
        return [Item(int(value), "integer")]
    if isinstance(value, int):
        return [Item(value, "integer")]
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value):
        return [Item(int(value), "integer")]
    return []


def _fn_substring(
    ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context
) -> list[Item]:
    _arity(args, 1, 2)
    text = _string_focus(focus)
    if text is None:
        return []
    bounds = []
    for arg in args:
        item = _singleton(ev.eval(arg, ctx.this, ctx))
        if item is None or not isinstance(item.value, int) or isinstance(item.value, bool):
            raise FhirPathUnsupported("substring() needs integer arguments")
        bounds.append(item.value)
    start = bounds[0]
    if start < 0 or start >= len(text):
        return []
    end = len(text) if len(bounds) == 1 else start + max(bounds[1], 0)
    return [Item(text[start:end], "string")]


def _fn_trace(ev: _Evaluator, focus: list[Item], args: Sequence[Node], ctx: _Context) -> list[Item]:
    return focus


_FUNCTIONS: dict[str, Any] = {
    "exists": _fn_exists,
    "empty": _fn_empty,
    "not": _fn_not,
    "count": _fn_count,
    "hasValue": _fn_has_value,
    "where": _fn_where,
    "all": _fn_all,
    "select": _fn_select,
    "first": _fn_first,
    "last": _fn_last,
    "tail": _fn_tail,
    "single": _fn_single,
    "distinct": _fn_distinct,
    "isDistinct": _fn_is_distinct,
    "children": _fn_children,
    "descendants": _fn_descendants,
    "ofType": _fn_of_type,
    "as": _fn_as,
    "is": _fn_is,
    "resolve": _fn_resolve,
    "union": _fn_union,
    "combine": _fn_combine,
    "intersect": _fn_intersect,
    "exclude": _fn_exclude,
    "subsetOf": _fn_subset_of,
    "supersetOf": _fn_superset_of,
    "repeat": _fn_repeat,
    "skip": _fn_skip,
    "take": _fn_take,
    "replaceMatches": _fn_replace_matches,
    "replace": _string_fn(lambda s, a: s.replace(a[0], a[1]), 2),
    "indexOf": _string_fn(lambda s, a: s.find(a[0]), 1),
    "extension": _fn_extension,
    "iif": _fn_iif,
    "matches": _fn_matches,
    "startsWith": _string_fn(lambda s, a: s.startswith(a[0]), 1),
    "endsWith": _string_fn(lambda s, a: s.endswith(a[0]), 1),
    "contains": _string_fn(lambda s, a: a[0] in s, 1),
    "length": _string_fn(lambda s, a: len(s), 0),
    "lower": _string_fn(lambda s, a: s.lower(), 0),
    "upper": _string_fn(lambda s, a: s.upper(), 0),
    "allTrue": _fn_boolean_all(True, True),
    "allFalse": _fn_boolean_all(False, True),
    "anyTrue": _fn_boolean_all(True, False),
    "anyFalse": _fn_boolean_all(False, False),
    "trace": _fn_trace,
    "toString": _fn_to_string,
    "toInteger": _fn_to_integer,
    "substring": _fn_substring,
}

#: Function names the evaluator implements (for the documentation and tests).
SUPPORTED_FUNCTIONS = tuple(sorted(_FUNCTIONS))


_CONSTANTS = {
    "ucum": [Item("http://unitsofmeasure.org", "string")],
    "sct": [Item("http://snomed.info/sct", "string")],
    "loinc": [Item("http://loinc.org", "string")],
}


def evaluate(
    expression: str,
    focus: Any,
    *,
    resource: Any = None,
    root_resource: Any = None,
    focus_type: str | None = None,
) -> list[Item]:
    """Evaluate ``expression`` with ``focus`` (a JSON value) as ``$this``/``%context``.

    ``%resource`` and ``%rootResource`` are the containing and outermost resources. Raises
    :class:`FhirPathUnsupported` when the expression leaves the supported subset.
    """
    this = _items_of(focus, focus_type)
    variables = {
        "context": this,
        "resource": _items_of(resource if resource is not None else focus),
        "rootResource": _items_of(root_resource if root_resource is not None else resource),
    }
    ctx = _Context(variables, this)
    return _Evaluator(variables).eval(parse(expression), this, ctx)


def evaluate_invariant(
    expression: str,
    focus: Any,
    *,
    resource: Any = None,
    root_resource: Any = None,
    focus_type: str | None = None,
) -> bool | None:
    """True/False for an invariant's boolean result; ``None`` when it evaluates to empty.

    Raises :class:`FhirPathUnsupported` like :func:`evaluate`.
    """
    result = evaluate(
        expression, focus, resource=resource, root_resource=root_resource, focus_type=focus_type
    )
    return _truth(result)
