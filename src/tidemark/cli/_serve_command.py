"""`tidemark serve`: the change-tracked resource server."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import typer

from tidemark.api import ServerSettings, create_app, export_settings
from tidemark.cli import app
from tidemark.core import ConfigurationError, Settings, configure_logging, parse_duration


@app.command()
def serve(
    db: str | None = typer.Option(
        None, "--db", help="Database: a SQLite file path (default ./tidemark.db) or postgresql://…"
    ),
    api_schema: Path | None = typer.Option(
        None, "--api-schema", help="Ed-Fi ApiSchema JSON file (default: the bundled sample model)."
    ),
    host: str | None = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default 8000)."),
    client: list[str] = typer.Option(
        [],
        "--client",
        help="OAuth2 client KEY:SECRET (repeatable); enables bearer-token access control.",
    ),
    retain_changes: str | None = typer.Option(
        None, "--retain-changes", help="Purge change-query history older than this (e.g. 90d, 12h)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Server processes (PostgreSQL only)."
    ),
    fhir_package: list[str] = typer.Option(
        [],
        "--fhir-package",
        help="FHIR package (.tgz, folder or name#version) that /fhir writes are validated against (repeatable).",
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Settings file (TOML); default $TIDEMARK_SETTINGS or ./tidemark.toml.",
    ),
    log_text: bool = typer.Option(
        False, "--log-text", help="Human-readable logs instead of JSON lines."
    ),
) -> None:
    """Serve the Ed-Fi data API, Change Queries, the FHIR facade and the sync routes."""
    import uvicorn

    try:
        settings = Settings.load(config).section(
            "server",
            ServerSettings,
            db=db,
            api_schema=str(api_schema) if api_schema else None,
            host=host,
            port=port,
            clients=client or None,
            retain_changes=parse_duration(retain_changes) if retain_changes else None,
            workers=workers,
            fhir_packages=fhir_package or None,
            log_json=False if log_text else None,
        )
        settings.check()
    except (ConfigurationError, ValueError) as exc:
        typer.echo(f"tidemark serve: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level, json=settings.log_json)
    auth = (
        f"{len(settings.clients)} OAuth2 client(s)"
        if settings.clients
        else "loopback only, no auth"
    )
    typer.echo(
        f"tidemark serving http://{settings.host}:{settings.port}/ (db={_safe_db(settings.db)}, "
        f"model={settings.api_schema or 'sample'}, workers={settings.workers}, {auth})",
        err=True,
    )
    if settings.workers > 1:
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="tidemark-metrics-")
        )
        export_settings(settings)
        uvicorn.run(
            "tidemark.api._factory:build_app",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.port,
            access_log=False,
            log_level="warning",
        )
    else:
        uvicorn.run(
            create_app(settings=settings),
            host=settings.host,
            port=settings.port,
            access_log=False,
            log_level="warning",
            lifespan="on",
        )


def _safe_db(url: str) -> str:
    """The database URL without a password, for logs."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return (
            f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"
        )
    return url
