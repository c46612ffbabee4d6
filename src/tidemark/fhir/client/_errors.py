"""The client's errors: one base, three kinds a caller must tell apart."""

from __future__ import annotations

from typing import Any

from tidemark.core import SourceUnavailableError, TidemarkError


class FhirClientError(TidemarkError):
    """Base of every error the FHIR client raises.

    ``http_status`` is the server's status when there was a response, ``url`` the request URL
    and ``outcome`` the OperationOutcome the server sent, if any.
    """

    code = "fhir-client"

    def __init__(
        self,
        detail: str,
        *,
        http_status: int | None = None,
        url: str | None = None,
        outcome: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, data={"http_status": http_status, "url": url})
        self.http_status = http_status
        self.url = url
        self.outcome = outcome


class FhirUnavailableError(FhirClientError, SourceUnavailableError):
    """The server could not be reached or kept failing (transport error, timeout, 5xx) after
    every retry. Transient: trying again later may succeed."""

    code = "source-unavailable:fhir"


class FhirInvalidResponseError(FhirClientError):
    """The server answered with something that is not the FHIR JSON asked for (garbage, wrong
    resource type, a body over the size limit, a paging loop). Not retried."""

    code = "fhir-invalid-response"
    status = 502
    title = "Invalid FHIR Response"


class FhirRequestError(FhirClientError):
    """The server rejected the request with a 4xx status (other than those a read reports as
    results: 304, 404, 410). Not retried."""

    code = "fhir-request-rejected"
    status = 400
    title = "FHIR Request Rejected"
