"""tidemark's command line: thin typer commands over the public library APIs."""

from __future__ import annotations

import typer

from tidemark import __version__

from ._cache_commands import cache_app
from ._hl7_commands import hl7_app
from ._mappings_commands import mappings_app
from ._replicate_command import replicate_command
from ._schemas_commands import schemas_app
from ._serve_command import serve
from ._shell import exit_codes_help
from ._sync_commands import sync_app

app = typer.Typer(
    name="tidemark",
    help="Keep data, and the caches and replicas built from it, in step with their sources.",
    epilog=exit_codes_help(),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("serve")(serve)
app.command("replicate")(replicate_command)
app.add_typer(schemas_app)
app.add_typer(cache_app)
app.add_typer(mappings_app)
app.add_typer(sync_app)
app.add_typer(hl7_app)


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


__all__ = ["app", "main"]
