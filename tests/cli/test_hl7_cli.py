"""`tidemark hl7 ingest`, `listen` and `examples`: thin shells over the library."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
from pathlib import Path

import hl7
import pytest
from hl7.mllp import open_hl7_connection
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.support import free_port, tidemark_command
from tests.tracking.hl7.adt_messages import adt
from tidemark.cli import _hl7_commands, app
from tidemark.tracking import create_tracking_engine
from tidemark.tracking.hl7 import Patient, example_files

runner = CliRunner()


@pytest.fixture(autouse=True)
def restore_logging():
    """The command configures tidemark's logger; put it back so other tests' caplog works."""
    logger = logging.getLogger("tidemark")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def ingest(*args: str, stdin: bytes | None = None):
    return runner.invoke(app, ["hl7", "ingest", *args], input=stdin)


def test_ingest_twice_prints_changes_then_only_unchanged_and_stale_messages(tmp_path):
    db = f"sqlite:///{tmp_path / 'adt.db'}"
    files = [str(p) for p in example_files()]
    first = ingest(*files, "--db", db)
    assert first.exit_code == 0, first.output
    assert (
        "messages 12: changed 12, unchanged 0, stale 0, rejected 0, unsupported 0" in first.stdout
    )
    assert "rows: created 33, updated 14, deleted 0, audit rows 14" in first.stdout
    second = ingest(*files, "--db", db)
    assert second.exit_code == 0, second.output
    assert "messages 12: changed 0, unchanged 4, stale 8, rejected 0" in second.stdout
    assert "rows: created 0, updated 0, deleted 0, audit rows 0" in second.stdout
    assert "type cache location_type:" in second.stdout


def test_json_summary_and_disabled_cache_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDEMARK_TYPE_CACHE_ENABLED", "false")
    result = ingest(str(example_files()[0]), "--db", str(tmp_path / "adt.db"), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["messages"], document["ingested"], document["changed"]) == (4, 4, 4)
    assert document["type_caches"]["location_type"]["enabled"] is False


def test_a_rejected_message_is_listed_on_stderr_and_sets_exit_status_1(tmp_path):
    path = tmp_path / "bad.hl7"
    path.write_text("\r".join([adt(control="1"), adt(control="2", dob="1980-01-01")]))
    result = ingest(str(path), "--db", str(tmp_path / "adt.db"))
    assert result.exit_code == 1
    assert f"rejected: {path}: message 2 (line 7): PID-7: not an HL7 date" in result.stderr
    assert "messages 2: changed 1, unchanged 0, stale 0, rejected 1" in result.stdout


def test_a_cut_mllp_frame_is_rejected_and_sets_exit_status_1(tmp_path):
    full = adt("A03", when="20240306120000", discharged="20240306115500")
    path = tmp_path / "cut.hl7"
    path.write_bytes(b"\x0b" + full[: full.index("|V1|") + 3].encode())
    result = ingest(str(path), "--db", str(tmp_path / "adt.db"))
    assert result.exit_code == 1
    assert "cut off: MLLP frame has a start byte (0x0B) but no end byte" in result.stderr


def test_unsupported_events_are_counted_by_type_and_exit_0(tmp_path):
    path = tmp_path / "mixed.hl7"
    a28 = adt(control="2").replace("ADT^A01^ADT_A01", "ADT^A28^ADT_A05")
    path.write_text("\r".join([adt(control="1"), a28]))
    result = ingest(str(path), "--db", str(tmp_path / "adt.db"))
    assert result.exit_code == 0, result.output
    assert "unsupported events (ignored): ADT^A28 1" in result.stdout


def test_a_bad_escape_is_a_warning_on_stderr_and_exit_0(tmp_path):
    path = tmp_path / "escape.hl7"
    path.write_text(adt(name="O\\NEIL^ANN"))
    result = ingest(str(path), "--db", str(tmp_path / "adt.db"))
    assert result.exit_code == 0, result.output
    assert f"warning: {path}: message 1 (line 3): PID-5 (line 3): bad escape" in result.stderr


def test_an_mllp_stream_on_standard_input_is_ingested(tmp_path):
    stream = b"".join(
        b"\x0b" + adt(control=f"S{i}", mrn=f"M{i}").encode() + b"\r\x1c\r" for i in range(3)
    )
    db = tmp_path / "adt.db"
    result = ingest("-", "--db", str(db), "--json", stdin=stream)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["changed"] == 3
    engine = create_tracking_engine(db)
    try:
        with Session(engine) as session:
            assert sorted(session.scalars(select(Patient.mrn))) == ["M0", "M1", "M2"]
    finally:
        engine.dispose()


def test_a_large_input_shows_a_progress_bar_on_a_terminal_only(tmp_path, monkeypatch):
    path = tmp_path / "big.hl7"
    path.write_text("\r".join(adt(control=f"C{i}", mrn=f"M{i}") for i in range(3)))
    monkeypatch.setattr(_hl7_commands, "PROGRESS_THRESHOLD", 100)
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(_hl7_commands, "err", terminal)
    monkeypatch.setattr(_hl7_commands, "out", Console(file=io.StringIO(), force_terminal=True))
    result = ingest(str(path), "--db", str(tmp_path / "a.db"))
    assert result.exit_code == 0, result.output
    assert "━" in screen.getvalue() and "bytes" in screen.getvalue().lower()
    screen.truncate(0)
    result = ingest(str(path), "--db", str(tmp_path / "b.db"), "--json")
    assert result.exit_code == 0 and screen.getvalue() == ""
    piped = Console(file=io.StringIO(), force_terminal=False)
    monkeypatch.setattr(_hl7_commands, "out", piped)
    result = ingest(str(path), "--db", str(tmp_path / "c.db"))
    assert result.exit_code == 0 and screen.getvalue() == ""


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
        (["--batch-size", "0"], 2, "batch-size"),
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


def test_listen_acknowledges_over_a_real_socket_and_prints_the_summary_when_stopped(
    tmp_path: Path,
):
    port = free_port()
    db = tmp_path / "listen.db"
    process = subprocess.Popen(
        [*tidemark_command(), "hl7", "listen", "--port", str(port), "--db", str(db), "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()  # blocks until the port accepts connections
        assert ready.strip() == f"listening on mllp://127.0.0.1:{port}", process.stderr.read()

        async def send() -> list[str]:
            reader, writer = await open_hl7_connection("127.0.0.1", port)
            writer.writemessage(hl7.parse(adt(control="L1")))
            writer.writemessage(hl7.parse(adt(control="L2", dob="19801399")))
            await writer.drain()
            acks = [await asyncio.wait_for(reader.readmessage(), 60) for _ in range(2)]
            writer.close()
            await writer.wait_closed()
            return [str(ack.segment("MSA")(1)) for ack in acks]

        assert asyncio.run(send()) == ["AA", "AR"]
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    summary = json.loads(stdout)
    assert (summary["changed"], summary["rejected"]) == (1, 1)


def test_listen_on_a_busy_port_fails_with_exit_code_3(tmp_path: Path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(
            app, ["hl7", "listen", "--port", str(port), "--db", str(tmp_path / "x.db")]
        )
    assert result.exit_code == 3
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
