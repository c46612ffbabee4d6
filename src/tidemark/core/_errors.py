"""The one error hierarchy. Every error carries a stable ``code`` and an HTTP ``status``.

The API layer turns any :class:`TidemarkError` into ``application/problem+json`` (Ed-Fi routes:
``type`` = ``urn:ed-fi:api:<code>``) or a FHIR OperationOutcome, so a library error and the HTTP
answer a client sees are the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class TidemarkError(Exception):
    """Base of every error tidemark raises on purpose.

    ``detail`` is a sentence for humans; ``errors`` lists individual problems; ``validation_errors``
    maps a JSON path to its messages; ``data`` carries machine-readable extras.
    """

    code: ClassVar[str] = "internal-error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Error"
    transient: ClassVar[bool] = False

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[str] = (),
        validation_errors: Mapping[str, Sequence[str]] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)
        self.validation_errors = {k: list(v) for k, v in (validation_errors or {}).items()}
        self.data = dict(data or {})

    def __str__(self) -> str:
        parts = [self.detail, *self.errors]
        parts += [f"{path}: {m}" for path, msgs in self.validation_errors.items() for m in msgs]
        return " ".join(parts)


class BadRequestError(TidemarkError):
    """The request cannot be processed as sent."""

    code = "bad-request"
    status = 400
    title = "Bad Request"


class DataValidationError(BadRequestError):
    """A body failed schema or constraint validation; ``validation_errors`` says where."""

    code = "bad-request:data-validation-failed"
    title = "Data Validation Failed"


class ParameterValidationError(BadRequestError):
    """A query or path parameter is invalid; ``errors`` has one message per problem."""

    code = "bad-request:parameter-validation-failed"
    title = "Parameter Validation Failed"


class MalformedBodyError(BadRequestError):
    """The body is not JSON, or not the JSON type the route needs."""

    code = "bad-request:malformed-body"
    title = "Malformed Body"


class KeyChangeNotSupportedError(BadRequestError):
    """An update tried to change the natural key of a resource that does not allow it."""

    code = "bad-request:key-change-not-supported"
    title = "Key Change Not Supported"


class UnauthorizedError(TidemarkError):
    """Missing, invalid or expired credentials."""

    code = "security:unauthorized"
    status = 401
    title = "Authorization Denied"


class ForbiddenError(TidemarkError):
    """Valid credentials that do not allow this action."""

    code = "security:forbidden"
    status = 403
    title = "Forbidden"


class NotFoundError(TidemarkError):
    """The resource type, document or key does not exist."""

    code = "not-found"
    status = 404
    title = "Not Found"


class MethodNotAllowedError(TidemarkError):
    """The route exists but not for this HTTP method."""

    code = "method-not-allowed"
    status = 405
    title = "Method Not Allowed"


class ConflictError(TidemarkError):
    """The write conflicts with the state of other documents."""

    code = "conflict"
    status = 409
    title = "Conflict"


class UnresolvedReferenceError(ConflictError):
    """The document references documents (or descriptors) that do not exist."""

    code = "conflict:unresolved-reference"
    title = "Unresolved Reference"


class DependentItemExistsError(ConflictError):
    """The document cannot be deleted because other documents reference it."""

    code = "conflict:dependent-item-exists"
    title = "Dependent Item Exists"


class GoneError(TidemarkError):
    """The thing existed but is no longer available (deleted, or past retention)."""

    code = "gone"
    status = 410
    title = "Gone"


class PreconditionFailedError(TidemarkError):
    """An ``If-Match`` / ``If-None-Match`` precondition did not hold."""

    code = "optimistic-lock-failed"
    status = 412
    title = "Optimistic Lock Failed"


class PreconditionRequiredError(TidemarkError):
    """The route only accepts conditional writes and the request sent neither ``If-Match`` nor
    ``If-None-Match``."""

    code = "precondition-required"
    status = 428
    title = "Precondition Required"


class PayloadTooLargeError(TidemarkError):
    """The body exceeds the configured size limit."""

    code = "bad-request:payload-too-large"
    status = 413
    title = "Payload Too Large"


class UnsupportedMediaTypeError(TidemarkError):
    """The body's content type is not one the route accepts."""

    code = "bad-request:unsupported-media-type"
    status = 415
    title = "Unsupported Media Type"


class UnprocessableError(TidemarkError):
    """The body is well-formed but violates the rules of its type (e.g. FHIR profile errors)."""

    code = "unprocessable"
    status = 422
    title = "Unprocessable Entity"


class SourceUnavailableError(TidemarkError):
    """A source (server, database, folder) could not be reached; retrying may succeed."""

    code = "source-unavailable"
    status = 503
    title = "Source Unavailable"
    transient = True


class CorruptDataError(TidemarkError):
    """Stored data (a cache file, an archive, a blob) failed an integrity check."""

    code = "corrupt-data"
    status = 500
    title = "Corrupt Data"


class ConfigurationError(TidemarkError):
    """Settings or arguments are invalid; raised at start-up, never mid-request."""

    code = "configuration-error"
    status = 500
    title = "Configuration Error"


class ModelMismatchError(ConfigurationError):
    """A database holds documents written under another data model than the one it was opened
    with; open it with that model, or migrate to the new one deliberately."""

    code = "configuration-error:model-mismatch"
    title = "Model Mismatch"
