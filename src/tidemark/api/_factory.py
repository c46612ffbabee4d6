"""The application factory that ``tidemark serve --workers N`` gives uvicorn (by import path).

Each worker process rebuilds the settings from the environment variable the parent set, so all
workers serve the same configuration against the same PostgreSQL database.
"""

from __future__ import annotations

import dataclasses
import os

from starlette.applications import Starlette

from tidemark.core import configure_logging, json_bytes, parse_json

from ._app import create_app
from ._settings import ServerSettings

SETTINGS_ENV = "TIDEMARK_SERVE_SETTINGS_JSON"


def export_settings(settings: ServerSettings) -> None:
    """Put ``settings`` where worker processes will find them."""
    os.environ[SETTINGS_ENV] = json_bytes(dataclasses.asdict(settings)).decode()


def build_app() -> Starlette:
    """Build the app in a worker process from the exported settings."""
    raw = os.environ.get(SETTINGS_ENV)
    settings = ServerSettings(**parse_json(raw)) if raw else ServerSettings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings=settings)
