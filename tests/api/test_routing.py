"""The indexed router tries fewer routes but picks the route Starlette's router would pick."""

from __future__ import annotations

import re

import httpx
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Scope

from tidemark.api import ServerSettings, create_app
from tidemark.api._routing import IndexedRouter, route_shape
from tidemark.store import Store


def _scope(method: str, path: str, root_path: str = "") -> Scope:
    return {"type": "http", "method": method, "path": path, "root_path": root_path}


def _first_full_match(routes: list[BaseRoute], scope: Scope) -> BaseRoute | None:
    for route in routes:
        if route.matches(scope)[0] is Match.FULL:
            return route
    return None


def _sample_paths(routes: list[BaseRoute]) -> list[str]:
    """Concrete paths for every route template, and near misses of each."""
    paths = {"/", "", "/data", "/data/", "/nothing/at/all", "/fhir/Patient/1/_history/2/x"}
    for route in routes:
        if not isinstance(route, Route):
            continue
        for value in ("ed-fi", "schools", "deletes", "v3", "1"):
            path = re.sub(r"\{[^}:]+(:path)?\}", value, route.path)
            paths |= {path, path + "/", path + "/extra", path.rsplit("/", 1)[0]}
    return sorted(paths)


def test_every_path_reaches_the_route_the_full_scan_reaches(api_store: Store):
    app = create_app(api_store, ServerSettings())
    router = app.router
    assert isinstance(router, IndexedRouter)
    routes = list(router.routes)
    assert sum(route_shape(route) is not None for route in routes) > len(routes) // 2
    for path in _sample_paths(routes):
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            for root_path in ("", "/prefix"):
                scope = _scope(method, root_path + path, root_path)
                expected = _first_full_match(routes, scope)
                assert _first_full_match(router.candidates(path), scope) is expected, (
                    method,
                    path,
                )


def test_a_route_added_later_is_routed():
    async def endpoint(request: object) -> httpx.Response:  # pragma: no cover
        raise AssertionError

    router = IndexedRouter([Route("/a/{x}", endpoint)])
    assert [r.path for r in router.candidates("/b/1")] == []  # type: ignore[attr-defined]
    router.routes.append(Route("/b/{x}", endpoint))
    assert [r.path for r in router.candidates("/b/1")] == ["/b/{x}"]  # type: ignore[attr-defined]


def test_the_candidate_table_stays_bounded_whatever_the_paths(api_store: Store):
    router = create_app(api_store, ServerSettings()).router
    assert isinstance(router, IndexedRouter)
    for n in range(2000):
        router.candidates(f"/x{n}" + "/y" * (n % 50))
    shapes = {route_shape(route) for route in router.routes}
    assert len(router._candidates) <= (len(shapes) + 1) ** 2


MISSES = [
    ("DELETE", "/data/ed-fi/schools"),  # a path whose route takes other methods: 405
    ("PUT", "/data/v3/ed-fi/schools/deletes"),
    ("GET", "/data/ed-fi/schools/"),  # redirected to the route without the slash
    ("GET", "/health/"),
    ("GET", "/nothing"),
    ("GET", "/data/ed-fi/nothing/1"),
    ("POST", "/fhir/Patient/1/x/y/z"),
]


async def test_misses_answer_as_starlettes_router_answers_them(api_store: Store):
    indexed = create_app(api_store, ServerSettings())
    plain = create_app(api_store, ServerSettings())
    plain.router = Router(list(plain.router.routes))  # before its first request builds the stack
    answers = []
    for app in (indexed, plain):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            answers.append(
                [
                    (r.status_code, r.headers.get("location"), r.headers.get("content-type"))
                    for r in [await http.request(m, p, follow_redirects=False) for m, p in MISSES]
                ]
            )
    assert answers[0] == answers[1]
    assert {status for status, _, _ in answers[0]} >= {404, 405, 307}
