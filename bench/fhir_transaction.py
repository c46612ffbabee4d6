"""A 1,000-resource Synthea-style FHIR transaction vs the same resources created one request
at a time, on SQLite and PostgreSQL, through the app in-process (no network).

The transaction (250 patients, each with an encounter, a condition and an observation linked by
urn:uuid references) is one store transaction; the baseline POSTs the same resources one by one
(references already resolved), one store transaction each. Also timed: the same transaction
plus a last update whose If-Match fails in the store after every create ran (everything is
rolled back; the figure is the cost of finding out).
The ratio transaction/one-by-one is what carries across machines; there is no target, the
figures are for the closing note.

Run: ./dev bench fhir_transaction [--patients N] [--repeat R] [--pg DSN | --no-pg]
     [--fhir-package ../shared/data/fhir/hl7.fhir.r4.core-4.0.1.tgz]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drop_schema, median, pg_schema_dsn, print_table
from tidemark.api import ServerSettings, create_app
from tidemark.fhir.packages import FhirPackage
from tidemark.schemas import SchemaStore, StorageSettings
from tidemark.store import open_store


def synthea_transaction(patients: int) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for n in range(patients):
        p, e = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
        resources: list[tuple[str, dict[str, Any]]] = [
            (
                p,
                {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:synthea", "value": f"{n}"}],
                    "name": [{"family": f"Family{n}", "given": ["Pat"]}],
                    "gender": "female",
                    "birthDate": "1970-01-01",
                },
            ),
            (
                e,
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "AMB",
                    },
                    "subject": {"reference": p},
                },
            ),
            (
                f"urn:uuid:{uuid.uuid4()}",
                {
                    "resourceType": "Condition",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
                    "subject": {"reference": p},
                    "encounter": {"reference": e},
                },
            ),
            (
                f"urn:uuid:{uuid.uuid4()}",
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
                    "subject": {"reference": p},
                    "encounter": {"reference": e},
                    "valueQuantity": {"value": 170.1, "unit": "cm"},
                },
            ),
        ]
        for full_url, resource in resources:
            entries.append(
                {
                    "fullUrl": full_url,
                    "resource": resource,
                    "request": {"method": "POST", "url": resource["resourceType"]},
                }
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def run(url: str, patients: int, package: str | None) -> dict[str, float]:
    """Seconds for: the transaction, the failing transaction, one-by-one creates."""
    settings = ServerSettings(max_body_bytes=64 * 1024 * 1024)
    store = await open_store(url)
    schemas = None
    if package is not None:
        schemas = SchemaStore(
            StorageSettings(strategy="memory"), packages=FhirPackage.load(package)
        )
        await schemas.__aenter__()
    try:
        app = create_app(store, settings, schema_store=schemas)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench/fhir", timeout=600
        ) as http:
            bundle = synthea_transaction(patients)
            started = time.perf_counter()
            response = await http.post("/", json=bundle)
            transaction = time.perf_counter() - started
            assert response.status_code == 200, response.text[:500]
            created = response.json()["entry"]
            assert len(created) == 4 * patients

            # The same transaction plus an update whose If-Match fails: the store runs every
            # create and then the update, fails, and rolls all of them back.
            failing = synthea_transaction(patients)
            first_patient = created[0]["response"]["location"].split("/_history")[0]
            failing["entry"].append(
                {
                    "resource": {"resourceType": "Patient", "id": first_patient.split("/")[1]},
                    "request": {"method": "PUT", "url": first_patient, "ifMatch": 'W/"999999"'},
                }
            )
            started = time.perf_counter()
            refused = await http.post("/", json=failing)
            rolled_back = time.perf_counter() - started
            assert refused.status_code == 412, refused.text[:500]
            total = (await http.get("/Observation", params={"_count": "0"})).json()["total"]
            assert total == patients, f"the failed transaction left {total - patients} resources"

            # Baseline: the same resources, references already resolved, one POST each.
            singles = copy.deepcopy(synthea_transaction(patients))
            started = time.perf_counter()
            ids: dict[str, str] = {}
            for item in singles["entry"]:
                resource = item["resource"]
                for member in ("subject", "encounter"):
                    if member in resource:
                        resource[member] = {"reference": ids[resource[member]["reference"]]}
                answer = await http.post(f"/{resource['resourceType']}", json=resource)
                assert answer.status_code == 201, answer.text[:300]
                ids[item["fullUrl"]] = f"{resource['resourceType']}/{answer.json()['id']}"
            one_by_one = time.perf_counter() - started
    finally:
        if schemas is not None:
            await schemas.aclose()
        await store.close()
    return {"transaction": transaction, "rolled_back": rolled_back, "one_by_one": one_by_one}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--patients", type=int, default=250, help="4 resources per patient")
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine (medians printed)")
    parser.add_argument(
        "--pg",
        default=os.environ.get("TIDEMARK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument(
        "--fhir-package",
        help="validate every resource against this FHIR package (e.g. the R4 core .tgz)",
    )
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            results.setdefault("sqlite", []).append(
                asyncio.run(run(str(Path(tmp) / f"tx-{i}.db"), args.patients, args.fhir_package))
            )
    if not args.no_pg:
        for i in range(args.repeat):
            schema = f"bench_tx_{os.getpid()}_{i}"
            try:
                results.setdefault("postgresql", []).append(
                    asyncio.run(
                        run(pg_schema_dsn(args.pg, schema), args.patients, args.fhir_package)
                    )
                )
            finally:
                drop_schema(args.pg, schema)
    resources = 4 * args.patients
    rows = []
    for engine, runs in results.items():
        tx = median([r["transaction"] for r in runs])
        failed = median([r["rolled_back"] for r in runs])
        single = median([r["one_by_one"] for r in runs])
        rows.append([engine, resources, tx, resources / tx, failed, single, single / tx])
    print_table(
        f"fhir_transaction: a Synthea-style transaction of {resources} resources "
        f"(medians of {args.repeat} runs, in-process HTTP, "
        f"{'validated against ' + Path(args.fhir_package).name if args.fhir_package else 'no validation'})",
        [
            "engine",
            "resources",
            "transaction s",
            "resources/s",
            "failing transaction s (all rolled back)",
            "one POST each s",
            "one-by-one/transaction",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
