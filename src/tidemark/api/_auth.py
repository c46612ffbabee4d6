"""OAuth2 client credentials: ``POST /oauth/token`` and bearer-token checks on protected routes.

Tokens are self-contained and signed (HMAC-SHA256), so every server process configured with the
same clients (or the same ``token_secret``) accepts every other process's tokens, and nothing is
stored. A token carries its client key and expiry; it cannot be forged without the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tidemark.core import (
    MAX_JSON_DEPTH,
    SYSTEM_CLOCK,
    BadRequestError,
    Clock,
    ConfigurationError,
    UnauthorizedError,
    canonical_bytes,
    get_logger,
    parse_json,
)

from ._fhir_model import FHIR_JSON, error_outcome
from ._responses import FastJSONResponse, problem

log = get_logger("auth")

#: Paths anyone may call: discovery, the FHIR CapabilityStatement, health, metrics and the token
#: endpoint.
OPEN_PATHS = frozenset({"/", "/metadata", "/fhir/metadata", "/health", "/metrics", "/oauth/token"})
#: Path prefixes anyone may call: the API descriptions and the dependency order.
OPEN_PREFIXES = ("/metadata/",)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenIssuer:
    """Issues and verifies signed bearer tokens for a fixed set of clients."""

    clients: dict[str, str]
    lifetime: float = 3600.0
    secret: str | None = None
    clock: Clock = SYSTEM_CLOCK

    def __post_init__(self) -> None:
        if self.lifetime <= 0:
            raise ConfigurationError("token lifetime must be positive")
        material = self.secret or "\n".join(f"{k}:{v}" for k, v in sorted(self.clients.items()))
        self._key = hashlib.sha256(b"tidemark-token-v1\n" + material.encode()).digest()

    @property
    def enabled(self) -> bool:
        return bool(self.clients)

    def authenticate_client(self, key: str, secret: str) -> bool:
        """Constant-time check of a client's key and secret."""
        expected = self.clients.get(key)
        return expected is not None and hmac.compare_digest(expected.encode(), secret.encode())

    def issue(self, key: str) -> tuple[str, int]:
        """A token for ``key`` and its lifetime in seconds."""
        now = self.clock.now().timestamp()
        payload = canonical_bytes({"sub": key, "iat": int(now), "exp": int(now + self.lifetime)})
        body = _b64(payload)
        signature = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        return f"{body}.{signature}", int(self.lifetime)

    def verify(self, token: str) -> str:
        """The client key of a valid token; raises :class:`UnauthorizedError` otherwise."""
        return self.inspect(token)[0]

    def inspect(self, token: str) -> tuple[str, int]:
        """The client key and expiry (Unix seconds) of a valid token; raises
        :class:`UnauthorizedError` otherwise."""
        body, sep, signature = token.partition(".")
        expected = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not sep or not hmac.compare_digest(expected, signature):
            raise UnauthorizedError("The access token is invalid.")
        try:
            claims = parse_json(_unb64(body))
            key, expires = str(claims["sub"]), float(claims["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise UnauthorizedError("The access token is invalid.") from exc
        if key not in self.clients:
            raise UnauthorizedError("The access token's client is no longer configured.")
        if self.clock.now().timestamp() >= expires:
            raise UnauthorizedError("The access token has expired; request a new one.")
        return key, int(expires)


def _oauth_error(
    error: str, description: str, status: int, basic_challenge: bool = False
) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="tidemark"'} if basic_challenge else None
    return FastJSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


async def token_endpoint(request: Request) -> Response:
    """``POST /oauth/token`` with HTTP Basic client authentication and ``grant_type=client_credentials``."""
    issuer: TokenIssuer = request.app.state.token_issuer
    if not issuer.enabled:
        return _oauth_error("invalid_client", "No clients are configured on this server.", 400)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return _oauth_error("invalid_client", "Use HTTP Basic client authentication.", 401, True)
    try:
        key, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return _oauth_error("invalid_client", "Malformed Basic credentials.", 401, True)
    if not sep or not issuer.authenticate_client(key, secret):
        log.warning("client authentication failed", client=key[:64])
        return _oauth_error("invalid_client", "Invalid client credentials.", 401, True)
    raw = (await request.body())[:4096]
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    grant = None
    if content_type == "application/json":
        try:
            parsed = parse_json(raw, max_depth=MAX_JSON_DEPTH) if raw else {}
        except ValueError:
            parsed = {}
        grant = parsed.get("grant_type") if isinstance(parsed, dict) else None
    else:
        grants = parse_qs(raw.decode("utf-8", "replace")).get("grant_type") or []
        grant = grants[0] if grants else None
    if grant != "client_credentials":
        return _oauth_error("unsupported_grant_type", "grant_type must be client_credentials.", 400)
    token, lifetime = issuer.issue(key)
    log.info("token issued", client=key)
    return FastJSONResponse(
        {"access_token": token, "token_type": "bearer", "expires_in": lifetime},
        headers={"Cache-Control": "no-store"},
    )


async def token_info_endpoint(request: Request) -> Response:
    """``POST /oauth/token_info`` (form or JSON field ``token``): what the token grants, as
    ODS/API answers (RFC 7662 introspection of the caller's own token).

    Every tidemark client may read and write every resource, so ``resources`` lists them all
    with every operation. A token other than the caller's bearer token is a 400.
    """
    issuer: TokenIssuer = request.app.state.token_issuer
    raw = (await request.body())[:8192]
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    token: object = None
    if content_type == "application/json":
        try:
            parsed = parse_json(raw) if raw else {}
        except ValueError:
            parsed = {}
        token = parsed.get("token") if isinstance(parsed, dict) else None
    else:
        tokens = parse_qs(raw.decode("utf-8", "replace")).get("token") or []
        token = tokens[0] if tokens else None
    if not isinstance(token, str) or not token:
        return problem(
            request,
            BadRequestError("An invalid token was provided", errors=["The token was not present."]),
        )
    if not issuer.enabled:
        return FastJSONResponse({"active": False})
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(bearer.strip(), token):
        return problem(
            request,
            BadRequestError(
                "The authentication token and the token to inspect must match.",
                errors=["The authentication token (header) and the token in the body must match."],
            ),
        )
    key, expires = issuer.inspect(token)
    model = request.app.state.store.model
    resources = sorted(f"/{spec.project_endpoint}/{spec.endpoint}" for spec in model)
    return FastJSONResponse(
        {
            "active": True,
            "client_id": key,
            "scope": "",
            "exp": expires,
            "namespace_prefixes": [],
            "education_organizations": [],
            "assigned_profiles": [],
            "claim_set": {"name": "tidemark (all resources)"},
            "resources": [
                {"resource": path, "operations": ["Create", "Read", "Update", "Delete"]}
                for path in resources
            ],
            "services": [],
        },
        headers={"Cache-Control": "no-store"},
    )


class BearerAuthMiddleware:
    """Requires a valid bearer token on every path but :data:`OPEN_PATHS` and
    :data:`OPEN_PREFIXES` when clients exist."""

    def __init__(self, app: ASGIApp, issuer: TokenIssuer) -> None:
        self.app = app
        self.issuer = issuer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.issuer.enabled
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(OPEN_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise UnauthorizedError("Authorization header is missing or is not a bearer token.")
            scope.setdefault("state", {})["client_key"] = self.issuer.verify(token.strip())
        except UnauthorizedError as error:
            challenge = 'Bearer realm="tidemark", error="invalid_token"'
            headers = {"WWW-Authenticate": challenge}
            response: Response
            if scope["path"] == "/fhir" or scope["path"].startswith("/fhir/"):
                # FHIR clients read errors as OperationOutcomes, this one included.
                response = FastJSONResponse(
                    error_outcome(error), status_code=401, media_type=FHIR_JSON, headers=headers
                )
            else:
                response = problem(request, error, headers=headers)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
