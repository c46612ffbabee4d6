"""tidemark.api: the HTTP server — Ed-Fi data API, discovery, OpenAPI, problem+json errors.

``create_app(store, settings)`` builds the Starlette application (the Ed-Fi routes in the
ODS/API and Data Management Service layouts, ODS/API-style discovery and metadata);
``run_server(settings)`` (what ``tidemark serve`` calls) runs it with uvicorn. Route groups live in private modules and are
mounted by ``create_app``.
"""

from ._app import create_app
from ._factory import export_settings
from ._launch import run_server
from ._openapi import openapi_document
from ._responses import FastJSONResponse, problem, read_json_body
from ._settings import ServerSettings, is_loopback
from ._swagger import edfi_openapi_document

__all__ = [
    "FastJSONResponse",
    "ServerSettings",
    "create_app",
    "edfi_openapi_document",
    "export_settings",
    "is_loopback",
    "openapi_document",
    "problem",
    "read_json_body",
    "run_server",
]
