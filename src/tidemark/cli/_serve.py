"""`tidemark serve`: the change-tracked resource server."""

from __future__ import annotations

from pathlib import Path

import typer

from tidemark.api import ServerSettings, create_app
from tidemark.cli import app
from tidemark.core import ConfigurationError, Settings, configure_logging


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
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Settings file (TOML); default $TIDEMARK_SETTINGS or ./tidemark.toml.",
    ),
    log_text: bool = typer.Option(
        False, "--log-text", help="Human-readable logs instead of JSON lines."
    ),
) -> None:
    """Serve the Ed-Fi data API over the change-tracked store."""
    import uvicorn

    try:
        settings = Settings.load(config).section(
            "server",
            ServerSettings,
            db=db,
            api_schema=str(api_schema) if api_schema else None,
            host=host,
            port=port,
            log_json=False if log_text else None,
        )
        settings.check()
    except ConfigurationError as exc:
        typer.echo(f"tidemark serve: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level, json=settings.log_json)
    typer.echo(
        f"tidemark serving http://{settings.host}:{settings.port}/ "
        f"(db={settings.db}, model={settings.api_schema or 'sample'})",
        err=True,
    )
    uvicorn.run(
        create_app(settings=settings),
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level="warning",
        lifespan="on",
    )
