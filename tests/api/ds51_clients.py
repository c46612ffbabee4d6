"""What the real Ed-Fi client tests share: the DS 5.1 data set, a live server, the client programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, require_data

#: A small, realistic DS 5.1 data set, one JSONL file per endpoint (lightbeam's layout).
DATASET = Path(__file__).parent / "ds51_dataset"
KEY, SECRET = "district-etl", "s3cret-for-tests"


def rows(endpoint: str) -> list[dict[str, Any]]:
    """The records of one endpoint of the data set."""
    lines = (DATASET / f"{endpoint}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def endpoints() -> list[str]:
    """The endpoints the data set has records for."""
    return sorted(path.stem for path in DATASET.glob("*.jsonl"))


@pytest.fixture
def ds51_server(store_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """``tidemark serve --api-schema <DS 5.1> --client KEY:SECRET`` on both engines."""
    schema = require_data("edfi/ds-5.1-api-schema.json")
    with ServerProcess(
        "--db",
        store_url,
        "--api-schema",
        str(schema),
        "--client",
        f"{KEY}:{SECRET}",
        "--log-text",
        cwd=tmp_path,
    ) as server:
        yield server


def token(base_url: str) -> str:
    """A bearer token for the test client."""
    response = httpx.post(
        f"{base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(KEY, SECRET),
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def load_dataset(base_url: str) -> None:
    """POST the data set in the server's dependency order (from its discovery document)."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        urls = http.get("/").json()["urls"]
        order = [row["resource"] for row in http.get(urls["dependencies"]).json()]
        headers = {"Authorization": f"Bearer {token(base_url)}"}
        wanted = {f"/ed-fi/{endpoint}": endpoint for endpoint in endpoints()}
        for resource in order:
            if resource not in wanted:
                continue
            for body in rows(wanted[resource]):
                response = http.post(
                    f"{urls['dataManagementApi']}{resource.lstrip('/')}", json=body, headers=headers
                )
                assert response.status_code in (200, 201), (resource, response.text)


def console_script(name: str) -> str:
    """The path of a console script installed next to this Python."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed; run ./dev setup (it is in the dev extra)")
    return str(path)
