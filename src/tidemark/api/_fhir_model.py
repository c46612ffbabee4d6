"""FHIR R4 resources as the facade stores and serves them: types, ids, meta, OperationOutcome.

Pure functions only: the routes in ``_fhir.py`` do the I/O. A resource is stored without ``id``
(the document key) and without the server-owned ``meta.versionId`` / ``meta.lastUpdated`` (the
document's stamps), so a client echoing old stamps back does not make a PUT look like a change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from tidemark import __version__
from tidemark.core import BadRequestError, TidemarkError, iso_utc
from tidemark.fhir.search import SearchParameterSet

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"
COLLECTION_PREFIX = "fhir:"
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
SERVER_META = ("versionId", "lastUpdated")

_R4_TYPE_NAMES = """
    Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse
    AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement
    CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse
    ClinicalImpression CodeSystem Communication CommunicationRequest CompartmentDefinition
    Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
    CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest
    DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis
    Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence
    EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal
    GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
    ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice
    Library Linkage List Location Measure MeasureReport Media Medication MedicationAdministration
    MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct
    MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
    MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
    MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
    MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder Observation
    ObservationDefinition OperationDefinition OperationOutcome Organization
    OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation Person
    PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire
    QuestionnaireResponse RelatedPerson RequestGroup ResearchDefinition ResearchElementDefinition
    ResearchStudy ResearchSubject RiskAssessment RiskEvidenceSynthesis Schedule SearchParameter
    ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition StructureMap Subscription
    Substance SubstanceNucleicAcid SubstancePolymer SubstanceProtein
    SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification SupplyDelivery
    SupplyRequest Task TerminologyCapabilities TestReport TestScript ValueSet VerificationResult
    VisionPrescription
"""
#: Every concrete resource type of FHIR R4 (4.0.1); checked against the core package in tests.
R4_RESOURCE_TYPES: frozenset[str] = frozenset(_R4_TYPE_NAMES.split())

# The OperationOutcome issue type that best describes each HTTP status we answer with.
_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
}


class NotAcceptableError(TidemarkError):
    """The client accepts no representation the facade can produce (only JSON is served)."""

    code = "not-acceptable"
    status = 406
    title = "Not Acceptable"


def collection_of(resource_type: str) -> str:
    """The store collection that holds resources of ``resource_type``."""
    return COLLECTION_PREFIX + resource_type


def instant(moment: datetime) -> str:
    """A FHIR ``instant`` with millisecond precision in UTC (``2024-01-02T03:04:05.678Z``)."""
    return iso_utc(moment, timespec="milliseconds")


def stored_body(resource: Mapping[str, Any]) -> dict[str, Any]:
    """What the store keeps of a resource: everything but ``id`` and the server-owned meta.

    Other ``meta`` members (profile, tag, security, source...) are kept; an empty ``meta`` is
    dropped so that sending ``"meta": {"versionId": "3"}`` is the same as sending no meta.
    """
    body = {k: v for k, v in resource.items() if k != "id"}
    meta = body.get("meta")
    if meta is None:
        body.pop("meta", None)
        return body
    if not isinstance(meta, dict):
        raise BadRequestError("meta must be a JSON object.")
    kept = {k: v for k, v in meta.items() if k not in SERVER_META}
    if kept:
        body["meta"] = kept
    else:
        del body["meta"]
    return body


def representation(
    resource_type: str,
    id: str,
    body: Mapping[str, Any],
    version: int,
    last_updated: datetime,
) -> dict[str, Any]:
    """The resource as served: ``resourceType``, ``id``, ``meta`` (with the stamps) first."""
    extra_meta = body.get("meta")
    meta: dict[str, Any] = {"versionId": str(version), "lastUpdated": instant(last_updated)}
    if isinstance(extra_meta, Mapping):
        meta.update((k, v) for k, v in extra_meta.items() if k not in SERVER_META)
    resource: dict[str, Any] = {"resourceType": resource_type, "id": id, "meta": meta}
    resource.update((k, v) for k, v in body.items() if k not in ("resourceType", "id", "meta"))
    return resource


def check_resource(
    resource: Any, resource_type: str, url_id: str | None, *, require_id_match: bool
) -> dict[str, Any]:
    """Check the shape of a request body and return it as a resource dict.

    Raises 400 when the body is not an object, when ``resourceType`` differs from the URL type, or
    (``require_id_match``, PUT) when a body ``id`` differs from the URL id.
    """
    if not isinstance(resource, dict):
        raise BadRequestError("The request body must be a FHIR resource (a JSON object).")
    body_type = resource.get("resourceType")
    if body_type != resource_type:
        raise BadRequestError(
            f"The resourceType of the body ({body_type!r}) does not match the URL type "
            f"({resource_type!r})."
        )
    if require_id_match and "id" in resource and resource["id"] != url_id:
        raise BadRequestError(
            f"The id in the body ({resource['id']!r}) does not match the id in the URL ({url_id!r})."
        )
    empty = empty_member(resource, resource_type)
    if empty is not None:
        raise BadRequestError(
            f"{empty} is empty; FHIR resources leave out members without content "
            "(no empty arrays, objects or strings, no null members)."
        )
    return resource


def empty_member(value: Any, path: str) -> str | None:
    """The path of the first member of ``value`` that FHIR JSON forbids: an empty array, object
    or string, or a ``null`` outside an array (where it pairs with a ``_name`` extension)."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, dict):
            if not current:
                return where
            for key, child in current.items():
                if child is None or child == "":
                    return f"{where}.{key}"
                stack.append((child, f"{where}.{key}"))
        elif isinstance(current, list):
            if not current:
                return where
            stack.extend(
                (child, f"{where}[{index}]")
                for index, child in enumerate(current)
                if child is not None
            )
    return None


