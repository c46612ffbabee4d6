"""The Starlette application: route groups, error handling, access logs, store lifecycle."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidemark import __version__
from tidemark.core import (
    MethodNotAllowedError,
    NotFoundError,
    TidemarkError,
    get_logger,
)
from tidemark.store import Store, open_store

from . import _edfi, _fhir
from ._openapi import openapi_document
from ._responses import FastJSONResponse, correlation_id, problem
from ._settings import ServerSettings

log = get_logger("api")
access_log = get_logger("access")

RouteGroup = Callable[[], Sequence[BaseRoute]]


async def discovery(request: Request) -> Response:
    """``GET /``: version, data models and the URLs of the APIs."""
    store: Store = request.app.state.store
    base = str(request.base_url).rstrip("/")
    return FastJSONResponse(
        {
            "version": __version__,
            "applicationName": "tidemark",
            "dataModels": [
                {"name": name, "version": version}
                for name, version in sorted(store.model.projects.items())
            ],
            "urls": {
                "dataManagementApi": f"{base}/data/",
                "openApiMetadata": f"{base}/metadata/openapi.json",
                "changeQueries": f"{base}/changeQueries/v1/",
            },
        }
    )


async def openapi(request: Request) -> Response:
    """``GET /metadata/openapi.json``: the OpenAPI document of the loaded model."""
    cached = getattr(request.app.state, "openapi", None)
    if cached is None:
        settings: ServerSettings = request.app.state.settings
        cached = openapi_document(
            request.app.state.store.model, max_page_size=settings.max_page_size
        )
        request.app.state.openapi = cached
    return FastJSONResponse(cached)


class AccessLogMiddleware:
    """Assigns a correlation id, echoes it in the response, and logs one structured line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        cid = correlation_id(request)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"correlation-id", cid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
                correlation_id=cid,
            )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return problem(request, NotFoundError("The specified data could not be found."))
    if exc.status_code == 405:
        return problem(
            request, MethodNotAllowedError(f"The method {request.method} is not allowed here.")
        )
    return Response(status_code=exc.status_code, content=exc.detail)


async def _tidemark_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TidemarkError)
    return problem(request, exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error(
        "unhandled error",
        path=request.url.path,
        correlation_id=correlation_id(request),
        exc_info=exc,
    )
    error = TidemarkError(
        "An unexpected error occurred; quote the correlationId when reporting it."
    )
    return problem(request, error)


def create_app(
    store: Store | None = None,
    settings: ServerSettings | None = None,
    *,
    extra_routes: Sequence[RouteGroup] = (),
) -> Starlette:
    """The tidemark HTTP application.

    With ``store`` given the app uses it (the caller closes it); otherwise the store is opened
    from ``settings`` when the app starts and closed when it stops. ``extra_routes`` lets other
    route groups (FHIR facade, sync) mount themselves.
    """
    settings = settings or ServerSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = None
        if getattr(app.state, "store", None) is None:
            owned = await open_store(settings.db, model=settings.api_schema)
            app.state.store = owned
        try:
            yield
        finally:
            if owned is not None:
                await owned.close()

    routes: list[BaseRoute] = [
        Route("/", discovery, methods=["GET"], name="discovery"),
        Route("/metadata/openapi.json", openapi, methods=["GET"], name="openapi"),
    ]
    for group in extra_routes:
        routes.extend(group())
    routes.extend(_edfi.routes())
    routes.extend(_fhir.routes())
    handlers: dict[Any, Any] = {
        HTTPException: _http_error,
        TidemarkError: _tidemark_error,
        Exception: _unexpected,
    }
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.add_middleware(AccessLogMiddleware)
    app.state.settings = settings
    app.state.store = store
    return app
