"""A Starlette router that tries only the routes a path can match: by its first segment and
how many segments it has.

Starlette's router tries every route's regular expression in order until one matches; with the
Ed-Fi, FHIR, sync and metadata groups that is a dozen or more regex matches for a busy path.
Most routes have a fixed number of segments and a literal first one, so the routes a path can
match are known from those two things alone. The router keeps, for each (segment count, first
segment), the routes in their original order that could match, and tries those. Routes it
cannot place (a ``{name:path}`` parameter, a mount, a custom convertor) are candidates for
every path. When none of the candidates matches fully, Starlette's own procedure runs over all
routes (405 for a path whose methods differ, trailing-slash redirects, 404), so every answer is
the one Starlette would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette._utils import get_route_path
from starlette.convertors import (
    FloatConvertor,
    IntegerConvertor,
    StringConvertor,
    UUIDConvertor,
)
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

#: Convertors that never match a ``/``: a route using only these has a fixed segment count.
_SEGMENT_CONVERTORS = (StringConvertor, IntegerConvertor, FloatConvertor, UUIDConvertor)

#: (segment count, literal first segment or None) of a placeable route.
_Key = tuple[int, str | None]


def route_shape(route: BaseRoute) -> _Key | None:
    """The (segment count, literal first segment or ``None``) every path ``route`` matches
    has, or ``None`` when its paths have no fixed shape."""
    if type(route) is not Route:
        return None
    if not all(isinstance(c, _SEGMENT_CONVERTORS) for c in route.param_convertors.values()):
        return None
    first = route.path.split("/", 2)[1]
    return route.path.count("/"), None if "{" in first else first


class IndexedRouter(Router):
    """:class:`starlette.routing.Router` answering exactly as it does, trying fewer routes."""

    def __init__(self, routes: Sequence[BaseRoute], **kwargs: Any) -> None:
        super().__init__(routes=list(routes), **kwargs)
        self._index()

    def _index(self) -> None:
        self._indexed = len(self.routes)
        self._shapes = [route_shape(route) for route in self.routes]
        self._counts = {shape[0] for shape in self._shapes if shape is not None}
        self._firsts = {shape[1] for shape in self._shapes if shape is not None} - {None}
        self._candidates: dict[_Key, list[BaseRoute]] = {}

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes, in order, that could match ``path``."""
        if len(self.routes) != self._indexed:
            self._index()  # a route was added after construction
        count = path.count("/")
        first: str | None = path.split("/", 2)[1] if count else None
        # Only shapes the routes have become keys: the table stays as small as the route list.
        key = (count if count in self._counts else -1, first if first in self._firsts else None)
        found = self._candidates.get(key)
        if found is None:
            found = [
                route
                for route, shape in zip(self.routes, self._shapes, strict=True)
                if shape is None or (shape[0] == key[0] and shape[1] in (None, key[1]))
            ]
            self._candidates[key] = found
        return found

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("router", self)
            for route in self.candidates(get_route_path(scope)):
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope["route"] = route
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)