def operation_outcome(
    issues: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """An OperationOutcome resource with the given issues."""
    return {"resourceType": "OperationOutcome", "issue": [dict(issue) for issue in issues]}


def issue(
    severity: str, code: str, diagnostics: str, expression: Sequence[str] = ()
) -> dict[str, Any]:
    """One OperationOutcome issue."""
    entry: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        entry["expression"] = list(expression)
    return entry


def error_outcome(error: TidemarkError) -> dict[str, Any]:
    """The OperationOutcome describing ``error`` (one issue per problem the error lists)."""
    code = str(error.data.get("issue_code") or _ISSUE_CODES.get(error.status, "exception"))
    severity = "fatal" if error.status >= 500 else "error"
    issues = [issue(severity, code, error.detail)]
    issues += [issue(severity, code, message) for message in error.errors]
    issues += [
        issue(severity, code, message, [path])
        for path, messages in error.validation_errors.items()
        for message in messages
    ]
    extra = error.data.get("issues")
    if isinstance(extra, list):
        issues = [dict(item) for item in extra if isinstance(item, Mapping)] or issues
    return operation_outcome(issues)


class CapabilityStatementBuilder:
    """Builds the facade's CapabilityStatement (``GET /fhir/metadata``)."""

    INTERACTIONS: ClassVar[tuple[str, ...]] = (
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "create",
        "search-type",
    )
    #: The operations every type has (type and instance level).
    OPERATIONS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate"),
    )
    #: System-level interactions (``POST /fhir`` with a Bundle).
    SYSTEM_INTERACTIONS: ClassVar[tuple[str, ...]] = ("transaction", "batch")
    #: What the facade does with the parameters it answers from the document itself.
    DOCUMENTATION: ClassVar[dict[str, str]] = {
        "_id": "Logical id; a comma-separated list matches any of them.",
        "_lastUpdated": (
            "meta.lastUpdated with prefixes eq, gt, ge, lt, le, sa, eb; eq matches within the "
            "precision of the given value. A Bundle's meta.lastUpdated is a safe lower bound "
            "to poll with gt."
        ),
    }

    @classmethod
    def search_params(
        cls, resource_type: str, parameters: SearchParameterSet
    ) -> list[dict[str, Any]]:
        """The ``searchParam`` list of one type: every parameter the facade supports for it."""
        found = []
        for code, parameter in sorted(parameters.for_type(resource_type).items()):
            entry: dict[str, Any] = {
                "name": code,
                "definition": parameter.url,
                "type": parameter.type,
            }
            if code in cls.DOCUMENTATION:
                entry["documentation"] = cls.DOCUMENTATION[code]
            found.append(entry)
        return found

    @classmethod
    def build(
        cls,
        base_url: str,
        date: datetime,
        max_page_size: int,
        parameters: SearchParameterSet,
    ) -> dict[str, Any]:
        """The CapabilityStatement of a facade at ``base_url`` searching with ``parameters``."""
        resources = []
        for resource_type in sorted(R4_RESOURCE_TYPES):
            params = cls.search_params(resource_type, parameters)
            includes = [f"{resource_type}:{p['name']}" for p in params if p["type"] == "reference"]
            resource: dict[str, Any] = {
                "type": resource_type,
                "interaction": [{"code": code} for code in cls.INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalRead": "full-support",
                "conditionalUpdate": True,
                "conditionalDelete": "single",
            }
            if includes:
                resource["searchInclude"] = ["*", *includes]
            resource["searchParam"] = params
            resource["operation"] = [
                {"name": name, "definition": definition} for name, definition in cls.OPERATIONS
            ]
            resources.append(resource)
        return {
            "resourceType": "CapabilityStatement",
            "id": "tidemark",
            "status": "active",
            "date": instant(date),
            "publisher": "tidemark",
            "kind": "instance",
            "software": {"name": "tidemark", "version": __version__},
            "implementation": {
                "description": "tidemark FHIR R4 facade over the change-tracked store",
                "url": base_url,
            },
            "fhirVersion": FHIR_VERSION,
            "format": [FHIR_JSON, "application/json"],
            "rest": [
                {
                    "mode": "server",
                    "documentation": (
                        f"Search results are paged with _count (at most {max_page_size}) and "
                        "_offset. Search parameters are R4 core's (and those of the loaded FHIR "
                        "packages) of types token, reference, date, string, uri, number and "
                        "quantity, with :missing, :not and :text (token), :exact and :contains "
                        "(string), :identifier and :[type] (reference), :below and :above "
                        "(uri); _sort on any of them, _include and _revinclude (:iterate), _has, "
                        "chains of one level (subject:Patient.name), "
                        "_summary, _elements and _total. Unknown search parameters are rejected "
                        "with 400 unless Prefer: handling=lenient."
                    ),
                    "resource": resources,
                    "interaction": [{"code": code} for code in cls.SYSTEM_INTERACTIONS],
                }
            ],
        }
