"""The Starlette application: route groups, error handling, access logs, store lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidemark.core import (
    SYSTEM_CLOCK,
    Clock,
    MethodNotAllowedError,
    NotFoundError,
    TidemarkError,
    get_logger,
)
from tidemark.schemas import SchemaStore, StorageSettings, load_packages
from tidemark.store import Store, open_store

from . import _discovery, _edfi, _fhir, _fhir_bundle, _fhir_validate, _fhir_writes, _sync
from ._auth import BearerAuthMiddleware, TokenIssuer, token_endpoint, token_info_endpoint
from ._fhir_model import FHIR_JSON, error_outcome
from ._metrics import RequestMetrics, metrics_endpoint, record_store_count, route_templates
from ._openapi import openapi_document
from ._request_log import AccessLog
from ._responses import FastJSONResponse, correlation_id, problem
from ._routing import IndexedRouter
from ._settings import ServerSettings, parse_clients

log = get_logger("api")

RouteGroup = Callable[[], Sequence[BaseRoute]]


async def health(request: Request) -> Response:
    """``GET /health``: liveness plus a round trip to the database (503 when it fails)."""
    store: Store = request.app.state.store
    try:
        newest = await store.newest_change_version()
    except TidemarkError as error:
        return FastJSONResponse(
            {"status": "unavailable", "database": "unreachable", "detail": error.detail},
            status_code=503,
        )
    except Exception as exc:  # a dead connection surfaces as a driver error
        log.warning("health check failed", error=str(exc))
        return FastJSONResponse(
            {"status": "unavailable", "database": "unreachable"}, status_code=503
        )
    return FastJSONResponse(
        {
            "status": "ok",
            "database": "ok",
            "engine": store.engine.name,
            "newestChangeVersion": newest,
        }
    )


async def _retention_loop(store: Store, settings: ServerSettings) -> None:
    assert settings.retain_changes is not None
    while True:
        try:
            horizon = store.clock.now() - timedelta(seconds=settings.retain_changes)
            removed = await store.purge_changes(horizon)
            if removed:
                log.info("retention pass", rows=removed)
        except TidemarkError as error:
            log.warning("retention pass failed; retrying", error=error.detail)
        await asyncio.sleep(settings.retention_pass_interval)


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


class ClientDisconnectedError(TidemarkError):
    """The client closed its connection before it had sent the whole request."""

    code = "client-closed-request"
    status = 499
    title = "Client Closed Request"


#: Correlation ids made here: a random prefix per process and a counter, as 32 hex digits
#: like the uuid4 hex a client may send (unique across processes, ~10x cheaper than uuid4).
_CID_PREFIX = uuid.uuid4().hex[:16]
_cid_counter = itertools.count(1)


def new_correlation_id() -> str:
    """A fresh correlation id (32 hex digits)."""
    return f"{_CID_PREFIX}{next(_cid_counter):016x}"


class RequestObserver:
    """The one wrapper every request passes: assigns a correlation id and echoes it in the
    response, logs one structured access line, and counts the request in the metrics.

    A client that disconnects before its request body is complete makes the body read raise
    :class:`ClientDisconnectedError`; the request is logged at info level with status 499.
    """

    def __init__(self, app: ASGIApp, templates: dict[object, str], access_log: AccessLog) -> None:
        self.app = app
        self.metrics = RequestMetrics(templates)
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        cid = ""
        for name, value in scope["headers"]:
            if name == b"correlation-id":
                cid = value.decode("latin-1")
                break
        if not cid:
            cid = new_correlation_id()
        scope.setdefault("state", {})["correlation_id"] = cid
        cid_header = (b"correlation-id", cid.encode("latin-1"))
        status = 500
        body_complete = False
        disconnected = False

        async def receive_or_raise() -> Message:
            nonlocal body_complete, disconnected
            message = await receive()
            if message["type"] == "http.request":
                body_complete = not message.get("more_body", False)
            elif not body_complete:
                disconnected = True
                raise ClientDisconnectedError("The client disconnected before sending its body.")
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), cid_header]
            await send(message)

        try:
            await self.app(scope, receive_or_raise, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if disconnected:
                status = ClientDisconnectedError.status
                log.info(
                    "client disconnected mid-request",
                    method=scope["method"],
                    path=scope["path"],
                    correlation_id=cid,
                )
            self.metrics.record(scope, status, seconds)
            self.access_log.add(scope["method"], scope["path"], status, seconds, cid)


def _error(request: Request, error: TidemarkError) -> Response:
    """An error answer: an OperationOutcome under ``/fhir``, problem+json elsewhere."""
    path = request.url.path
    if path == "/fhir" or path.startswith("/fhir/"):
        return FastJSONResponse(error_outcome(error), error.status, media_type=FHIR_JSON)
    return problem(request, error)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(request, NotFoundError("The specified data could not be found."))
    if exc.status_code == 405:
        return _error(
            request, MethodNotAllowedError(f"The method {request.method} is not allowed here.")
        )
    return Response(status_code=exc.status_code, content=exc.detail)


async def _tidemark_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TidemarkError)
    return _error(request, exc)


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
    return _error(request, error)


def create_app(
    store: Store | None = None,
    settings: ServerSettings | None = None,
    *,
    extra_routes: Sequence[RouteGroup] = (),
    clock: Clock | None = None,
    schema_store: SchemaStore | None = None,
) -> Starlette:
    """The tidemark HTTP application.

    With ``store`` given the app uses it (the caller closes it); otherwise the store is opened
    from ``settings`` when the app starts and closed when it stops. ``extra_routes`` lets other
    route groups mount themselves. ``clock`` (default: the store's) dates access tokens.
    ``schema_store`` (or ``settings.fhir_packages``) validates ``/fhir`` writes (422 on errors).
    """
    settings = settings or ServerSettings()
    issuer = TokenIssuer(
        parse_clients(settings.clients),
        lifetime=settings.token_lifetime,
        secret=settings.token_secret,
        clock=clock or (store.clock if store is not None else SYSTEM_CLOCK),
    )

    access = AccessLog()

    def attach(opened: Store) -> None:
        app.state.store = opened
        opened.counters.add_listener(record_store_count)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = None
        if getattr(app.state, "store", None) is None:
            owned = await open_store(
                settings.db, model=settings.api_schema, migrate_model=settings.migrate_model
            )
            attach(owned)
        owned_schemas = None
        if schema_store is None and settings.fhir_packages:
            owned_schemas = await open_schema_store(settings.fhir_packages)
            use_schema_store(app, owned_schemas)
        await _fhir.prepare_fhir_index(app)
        retention = None
        if settings.retain_changes is not None:
            retention = asyncio.create_task(_retention_loop(app.state.store, settings))
        try:
            yield
        finally:
            access.flush()
            if retention is not None:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
            if owned_schemas is not None:
                await owned_schemas.aclose()
            if owned is not None:
                await owned.close()

    # The router tries routes in order and the groups' paths do not overlap (/data, /sync,
    # /fhir, /metadata, the fixed paths): the Ed-Fi data routes, the busiest, come first.
    routes: list[BaseRoute] = [*_edfi.routes(), *_discovery.routes()]
    routes += [
        Route("/metadata/openapi.json", openapi, methods=["GET"], name="openapi"),
        Route("/health", health, methods=["GET"], name="health"),
        Route("/metrics", metrics_endpoint, methods=["GET"], name="metrics"),
        Route("/oauth/token", token_endpoint, methods=["POST"], name="oauth_token"),
        Route("/oauth/token_info", token_info_endpoint, methods=["POST"], name="oauth_token_info"),
    ]
    for group in extra_routes:
        routes.extend(group())
    routes.extend(_sync.routes())
    # before the facade's catch-all routes for the same paths
    routes.extend(_fhir_writes.routes())
    routes.extend(_fhir_bundle.routes())
    routes.extend(_fhir_validate.routes())
    routes.extend(_fhir.routes())
    handlers: dict[Any, Any] = {
        HTTPException: _http_error,
        TidemarkError: _tidemark_error,
        Exception: _unexpected,
    }
    app = Starlette(lifespan=lifespan, exception_handlers=handlers)
    app.router = IndexedRouter(routes, lifespan=lifespan)
    # Outermost first when a request arrives: observation (log + metrics), authentication, the
    # plain item GETs, routes.
    app.add_middleware(_edfi.PlainItemGets, endpoints=_edfi.item_endpoints(routes))
    app.add_middleware(BearerAuthMiddleware, issuer=issuer)
    app.add_middleware(RequestObserver, templates=route_templates(routes), access_log=access)
    app.state.settings = settings
    app.state.request_log = access
    app.state.token_issuer = issuer
    app.state.edfi_openapi = {}
    app.state.store = None
    if store is not None:
        attach(store)
    if schema_store is not None:
        use_schema_store(app, schema_store)
    return app


async def open_schema_store(packages: Sequence[str]) -> SchemaStore:
    """A schema store over the named FHIR packages, with the ``[storage]`` cache settings."""
    loaded = await asyncio.to_thread(load_packages, packages, dependencies=True)
    store = SchemaStore(StorageSettings.load(), packages=loaded)
    log.info("fhir validation on", packages=list(packages))
    return await store.__aenter__()


def use_schema_store(app: Starlette, schemas: SchemaStore) -> None:
    """Validate every ``/fhir`` write against FHIRSchema; errors reject it with 422."""

    async def validate(resource: dict[str, Any]) -> list[dict[str, Any]]:
        result = await schemas.validate(resource)
        return [issue.as_dict() for issue in result.issues]

    app.state.fhir_validator = validate
    app.state.schema_store = schemas
