"""Bundles for the transaction and batch tests: entries, urn:uuid placeholders, Synthea-style data."""

from __future__ import annotations

import uuid
from typing import Any


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def entry(
    method: str, url: str, resource: Any = None, full_url: str | None = None, **request: str
) -> dict[str, Any]:
    item: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        item["resource"] = resource
    if full_url is not None:
        item["fullUrl"] = full_url
    return item


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def synthea_like(patients: int = 2) -> dict[str, Any]:
    """A Synthea-style transaction: each patient with an encounter, a condition, an observation,
    all linked through urn:uuid fullUrls."""
    entries = []
    for n in range(patients):
        p, e = urn(), urn()
        entries += [
            entry(
                "POST",
                "Patient",
                {
                    "resourceType": "Patient",
                    "identifier": [
                        {"system": "https://github.com/synthetichealth/synthea", "value": f"s{n}"}
                    ],
                    "name": [{"family": f"Family{n}", "given": ["Pat"]}],
                    "gender": "female",
                    "birthDate": "1970-01-01",
                },
                p,
            ),
            entry(
                "POST",
                "Encounter",
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "AMB",
                    },
                    "subject": {"reference": p},
                },
                e,
            ),
            entry(
                "POST",
                "Condition",
                {
                    "resourceType": "Condition",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
                    "subject": {"reference": p},
                    "encounter": {"reference": e},
                },
                urn(),
            ),
            entry(
                "POST",
                "Observation",
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
                    "subject": {"reference": p},
                    "encounter": {"reference": e},
                    "valueQuantity": {"value": 170.1, "unit": "cm"},
                },
                urn(),
            ),
        ]
    return bundle("transaction", *entries)
