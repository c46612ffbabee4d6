"""The replica's model read from the source's OpenAPI metadata: the same keys, references and
descriptors as the source's ApiSchema, an identical replica without --api-schema, and a clear
model mismatch when the metadata cannot be read or lacks a resource."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.replicate.proxy import ForwardingTransport
from tests.replicate.support import (
    KEY,
    RESOURCES,
    SECRET,
    SourceWriter,
    compare,
    ds51_schema,
    load_dataset,
)
from tests.support import ServerProcess
from tidemark.api._swagger import edfi_openapi_document
from tidemark.core import ModelMismatchError, json_bytes
from tidemark.replicate import EdFiSource, api_schema_from_openapi, replicate, source_model
from tidemark.store import ResourceModel, load_model, open_store

#: Where the DS 5.1 ApiSchema's key is narrower than what its references show: the metadata
#: model adds members that are always present (required) and carry the same values.
WIDER_KEYS = {
    # nothing references these: keyed by their marked members and required references
    "disciplineActions": {"$.responsibilitySchoolReference.schoolId"},
    "interventionStudies": {
        "$.interventionPrescriptionReference.educationOrganizationId",
        "$.interventionPrescriptionReference.interventionPrescriptionIdentificationCode",
    },
    # the required chartOfAccountReference carries the account's educationOrganizationId too
    "localAccounts": {"$.chartOfAccountReference.educationOrganizationId"},
}
TO_LOCAL_ACCOUNTS = (
    "localActuals",
    "localBudgets",
    "localContractedStaffs",
    "localEncumbrances",
    "localPayrolls",
)


def _derived(model: ResourceModel) -> ResourceModel:
    documents = [edfi_openapi_document(model, s) for s in ("resources", "descriptors")]
    return load_model(api_schema_from_openapi(documents, dict(model.projects)))


def _superclass(spec: Any) -> Any:
    if spec.superclass is None:
        return None
    project, name, path = spec.superclass
    return project, name, None if path is None else path.text


def test_the_metadata_of_ds51_describes_its_keys_references_and_descriptors():
    real = load_model(ds51_schema())
    derived = _derived(real)
    assert len(derived) == len(real) == 340
    for spec in real:
        mine = derived.find(spec.project_endpoint, spec.endpoint)
        assert mine is not None, spec.endpoint
        assert mine.is_descriptor == spec.is_descriptor, spec.endpoint
        wanted = {p.text for p in spec.identity_paths}
        got = {p.text for p in mine.identity_paths}
        assert got == wanted | WIDER_KEYS.get(spec.endpoint, set()), spec.endpoint
        assert _superclass(mine) == _superclass(spec), spec.endpoint
        descriptors = {(d.target.lower(), d.path.text) for d in spec.descriptor_references}
        assert {(d.target.lower(), d.path.text) for d in mine.descriptor_references} == descriptors
        references = {(r.target.lower(), r.object_path.text) for r in spec.references}
        assert {(r.target.lower(), r.object_path.text) for r in mine.references} == references
        if spec.endpoint not in TO_LOCAL_ACCOUNTS:  # those follow localAccounts' wider key
            fields = {(r.object_path.text, r.fields) for r in spec.references}
            assert {(r.object_path.text, r.fields) for r in mine.references} == fields
        assert set(mine.query_fields) == set(spec.query_fields), spec.endpoint


def test_the_sample_models_metadata_describes_the_sample_model():
    sample = load_model()
    derived = _derived(sample)
    for spec in sample:
        mine = derived.find(spec.project_endpoint, spec.endpoint)
        assert mine is not None
        assert [p.text for p in mine.identity_paths] == [p.text for p in spec.identity_paths]
        assert sorted((r.target, r.object_path.text, r.fields) for r in mine.references) == sorted(
            (r.target, r.object_path.text, r.fields) for r in spec.references
        )
        assert _superclass(mine) == _superclass(spec)
    # deterministic: the same metadata gives the same model (a replica reopens with it)
    assert _derived(sample).fingerprint == derived.fingerprint


async def test_a_replica_without_api_schema_equals_its_source(
    source_server: ServerProcess, replica_url: str
):
    load_dataset(source_server.base_url)
    writer = SourceWriter(source_server.base_url)
    options: dict[str, Any] = {"client_id": KEY, "client_secret": SECRET, "resources": RESOURCES}
    try:
        [first] = await replicate(source_server.base_url, replica_url, **options)
        assert first.kind == "extract" and first.counters["deferred"] == 0
        school_id = next(iter(writer.all("schools")))
        school = writer.all("schools")[school_id]
        renamed = {**school, "shortNameOfInstitution": "Renamed"}
        assert writer.put("schools", school_id, renamed).status_code == 204
        enrolment = next(iter(writer.all("studentSchoolAssociations")))
        assert writer.delete("studentSchoolAssociations", enrolment).status_code == 204
        [second] = await replicate(source_server.base_url, replica_url, **options)
        assert second.kind == "changes" and second.counters["written"] >= 1
        assert second.counters["deleted"] == 1

        source = EdFiSource(source_server.base_url)
        try:
            model = await source_model(source)
        finally:
            await source.close()
        assert "OpenAPI metadata" in model.describe()
        store = await open_store(replica_url, model=model)  # the model it was written with
        try:
            await compare(writer, store)
        finally:
            await store.close()
    finally:
        writer.close()


def _metadata_fault(base_url: str, drop: str | None):
    """A fault that answers the metadata list with 404 (``drop`` None), or serves the Resources
    document without the paths of the endpoint ``drop``."""
    resources = httpx.get(f"{base_url}/metadata/data/v3/resources/swagger.json").json()
    resources["paths"] = {
        path: item for path, item in resources["paths"].items() if not path.startswith(str(drop))
    }

    def fault(request: httpx.Request, number: int) -> httpx.Response | None:
        if drop is None and request.url.path == "/metadata/":
            return httpx.Response(404)
        if drop is not None and request.url.path.endswith("/resources/swagger.json"):
            return httpx.Response(
                200, content=json_bytes(resources), headers={"content-type": "application/json"}
            )
        return None

    return fault


@pytest.mark.parametrize(
    ("drop", "message"),
    [(None, "cannot read the source's OpenAPI metadata"), ("/ed-fi/schools", "ed-fi/schools")],
)
async def test_metadata_that_cannot_be_read_or_lacks_a_resource_is_a_model_mismatch(
    source_server: ServerProcess, tmp_path: Path, drop: str | None, message: str
):
    load_dataset(source_server.base_url)
    fault = _metadata_fault(source_server.base_url, drop)
    options: dict[str, Any] = {"client_id": KEY, "client_secret": SECRET, "resources": RESOURCES}
    with pytest.raises(ModelMismatchError, match="--api-schema") as raised:
        await replicate(
            source_server.base_url,
            tmp_path / "replica.db",
            transport=ForwardingTransport(fault=fault),
            **options,
        )
    assert message in str(raised.value)
    # nothing was written: no replica model was recorded by the failed run
    store = await open_store(tmp_path / "replica.db", model=ds51_schema())
    await store.close()
    # with --api-schema the metadata is not read, and the round completes
    [summary] = await replicate(
        source_server.base_url,
        tmp_path / "replica.db",
        model=ds51_schema(),
        transport=ForwardingTransport(fault=fault),
        **options,
    )
    assert summary.kind == "extract" and summary.counters["written"] > 0
