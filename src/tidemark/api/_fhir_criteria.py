"""Conditional-interaction criteria (``If-None-Exist``, ``PUT``/``DELETE``/``PATCH [type]?…``,
conditional references): strictly parsed search parameters that must select something."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

from tidemark.core import BadRequestError

#: Parameters that shape a result instead of selecting resources: never criteria.
RESULT_PARAMETERS = frozenset(
    {
        "_count",
        "_offset",
        "_cursor",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_total",
        "_elements",
        "_contained",
        "_containedType",
        "_format",
        "_pretty",
        "_totalMethod",
    }
)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_criteria(text: str, what: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of conditional criteria ``text`` (``Type?a=b&c=d`` or
    ``a=b&c=d``). ``what`` names the criteria in error messages (e.g. ``If-None-Exist``).

    Raises :class:`BadRequestError` (400) when the criteria are empty, malformed (a part
    without ``=``, an empty name or value, a bad percent escape) or made only of result
    parameters such as ``_count``: criteria that would match every resource are refused.
    """
    query = text.strip()
    if "?" in query:
        query = query.split("?", 1)[1]
    if not query:
        raise BadRequestError(f"{what} has no search criteria; they would match every resource.")
    items: list[tuple[str, str]] = []
    problems: list[str] = []
    for part in query.split("&"):
        if not part:
            problems.append("an empty parameter (a stray '&')")
            continue
        if _BAD_ESCAPE.search(part):
            problems.append(f"{part!r} has a malformed percent escape")
            continue
        raw_name, sep, raw_value = part.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        if not sep or not name or not value:
            problems.append(f"{part!r} is not name=value")
            continue
        if name.split(":", 1)[0] in RESULT_PARAMETERS:
            problems.append(f"{name!r} shapes results and is not a criterion")
            continue
        items.append((name, value))
    if problems:
        raise BadRequestError(f"{what} is not valid search criteria.", errors=problems)
    return items
