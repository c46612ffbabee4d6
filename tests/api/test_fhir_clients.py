"""The real FHIR clients against a live ``tidemark serve``: fhirpy and fhirclient search it, and
every body the server answers them with parses as an R4 resource with ``fhir.resources``."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests

from tests.support import PG_ADMIN_DSN, ServerProcess, unavailable

fhirpy = pytest.importorskip("fhirpy")
fhirclient_client = pytest.importorskip("fhirclient.client")
fhir_r4 = pytest.importorskip("fhir.resources.R4B")

LOINC = "http://loinc.org"
HEART_RATE = "8867-4"
PATIENTS = 12


class Recorder:
    """Every response the clients' ``requests`` sessions receive from the server under test."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self._send = requests.Session.send

    def __enter__(self) -> Recorder:
        recorder = self
        original = self._send

        def send(session: requests.Session, request: Any, **kwargs: Any) -> requests.Response:
            response = original(session, request, **kwargs)
            if str(request.url).startswith(recorder.base_url) and response.content:
                recorder.bodies.append((str(request.url), response.json()))
            return response

        requests.Session.send = send  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        requests.Session.send = self._send  # type: ignore[method-assign]


def _seed(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as http:

        def put(resource: dict[str, Any]) -> None:
            url = f"/{resource['resourceType']}/{resource['id']}"
            response = http.put(url, json=resource)
            assert response.status_code in (200, 201), response.text

        put({"resourceType": "Organization", "id": "org", "name": "Clinic"})
        for i in range(PATIENTS):
            put(
                {
                    "resourceType": "Patient",
                    "id": f"p{i:02}",
                    "identifier": [{"system": "urn:mrn", "value": f"MRN-{i}"}],
                    "name": [{"family": f"Family{i}", "given": ["Given"]}],
                    "gender": "female" if i % 2 else "male",
                    "birthDate": f"{1950 + i}-01-15",
                    "managingOrganization": {"reference": "Organization/org"},
                }
            )
            put(
                {
                    "resourceType": "Observation",
                    "id": f"o{i:02}",
                    "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": HEART_RATE}]},
                    "subject": {"reference": f"Patient/p{i:02}"},
                    "effectiveDateTime": f"2021-0{1 + i % 9}-01T08:00:00Z",
                    "valueQuantity": {
                        "value": 60 + i,
                        "unit": "/min",
                        "system": "http://unitsofmeasure.org",
                        "code": "/min",
                    },
                }
            )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A live ``tidemark serve`` with a small clinic in it; its FHIR base URL."""
    folder: Path = tmp_path_factory.mktemp("fhir-clients")
    schema = None
    if request.param == "sqlite":
        db = str(folder / "clients.db")
    else:
        import psycopg

        schema = f"tm_{secrets.token_hex(6)}"
        try:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
        except psycopg.Error as exc:
            unavailable(f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {exc}")
        separator = "&" if "?" in PG_ADMIN_DSN else "?"
        db = f"{PG_ADMIN_DSN}{separator}options={quote(f'-csearch_path={schema}')}"
    pages = {"TIDEMARK_SERVER_DEFAULT_PAGE_SIZE": "5", "TIDEMARK_SERVER_MAX_PAGE_SIZE": "5"}
    with ServerProcess("--db", db, "--log-text", cwd=folder, env=pages) as process:
        base = process.base_url + "/fhir"
        _seed(base)
        yield base
    if schema is not None:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def recorder(server: str) -> Iterator[Recorder]:
    """Records the bodies; after the test, each must parse as an R4 resource."""
    with Recorder(server) as recorded:
        yield recorded
    assert recorded.bodies
    for url, body in recorded.bodies:
        model = fhir_r4.get_fhir_model_class(body["resourceType"])
        try:
            model.model_validate(body)
        except Exception as exc:
            pytest.fail(f"{url}: the body does not parse as R4 {body['resourceType']}: {exc}")


def _fhirpy(server: str) -> Any:
    return fhirpy.SyncFHIRClient(server)


def test_fhirpy_searches_by_reference_code_date_and_identifier(server: str, recorder: Recorder):
    client = _fhirpy(server)
    observations = client.resources("Observation")
    by_subject = observations.search(subject="Patient/p03").fetch_all()
    assert [o["id"] for o in by_subject] == ["o03"]
    by_patient = observations.search(patient="p04").fetch_all()
    assert [o["id"] for o in by_patient] == ["o04"]
    by_code = observations.search(code=f"{LOINC}|{HEART_RATE}").fetch_all()
    assert len(by_code) == PATIENTS
    by_date = observations.search(date__ge="2021-08-01").fetch_all()
    assert sorted(o["id"] for o in by_date) == ["o07", "o08"]
    patients = client.resources("Patient")
    assert [p["id"] for p in patients.search(identifier="urn:mrn|MRN-5").fetch_all()] == ["p05"]
    assert [p["id"] for p in patients.search(birthdate="1951").fetch_all()] == ["p01"]
    assert len(patients.search(gender="female").fetch_all()) == PATIENTS // 2


def test_fhirpy_pages_with_fetch_all_and_counts(server: str, recorder: Recorder):
    client = _fhirpy(server)
    # The server pages by at most 5: fetch_all follows the next links through 3 pages.
    everyone = client.resources("Patient").limit(5).fetch_all()
    assert sorted(p["id"] for p in everyone) == [f"p{i:02}" for i in range(PATIENTS)]
    assert client.resources("Patient").count() == PATIENTS
    assert client.resources("Observation").search(code=HEART_RATE).count() == PATIENTS
    assert client.resources("Patient").search(gender="male").count() == PATIENTS // 2
    ordered = client.resources("Patient").sort("-birthdate").limit(2).fetch()
    assert [p["id"] for p in ordered] == ["p11", "p10"]


def test_fhirpy_include_and_revinclude(server: str, recorder: Recorder):
    client = _fhirpy(server)
    bundle = (
        client.resources("Observation")
        .search(subject="Patient/p02")
        .include("Observation", "patient")
        .fetch_raw()
    )
    kinds = sorted((e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle.entry)
    assert kinds == [("Observation", "match"), ("Patient", "include")]
    reverse = (
        client.resources("Patient")
        .search(_id="p06")
        .revinclude("Observation", "subject")
        .fetch_raw()
    )
    assert sorted(e["resource"]["id"] for e in reverse.entry) == ["o06", "p06"]


def _fhirclient(server: str) -> Any:
    return fhirclient_client.FHIRClient(settings={"app_id": "tidemark-tests", "api_base": server})


def test_fhirclient_reads_the_capability_statement_and_searches(server: str, recorder: Recorder):
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient

    smart = _fhirclient(server)
    smart.prepare()  # loads /metadata into the strict CapabilityStatement model
    assert smart.server.capabilityStatement.fhirVersion == "4.0.1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        found = Observation.where(struct={"subject": "Patient/p01"}).perform_resources(smart.server)
        assert [o.id for o in found] == ["o01"]
        by_patient = Observation.where(struct={"patient": "p02", "code": HEART_RATE})
        assert [o.id for o in by_patient.perform_resources(smart.server)] == ["o02"]
        by_date = Observation.where(struct={"date": {"$gt": "2021-08-15"}})
        assert [o.id for o in by_date.perform_resources(smart.server)] == ["o08"]
        patients = Patient.where(struct={"identifier": "urn:mrn|MRN-7"})
        assert [p.id for p in patients.perform_resources(smart.server)] == ["p07"]
        born = Patient.where(struct={"birthdate": "1960"}).perform_resources(smart.server)
        assert [p.id for p in born] == ["p10"]
        women = Patient.where(struct={"gender": "female"})
        assert len(list(women.perform_resources_iter(smart.server))) == PATIENTS // 2
        included = Observation.where(
            struct={"_id": "o03", "_include": "Observation:patient"}
        ).perform(smart.server)
        assert sorted(e.resource.id for e in included.entry) == ["o03", "p03"]
