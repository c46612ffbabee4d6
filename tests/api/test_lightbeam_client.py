"""lightbeam (PyPI), unmodified, against a live ``tidemark serve`` with the DS 5.1 model and OAuth:
validate, send, resend, count, fetch and delete of a realistic data set."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess

from .ds51_clients import (
    DATASET,
    KEY,
    SECRET,
    console_script,
    ds51_server,
    endpoints,
    rows,
)

pytestmark = pytest.mark.data
__all__ = ["ds51_server"]  # the fixture, imported to be used here


def _config(tmp_path: Path, server: ServerProcess, data_dir: Path, **extra: Any) -> Path:
    config = {
        "state_dir": str(tmp_path / "state"),
        "data_dir": f"{data_dir}/",
        "namespace": "ed-fi",
        "edfi_api": {
            "base_url": server.base_url,
            "version": 3,
            "mode": "shared_instance",
            "client_id": KEY,
            "client_secret": SECRET,
        },
        "connection": {
            "pool_size": 4,
            "timeout": 30,
            "num_retries": 2,
            "backoff_factor": 0.1,
            "retry_statuses": [429, 500, 502, 503, 504],
            "verify_ssl": False,
        },
        "force_delete": True,
        "log_level": "INFO",
        **extra,
    }
    path = tmp_path / f"lightbeam-{data_dir.name}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _lightbeam(config: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script("lightbeam"), command, "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True)


def _results(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _counts(config: Path, tmp_path: Path) -> dict[str, int]:
    out = tmp_path / "count.tsv"
    done = _lightbeam(config, "count", "--results-file", str(out))
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()[1:]
    return {endpoint: int(n) for n, endpoint in (line.split("\t") for line in lines)}


def _data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(DATASET, data)
    return data


def _validate_bad_records(server: ServerProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    student = rows("students")[0]
    no_surname = {k: v for k, v in student.items() if k != "lastSurname"}
    (bad / "students.jsonl").write_text(json.dumps(student) + "\n" + json.dumps(no_surname) + "\n")
    enrollment = rows("studentSchoolAssociations")[0]
    unknown_student = {**enrollment, "studentReference": {"studentUniqueId": "999999"}}
    bad_grade = {
        **enrollment,
        "entryGradeLevelDescriptor": "uri://ed-fi.org/GradeLevelDescriptor#Kindergarten-ish",
    }
    (bad / "studentSchoolAssociations.jsonl").write_text(
        "\n".join(json.dumps(r) for r in (enrollment, unknown_student, bad_grade)) + "\n"
    )
    config = _config(tmp_path, server, bad, validate={"methods": "*"})
    checked = _lightbeam(config, "validate", "--results-file", str(tmp_path / "bad.json"))
    assert checked.returncode == 0, checked.stderr
    report = _results(tmp_path / "bad.json")
    assert report["total_records_processed"] == 5 and report["total_records_failed"] == 3
    students = report["resources"]["students"]["failures"]
    assert [(f["method"], f["line_numbers"]) for f in students] == [("schema", [2])]
    assert "lastSurname" in students[0]["message"]
    enrollments = {
        f["method"]: f for f in report["resources"]["studentSchoolAssociations"]["failures"]
    }
    assert enrollments["references"]["line_numbers"] == [2]
    assert "studentReference" in enrollments["references"]["message"]
    assert enrollments["descriptors"]["line_numbers"] == [3]
    assert "Kindergarten-ish" in enrollments["descriptors"]["message"]


def test_lightbeam_validates_sends_resends_counts_and_fetches(
    ds51_server: ServerProcess, tmp_path: Path
):
    data = _data_dir(tmp_path)
    config = _config(tmp_path, ds51_server, data, validate={"methods": "*"})

    # send: every record created, in the dependency order lightbeam reads from the server
    sent = _lightbeam(config, "send", "--results-file", str(tmp_path / "send.json"))
    assert sent.returncode == 0, sent.stderr
    summary = _results(tmp_path / "send.json")
    expected = {endpoint: len(rows(endpoint)) for endpoint in endpoints()}
    assert summary["total_records_processed"] == sum(expected.values())
    assert summary["total_records_failed"] == 0
    for endpoint, n in expected.items():
        assert summary["resources"][endpoint]["successes"] == [{"status_code": 201, "count": n}]

    # validate (schema, descriptors, uniqueness, references) against the server's Swagger,
    # descriptors and data. lightbeam cannot check courseOfferings' references locally (it
    # looks for educationOrganizationId at the top of course records, against any Ed-Fi API).
    checked = _lightbeam(
        config, "validate", "-e", "courseOfferings", "--results-file", str(tmp_path / "v.json")
    )
    assert checked.returncode == 0, checked.stderr
    validated = _results(tmp_path / "v.json")
    assert validated["total_records_failed"] == 0, validated
    assert validated["total_records_processed"] == sum(expected.values()) - len(
        rows("courseOfferings")
    )

    # resend: unchanged records are skipped by lightbeam itself (exit 99), forced ones are 200
    skipped = _lightbeam(config, "send")
    assert skipped.returncode == 99, skipped.stderr
    forced = _lightbeam(config, "send", "-f", "--results-file", str(tmp_path / "resend.json"))
    assert forced.returncode == 0, forced.stderr
    resent = _results(tmp_path / "resend.json")
    for endpoint, n in expected.items():
        assert resent["resources"][endpoint]["successes"] == [{"status_code": 200, "count": n}]

    # count: Total-Count of every endpoint
    counts = _counts(config, tmp_path)
    assert {e: counts[e] for e in expected} == expected
    assert counts["sexDescriptors"] == 0

    # fetch: offset paging writes every record back as JSONL, with server members
    fetched_dir = tmp_path / "fetched"
    fetched_dir.mkdir()
    fetch_config = _config(tmp_path, ds51_server, fetched_dir, fetch={"page_size": 10})
    fetched = _lightbeam(fetch_config, "fetch", "-s", "students,sessions,studentSchoolAssociations")
    assert fetched.returncode == 0, fetched.stderr
    for endpoint in ("students", "sessions", "studentSchoolAssociations"):
        records = [json.loads(line) for line in (fetched_dir / f"{endpoint}.jsonl").open()]
        assert len(records) == len(rows(endpoint)) == len({r["id"] for r in records})
        stripped = [
            {k: v for k, v in r.items() if k not in ("id", "_etag", "_lastModifiedDate")}
            for r in records
        ]
        assert sorted(stripped, key=_canonical) == sorted(rows(endpoint), key=_canonical)

    # validate reports a record that breaks the schema, a reference to a missing student and
    # an unknown descriptor, each with its line (the descriptors cached by the first run)
    _validate_bad_records(ds51_server, tmp_path)


def test_lightbeam_deletes_what_it_sent(ds51_server: ServerProcess, tmp_path: Path):
    data = _data_dir(tmp_path)
    config = _config(tmp_path, ds51_server, data)
    assert _lightbeam(config, "send").returncode == 0
    deleted = _lightbeam(config, "delete", "-f")
    assert deleted.returncode == 0, deleted.stderr
    counts = _counts(config, tmp_path)
    assert {endpoint: counts[endpoint] for endpoint in endpoints()} == dict.fromkeys(endpoints(), 0)
