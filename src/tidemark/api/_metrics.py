"""Prometheus metrics: requests by route and status, and the store's counters.

In a single process the metrics live in this module's registry. With ``tidemark serve
--workers N`` the server sets ``PROMETHEUS_MULTIPROC_DIR`` before starting the workers, and a
scrape of any worker aggregates all of them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "tidemark_http_requests",
    "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "tidemark_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["route"],
    registry=REGISTRY,
)
STORE_COUNTERS = {
    "change_versions_allocated": Counter(
        "tidemark_change_versions_allocated",
        "Change versions allocated by writes.",
        registry=REGISTRY,
    ),
    "journal_rows": Counter(
        "tidemark_journal_rows",
        "Representation changes journaled (inserts, updates, cascades).",
        registry=REGISTRY,
    ),
    "noop_writes": Counter(
        "tidemark_noop_writes_skipped",
        "Writes whose canonical body equalled the stored one.",
        registry=REGISTRY,
    ),
}


def record_store_count(name: str, amount: int) -> None:
    """A :class:`tidemark.core.Counters` listener that mirrors the store's counters."""
    metric = STORE_COUNTERS.get(name)
    if metric is not None:
        metric.inc(amount)


def route_templates(routes: list[BaseRoute]) -> dict[object, str]:
    """Map each route's endpoint to its path template (bounded label values)."""
    return {route.endpoint: route.path for route in routes if isinstance(route, Route)}


#: Method label values; any other method counts as ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Counts finished requests by route template (``unmatched`` for 404s), method and status.

    The labelled children are looked up once per (route, method, status) and kept: a lookup
    through ``labels()`` costs several times the increment itself.
    """

    def __init__(self, templates: dict[object, str]) -> None:
        self.templates = templates
        self._children: dict[tuple[object, str, int], tuple[Any, Any]] = {}

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        """Count one request of ``scope`` that answered ``status`` after ``seconds``."""
        endpoint, method = scope.get("endpoint"), scope["method"]
        if method not in METHODS:
            method = "other"  # a client's made-up method must not make a new series per name
        children = self._children.get((endpoint, method, status))
        if children is None:
            route = self.templates.get(endpoint, "unmatched")
            children = (REQUESTS.labels(route, method, str(status)), LATENCY.labels(route))
            self._children[(endpoint, method, status)] = children
        children[0].inc()
        children[1].observe(seconds)


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics`` in the Prometheus text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        payload = generate_latest(registry)
    else:
        payload = generate_latest(REGISTRY)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
