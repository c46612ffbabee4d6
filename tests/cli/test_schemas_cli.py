import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.schemas.builders import (
    EXAMPLE,
    R4_CORE,
    broken_definition,
    dated_patient,
    named_patient,
    write_package,
)
from tests.support import REPO_ROOT, require_data
from tidemark.cli import app

from .schema_cli_support import config_fixture, runner_fixture  # noqa: F401  (fixtures)


@pytest.fixture
def profiles_dir(tmp_path: Path) -> Path:
    write_package(tmp_path / "profiles", [named_patient(), dated_patient()])
    return tmp_path / "profiles"


def _summary_cells(output: str, package: str) -> list[str]:
    row = next(line for line in output.splitlines() if package in line)
    return [cell.strip() for cell in row.split("│")][1:-1]


def test_convert_prints_a_summary_and_reuses_everything_the_second_time(
    runner, config, profiles_dir
):
    first = runner.invoke(app, ["schemas", "convert", str(profiles_dir), "--config", str(config)])
    assert first.exit_code == 0, first.output
    assert "FHIRSchema conversion" in first.stdout
    # package, definitions, converted, reused, failed, size, seconds
    assert _summary_cells(first.stdout, "example.profiles#1.0.0")[:5] == [
        "example.profiles#1.0.0",
        "2",
        "2",
        "0",
        "0",
    ]
    second = runner.invoke(app, ["schemas", "convert", str(profiles_dir), "-c", str(config)])
    assert second.exit_code == 0, second.output
    assert _summary_cells(second.stdout, "example.profiles#1.0.0")[1:5] == ["2", "0", "2", "0"]


def test_convert_reports_failures_with_exit_code_1(runner, config, tmp_path):
    write_package(tmp_path / "bad", [named_patient(), broken_definition()])
    result = runner.invoke(app, ["schemas", "convert", str(tmp_path / "bad"), "-c", str(config)])
    assert result.exit_code == 1
    assert f"failed: {EXAMPLE}/Broken|1.0.0" in result.stderr
    assert "without a path" in result.stderr


def test_an_unknown_package_is_a_clear_error(runner, config):
    result = runner.invoke(app, ["schemas", "convert", "no.such.package#1.0.0", "-c", str(config)])
    assert result.exit_code == 1
    assert "error:" in result.stderr and "no.such.package#1.0.0" in result.stderr
    assert "Traceback" not in result.output


def test_a_missing_config_file_is_a_clear_error(runner, tmp_path, profiles_dir):
    result = runner.invoke(
        app, ["schemas", "convert", str(profiles_dir), "-c", str(tmp_path / "nope.toml")]
    )
    assert result.exit_code == 2 and "settings file not found" in result.stderr


def test_environment_variables_override_the_config_file(runner, config, profiles_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    result = runner.invoke(
        app,
        ["schemas", "convert", str(profiles_dir), "-c", str(config)],
        env={"TIDEMARK_STORAGE_DISK_CACHE_DIR": str(elsewhere)},
    )
    assert result.exit_code == 0, result.output
    assert list(elsewhere.rglob("*.entry")) and not (tmp_path / "cache").exists()


@pytest.fixture
def r4_path() -> Path:
    return require_data(R4_CORE)


def _resource(tmp_path: Path, document: object) -> str:
    path = tmp_path / "resource.json"
    path.write_text(json.dumps(document))
    return str(path)


@pytest.mark.data
def test_validate_accepts_a_valid_resource(runner, config, tmp_path, r4_path):
    resource = _resource(tmp_path, {"resourceType": "Patient", "gender": "female"})
    result = runner.invoke(
        app, ["schemas", "validate", resource, "--package", str(r4_path), "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "valid: 0 error(s)" in result.stdout


@pytest.mark.data
def test_validate_prints_issues_and_exits_1_on_errors(
    runner, config, tmp_path, r4_path, profiles_dir
):
    resource = _resource(tmp_path, {"resourceType": "Patient", "gender": 5})
    args = ["schemas", "validate", resource, "-p", str(profiles_dir), "-p", str(r4_path)]
    result = runner.invoke(app, [*args, "--profile", f"{EXAMPLE}/NamedPatient", "-c", str(config)])
    assert result.exit_code == 1
    assert "Patient.gender" in result.stdout and "Patient.name" in result.stdout
    assert "invalid: 2 error(s)" in result.stdout
    as_json = runner.invoke(app, [*args, "--json", "-c", str(config)])
    assert as_json.exit_code == 1
    outcome = json.loads(as_json.stdout)
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["expression"] for i in outcome["issue"] if i["severity"] == "error"] == [
        ["Patient.gender"]
    ]


def test_validate_refuses_a_file_that_is_not_json(runner, config, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    result = runner.invoke(app, ["schemas", "validate", str(path), "-c", str(config)])
    assert result.exit_code == 2 and "cannot read" in result.stderr


@pytest.mark.data
def test_the_installed_command_runs_in_a_real_process(tmp_path, config, r4_path):
    executable = Path(sys.executable).with_name("tidemark")
    assert executable.exists(), executable
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEMARK_")}
    resource = _resource(tmp_path, {"resourceType": "Patient", "birthDate": "not-a-date"})
    done = subprocess.run(
        [
            str(executable),
            "schemas",
            "validate",
            resource,
            "--package",
            str(r4_path),
            "--json",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    outcome = json.loads(done.stdout)
    assert any(i["expression"] == ["Patient.birthDate"] for i in outcome["issue"])
    listed = subprocess.run(
        [str(executable), "cache", "list", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    urls = {entry["canonical_url"] for entry in json.loads(listed.stdout)}
    assert "http://hl7.org/fhir/StructureDefinition/Patient" in urls
