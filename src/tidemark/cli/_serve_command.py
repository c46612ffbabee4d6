"""`tidemark serve`: the change-tracked resource server."""

from __future__ import annotations

from pathlib import Path

import typer

from tidemark.api import ServerSettings, run_server
from tidemark.core import Settings, configure_logging

from ._shell import config_option, duration, err, log_text_option, reported_errors


def serve(
    db: str | None = typer.Option(
        None,
        "--db",
        metavar="URL",
        help="Database: a SQLite file path (default ./tidemark.db) or postgresql://…",
    ),
    api_schema: Path | None = typer.Option(
        None,
        "--api-schema",
        metavar="FILE",
        help="Ed-Fi ApiSchema JSON file (default: the bundled sample model).",
    ),
    host: str | None = typer.Option(
        None, "--host", metavar="ADDRESS", help="Address to bind (default 127.0.0.1)."
    ),
    port: int | None = typer.Option(None, "--port", metavar="PORT", help="Port (default 8000)."),
    client: list[str] = typer.Option(
        [],
        "--client",
        metavar="KEY:SECRET",
        help="OAuth2 client (repeatable); enables bearer-token access control.",
    ),
    retain_changes: float | None = typer.Option(
        None,
        "--retain-changes",
        metavar="DURATION",
        parser=duration,
        help="Purge change-query history older than this (e.g. 90d, 12h).",
    ),
    workers: int | None = typer.Option(
        None, "--workers", metavar="N", help="Server processes (PostgreSQL only)."
    ),
    fhir_package: list[str] = typer.Option(
        [],
        "--fhir-package",
        metavar="PACKAGE",
        help="FHIR package (.tgz, folder or name#version) that /fhir writes are validated "
        "against (repeatable).",
    ),
    migrate_model: bool = typer.Option(
        False,
        "--migrate-model",
        help="Open a database written with another Ed-Fi model and record this one as its "
        "model (documents are not rewritten). Without it such a start-up fails with exit code 4.",
    ),
    config: Path | None = config_option("server"),
    log_text: bool = log_text_option(),
) -> None:
    """Serve the Ed-Fi data API, Change Queries, FHIR and sync routes.

    Start-up checks the settings, binds the port, then opens (creates or migrates) the
    database; any failure is one line on stderr and an exit code. "tidemark serving …" is
    printed once the port accepts connections.
    """
    with reported_errors():
        settings = Settings.load(config).section(
            "server",
            ServerSettings,
            db=db,
            api_schema=str(api_schema) if api_schema else None,
            host=host,
            port=port,
            clients=client or None,
            retain_changes=retain_changes,
            workers=workers,
            fhir_packages=fhir_package or None,
            log_json=False if log_text else None,
            migrate_model=migrate_model or None,
        )
        configure_logging(settings.log_level, json=settings.log_json)
        run_server(settings, on_ready=lambda url: _announce(settings, url))


def _announce(settings: ServerSettings, url: str) -> None:
    auth = (
        f"{len(settings.clients)} OAuth2 client(s)"
        if settings.clients
        else "loopback only, no auth"
    )
    err.print(
        f"tidemark serving {url} (db={_safe_db(settings.db)}, "
        f"model={settings.api_schema or 'sample'}, workers={settings.workers}, {auth})",
        markup=False,
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
