"""Authentication of gateway connections, shared by every WebSocket dialect.

Credentials, first found wins: ``Authorization: Basic|Bearer <api key>`` or ``Bearer <jwt>``; a
``Sec-WebSocket-Protocol`` entry ``switchboard-jwt.<jwt>`` (never echoed back: the connection is
accepted with ``realtime`` if the client offered it, else with no subprotocol); a ``token`` query
parameter (redacted from logs by project.logging). Connections that carry an Origin header (browsers)
must come from REALTIME_ALLOWED_ORIGINS; clients without one (servers) are accepted on their credential.
Last, a key or project whose monthly budget is spent is refused (``budget_exceeded``, realtime.gateway.budgets).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.api.authentication import api_key_from_authorization
from accounts.keys import KeyRejected, api_key_verify_async, api_keys_unusable
from realtime.gateway import availability
from realtime.gateway.budgets import budget_refusal
from realtime.gateway.limits import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, GatewayError

JWT_SUBPROTOCOL_PREFIX = "switchboard-jwt."
DIALECT_SUBPROTOCOL = "realtime"


@dataclass(frozen=True)
class ConnectionAuth:
    """Who is connecting: the key (directly or behind a token) and what a token pins or limits."""

    pk: str  # ApiKey row, for revocation checks and the ledger
    key_id: str
    project_id: int
    project_slug: str
    environment_id: int
    environment: str
    via: str  # "api_key" or "jwt"
    deployment_key: str | None = None  # pinned by a token
    max_session_seconds: int | None = None
    session_config: dict | None = None


class AuthFailed(Exception):
    def __init__(self, error: GatewayError):
        self.error = error
        super().__init__(error.code)


def _unauthorized(code: str, message: str) -> AuthFailed:
    return AuthFailed(GatewayError(code, message, CLOSE_UNAUTHORIZED, "authentication_error"))


def scope_header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def scope_query(scope) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return {name: values[-1] for name, values in parsed.items()}


def accepted_subprotocol(scope) -> str | None:
    """``realtime`` if offered; the token entry is never chosen (that would echo it back)."""
    return DIALECT_SUBPROTOCOL if DIALECT_SUBPROTOCOL in scope.get("subprotocols", ()) else None


def _origin_of(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else url.strip().lower()


def origin_check(scope) -> None:
    origin = scope_header(scope, b"origin")
    if origin is None:
        return
    allowed = {_origin_of(item) for item in settings.REALTIME_ALLOWED_ORIGINS}
    if "*" in allowed or _origin_of(origin) in allowed:
        return
    raise AuthFailed(GatewayError(
        "origin_not_allowed", "This origin may not open gateway connections.", CLOSE_FORBIDDEN, "invalid_request_error"
    ))


def _token_from(scope) -> str | None:
    for entry in scope.get("subprotocols", ()):
        if entry.startswith(JWT_SUBPROTOCOL_PREFIX):
            return entry[len(JWT_SUBPROTOCOL_PREFIX):]
    return scope_query(scope).get("token") or None


async def _from_api_key(raw: str) -> ConnectionAuth:
    try:
        key = await api_key_verify_async(raw=raw)
    except KeyRejected as exc:
        raise _unauthorized(exc.reason, exc.message) from None
    return ConnectionAuth(
        pk=key.pk, key_id=key.key_id, project_id=key.project_id, project_slug=key.project_slug,
        environment_id=key.environment_id, environment=key.environment, via="api_key",
    )


async def _within_budget(auth: ConnectionAuth) -> ConnectionAuth:
    """Every dialect's new sessions pass here: a spent monthly budget refuses them (budget_exceeded)."""
    refusal = await budget_refusal(auth=auth)
    if refusal is not None:
        raise AuthFailed(refusal)
    return auth


async def _admitted(make) -> ConnectionAuth:
    """Admission of a new session of any dialect, bounded in time and refused at once during an outage
    or a drain (availability.py): AuthFailed with ``service_unavailable`` (1013) or ``server_shutting_down``."""
    refusal = availability.admission_check()
    if refusal is not None:
        raise AuthFailed(refusal)
    try:
        return await availability.within_admission_bound(make())
    except AuthFailed:
        raise
    except Exception as exc:
        error = availability.admission_failure(exc)
        if error is None:
            raise
        raise AuthFailed(error) from None


async def api_key_authenticate(*, raw: str | None) -> ConnectionAuth:
    """An API key given the dialect's own way (a first message, a query parameter, a handshake field).
    Raises AuthFailed with the key's rejection reason as the code, or budget_exceeded."""
    return await _admitted(lambda: _within_budget_of(_from_api_key(raw or "")))


async def _within_budget_of(credential) -> ConnectionAuth:
    return await _within_budget(await credential)


async def _from_token(token: str) -> ConnectionAuth:
    from realtime.gateway.tokens import TokenRejected, token_verify_async

    try:
        claims = await token_verify_async(token=token)
    except TokenRejected as exc:
        raise _unauthorized(exc.reason, exc.message) from None
    return ConnectionAuth(
        pk=claims.key_pk, key_id=claims.key_id, project_id=claims.project_id, project_slug=claims.project_slug,
        environment_id=claims.environment_id, environment=claims.environment, via="jwt",
        deployment_key=claims.deployment_key, max_session_seconds=claims.max_session_seconds,
        session_config=claims.session,
    )


async def token_authenticate(*, token: str | None) -> ConnectionAuth:
    """A short-lived token given the dialect's own way (rooms: handshake ``auth: {token}``), then the budget."""
    if not token:
        raise _unauthorized("missing_credentials", "A token is required.")
    return await _admitted(lambda: _within_budget_of(_from_token(token)))


async def connection_authenticate(*, scope) -> ConnectionAuth:
    """Check the origin, then the credential, then the budget. Raises AuthFailed with a stable code."""
    return await _admitted(lambda: _within_budget_of(_credential_authenticate(scope)))


async def _credential_authenticate(scope) -> ConnectionAuth:
    origin_check(scope)
    header = scope_header(scope, b"authorization")
    if header:
        credential = api_key_from_authorization(header)
        if credential is None:
            raise _unauthorized("malformed_credentials", "Unsupported Authorization header.")
        if credential.startswith("sb_") or header.lower().startswith("basic"):
            return await _from_api_key(credential)
        return await _from_token(credential)
    token = _token_from(scope)
    if token:
        return await _from_token(token)
    raise _unauthorized(
        "missing_credentials",
        "Authenticate with an API key in the Authorization header or a token (subprotocol, query or header).",
    )


async def api_key_is_active(*, api_key_pk: str) -> bool:
    """Whether a session's key may still be used (accounts.keys' one rule)."""
    return not await api_keys_inactive(api_key_pks=[str(api_key_pk)])


async def api_keys_inactive(*, api_key_pks: list[str]) -> list[str]:
    """Those of ``api_key_pks`` that may no longer be used (revoked, expired, deleted), in one query."""
    return await database_sync_to_async(api_keys_unusable)(api_key_pks=api_key_pks)
