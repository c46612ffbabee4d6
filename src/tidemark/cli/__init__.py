"""tidemark's command line: thin typer commands over the public library APIs."""

from __future__ import annotations

import typer

from tidemark import __version__

app = typer.Typer(
    name="tidemark",
    help="Keep data, and the caches and replicas built from it, in step with their sources.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tidemark {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print the version.",
    ),
) -> None:
    """tidemark command line."""


def main() -> None:
    """Console-script entry point."""
    app()


# Each capability registers its commands on ``app`` from its own module; importing them here is
# what makes ``tidemark <command>`` find them. Keep this list sorted, one module per capability.
from tidemark.cli import (  # noqa: E402
    _cache_commands,
    _hl7_commands,
    _mappings_commands,
    _schemas_commands,
    _serve_command,
    _sync_commands,
)

__all__ = [
    "_cache_commands",
    "_hl7_commands",
    "_mappings_commands",
    "_schemas_commands",
    "_serve_command",
    "_sync_commands",
    "app",
    "main",
]
