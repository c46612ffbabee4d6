"""tidemark.fhir.client: an async FHIR R4 REST client for reads and searches (httpx).

``FhirClient(base_url, token=..., timeout=..., retries=...)``: ``await read(type, id,
known=ResourceVersion(...))`` returns a :class:`ReadResult` (200/304/404/410, never raising on
those); ``await search(type, params)`` follows ``next`` links and returns a
:class:`SearchResult` carrying the server's own time of the search. Errors:
:class:`FhirUnavailableError` (transient, after retries), :class:`FhirRequestError` (4xx),
:class:`FhirInvalidResponseError` (garbage).
"""

from ._client import FhirClient
from ._errors import (
    FhirClientError,
    FhirInvalidResponseError,
    FhirRequestError,
    FhirUnavailableError,
)
from ._types import ReadResult, ResourceVersion, SearchResult

__all__ = [
    "FhirClient",
    "FhirClientError",
    "FhirInvalidResponseError",
    "FhirRequestError",
    "FhirUnavailableError",
    "ReadResult",
    "ResourceVersion",
    "SearchResult",
]
