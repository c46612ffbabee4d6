"""What every command shares: consoles, exit codes, JSON output and the common options."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from tidemark.core import (
    ConfigurationError,
    ModelMismatchError,
    SourceUnavailableError,
    TidemarkError,
    parse_duration,
)

# Piped output gets a wide page so that canonical URLs are not cut.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class ExitCode(IntEnum):
    """The exit status of every command; a code means the same thing in all of them."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNAVAILABLE = 3
    INCOMPATIBLE = 4


EXIT_CODE_MEANINGS = {
    ExitCode.OK: "done",
    ExitCode.FAILED: "done, but something failed: an invalid resource, a failed conversion, "
    "a skipped message, an unknown URL or package, a damaged archive",
    ExitCode.USAGE: "bad usage or settings: an unknown option, a bad value, a settings or "
    "input file that is missing or unreadable",
    ExitCode.UNAVAILABLE: "unavailable: a database, server, folder or port cannot be reached "
    "or used; retrying may succeed",
    ExitCode.INCOMPATIBLE: "incompatible data: the database holds documents of another Ed-Fi "
    "model; start with that model, or migrate deliberately (tidemark serve --migrate-model)",
}


def exit_codes_help() -> str:
    """The exit-code table as a help paragraph that click prints line for line."""
    lines = ["\b", "Exit codes (the same in every command):"]
    for code, meaning in EXIT_CODE_MEANINGS.items():
        wrapped = textwrap.wrap(meaning, width=70)
        lines.append(f"  {code.value}  {wrapped[0]}")
        lines.extend(f"     {line}" for line in wrapped[1:])
    return "\n".join(lines)


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code that an error of this kind means (see :data:`EXIT_CODE_MEANINGS`)."""
    if isinstance(error, ModelMismatchError):
        return ExitCode.INCOMPATIBLE
    if isinstance(error, ConfigurationError):
        return ExitCode.USAGE
    if isinstance(error, SourceUnavailableError):
        return ExitCode.UNAVAILABLE
    return ExitCode.FAILED


def fail(message: str, code: ExitCode = ExitCode.FAILED) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    err.print(f"[red]error:[/red] {escape(' '.join(message.split()))}")
    raise typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn an error the library raises on purpose (or an I/O error) into one line on stderr
    and the exit code of its kind; never a traceback."""
    try:
        yield
    except (TidemarkError, OSError, ValueError) as exc:
        fail(str(exc), exit_code_for(exc))


def print_json(value: Any, *, compact: bool = False) -> None:
    """``value`` as JSON on stdout: indented, or with ``compact`` one flushed line (streams)."""
    option = 0 if compact else orjson.OPT_INDENT_2
    typer.echo(orjson.dumps(value, option=option, default=str).decode())


def human_bytes(size: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def command_group(name: str, help: str) -> typer.Typer:
    """A ``tidemark <name> …`` group; its commands' help is plain text that click wraps."""
    return typer.Typer(name=name, help=help, no_args_is_help=True, rich_markup_mode=None)


def config_option(*tables: str) -> Any:
    """``--config FILE`` (``-c``): the settings file, naming the tables the command reads."""
    names = ", ".join(f"[{table}]" for table in tables)
    return typer.Option(
        None,
        "--config",
        "-c",
        metavar="FILE",
        dir_okay=False,
        help=f"Settings file (TOML; reads {names}). Default: $TIDEMARK_SETTINGS, else "
        "./tidemark.toml if present. TIDEMARK_<TABLE>_<KEY> variables override it.",
    )


def json_option(help: str) -> Any:
    """``--json``: machine-readable output instead of tables and text."""
    return typer.Option(False, "--json", help=help)


def log_level_option(default: str) -> Any:
    """``--log-level LEVEL``: how much of tidemark's log reaches stderr."""
    return typer.Option(
        default, "--log-level", metavar="LEVEL", help="Log level on stderr (debug … error)."
    )


def log_text_option() -> Any:
    """``--log-text``: human-readable log lines instead of JSON lines."""
    return typer.Option(False, "--log-text", help="Human-readable logs instead of JSON lines.")


def duration(value: str | None) -> float | None:
    """Parse a duration option (``90d``, ``12h``, seconds); a bad one is a usage error."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
