"""`tidemark hl7 ingest` and `tidemark hl7 examples`: thin shells over the library."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from tests.tracking.hl7.adt_messages import adt
from tidemark.cli import app
from tidemark.tracking.hl7 import example_files

runner = CliRunner()


@pytest.fixture(autouse=True)
def restore_logging():
    """The command configures tidemark's logger; put it back so other tests' caplog works."""
    logger = logging.getLogger("tidemark")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def ingest(*args: str):
    return runner.invoke(app, ["hl7", "ingest", *args])


def test_ingest_twice_prints_zero_created_and_zero_audit_rows_the_second_time(tmp_path):
    db = f"sqlite:///{tmp_path / 'adt.db'}"
    files = [str(p) for p in example_files()]
    first = ingest(*files, "--db", db)
    assert first.exit_code == 0, first.output
    assert "messages 12: ingested 12, skipped 0" in first.stdout
    assert "rows: created 23, updated 14, unchanged 8, audit rows 14" in first.stdout
    second = ingest(*files, "--db", db)
    assert second.exit_code == 0, second.output
    assert "rows: created 0, updated 0, unchanged 30, audit rows 0" in second.stdout
    assert "type cache location_type:" in second.stdout


def test_json_summary_and_disabled_cache_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDEMARK_TYPE_CACHE_ENABLED", "false")
    result = ingest(str(example_files()[0]), "--db", str(tmp_path / "adt.db"), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["messages"] == 4
    assert document["type_caches"]["location_type"]["enabled"] is False
    assert document["type_caches"]["location_type"]["queries"] == 4


def test_a_skipped_message_is_listed_on_stderr_and_sets_exit_status_1(tmp_path):
    path = tmp_path / "bad.hl7"
    path.write_text("\r".join([adt(control="1"), adt(control="2", dob="1980-01-01")]))
    result = ingest(str(path), "--db", str(tmp_path / "adt.db"))
    assert result.exit_code == 1
    assert f"skipped: {path}: message 2 (line 7): PID-7: not an HL7 timestamp" in result.stderr
    assert "messages 2: ingested 1, skipped 1" in result.stdout


def test_settings_file_configures_the_type_caches(tmp_path):
    settings = tmp_path / "tidemark.toml"
    settings.write_text("[type_cache_location]\nmaximum_size = 2\n")
    result = ingest(
        *[str(p) for p in example_files()],
        "--db",
        str(tmp_path / "a.db"),
        "--settings",
        str(settings),
    )
    assert result.exit_code == 0, result.output
    assert "type cache location: " in result.stdout
    location_line = next(
        line for line in result.stdout.splitlines() if line.startswith("type cache location:")
    )
    assert "2 entries" in location_line


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--timezone", "Mars/Olympus"], 2, "unknown time zone"),
        (["--settings", "/nonexistent/tidemark.toml"], 2, "settings file not found"),
        (["--db", "postgresql://nobody@127.0.0.1:1/none"], 3, "cannot create the ADT tables"),
        (["--db", "host=localhost dbname=x"], 2, "not a database URL"),
        (["--encoding", "klingon"], 2, "unknown text encoding"),
    ],
)
def test_bad_options_and_an_unreachable_database_fail_with_a_clear_message(args, status, message):
    result = ingest(str(example_files()[0]), *args)
    assert result.exit_code == status
    assert message in result.stderr


def test_examples_lists_the_shipped_fixture_files():
    result = runner.invoke(app, ["hl7", "examples"])
    assert result.exit_code == 0
    assert result.stdout.split() == [str(p) for p in example_files()]
