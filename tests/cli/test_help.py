"""Every command's ``--help`` renders cleanly at 80 columns: paragraphs wrapped, not re-broken,
no type shown for a flag, no empty ``()``, no doubled ``...`` metavar, no cut-off summary, and
the exit codes listed once, on ``tidemark --help``."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tidemark.cli import app
from tidemark.cli._shell import EXIT_CODE_MEANINGS

WIDTH = 80
#: click leaves two columns free on the right.
TEXT_WIDTH = WIDTH - 2
SECTIONS = ("Arguments:", "Options:", "Commands:")


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The argument paths of ``command`` and of every command under it (groups have
    ``commands``)."""
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*path, name))
    return paths


PATHS = command_paths(typer.main.get_command(app))


def render_help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    return result.stdout


def wrap_breaks(lines: list[str]) -> list[str]:
    """Pairs of lines where the first ends early although the next word would have fit."""
    broken = []
    for line, following in itertools.pairwise(lines):
        words = following.split()
        if not line.strip() or not words or words[0] in ("-", "*"):
            continue
        if len(line) + 1 + len(words[0]) <= TEXT_WIDTH:
            broken.append(f"{line!r} / {following!r}")
    return broken


def paragraphs(text: str) -> tuple[list[list[str]], list[list[str]]]:
    """The description's paragraphs and, per option or argument, its help lines (the usage
    line, the command list and the epilog are left out)."""
    description: list[list[str]] = [[]]
    entries: list[list[str]] = []
    where = "description"
    for line in text.splitlines()[1:]:
        if line in SECTIONS:
            where = line
        elif not line.strip():
            if where == "description":
                description.append([])
            else:
                where = "epilog"
        elif where == "description":
            description[-1].append(line)
        elif where in ("Arguments:", "Options:"):
            if re.match(r"^  \S", line):
                entries.append([line])
            else:
                entries[-1].append(line)
    return [p for p in description if p], entries


def test_every_command_and_group_is_covered():
    assert ("serve",) in PATHS and ("cache", "import") in PATHS and ("hl7", "ingest") in PATHS
    assert ("hl7", "listen") in PATHS and ("replicate",) in PATHS
    assert len(PATHS) == 22


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(("tidemark", *path)))
def test_help_renders_cleanly_at_80_columns(path: tuple[str, ...]):
    text = render_help(path)
    assert all(len(line) <= WIDTH for line in text.splitlines()), text
    assert "<bool>" not in text, "a flag is shown with a type"
    assert "()" not in text, "an empty default or settings note"
    assert not re.search(r"\.\.\.[}\]]", text), "a metavar ends in ... inside {} or []"
    assert "\\[" not in text and "\b" not in text, "markup escapes leak into the help"
    description, entries = paragraphs(text)
    for paragraph in description:
        assert not wrap_breaks(paragraph), text
    for entry in entries:
        assert not wrap_breaks(entry), text
    if "Commands:" in text:
        listed = text.split("Commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert not [line for line in listed if line.endswith("...")], "a summary is cut off"


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(("tidemark", *path)))
def test_a_settings_file_is_always_config_file(path: tuple[str, ...]):
    text = render_help(path)
    assert "--settings" not in text
    if "--config" in text:
        assert "-c, --config FILE" in text
        assert "Settings file (TOML; reads [" in text


def test_the_root_help_lists_every_exit_code_once():
    text = render_help(())
    assert "Exit codes (the same in every command):" in text
    flat = " ".join(text.split())
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert f" {code.value} {meaning}" in flat
    assert flat.count("Exit codes") == 1


def test_the_old_settings_option_of_hl7_ingest_still_works_but_is_hidden():
    ingest: Any = typer.main.get_command(app).commands["hl7"].commands["ingest"]  # type: ignore[attr-defined]
    options = {name: param for param in ingest.params for name in param.opts}
    assert options["--settings"].hidden and not options["--config"].hidden
