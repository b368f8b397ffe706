"""Short-lived JWTs that let a browser connect without ever holding an API key.

EdDSA (Ed25519) signatures with a ``kid`` naming one of the SigningKeys published at
/.well-known/jwks.json. Verification pins the algorithm allow-list, requires every claim, accepts only
keys still inside their verify window, refuses a token whose API key has since been revoked or has
expired, and remembers single-use ``jti``s in the shared cache until the token expires.
Tokens are never logged.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accounts.keys import api_key_unusable_reason
from accounts.models import ApiKey
from realtime.agents.selectors import deployment_resolve
from realtime.agents.services import TOKEN_MAX_TTL_SECONDS, signing_key_current
from realtime.lib.crypto import secret_decrypt
from realtime.models import SigningKey

AUDIENCE = "switchboard-realtime"
ALGORITHMS = ["EdDSA"]  # the allow-list: nothing else is ever accepted, whatever the header says
TOKEN_DEFAULT_TTL_SECONDS = 300
LEEWAY_SECONDS = 5  # clock skew between hosts of one deployment
MAX_SESSION_CONFIG_BYTES = 16 * 1024
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "nbf", "jti", "key", "project", "project_id", "environment"]


class TokenRejected(Exception):
    """A token that must not authenticate; ``reason`` is a stable code shown to the client."""

    MESSAGES = {
        "token_malformed": "The token is not a well-formed Switchboard JWT.",
        "token_expired": "The token has expired.",
        "token_not_yet_valid": "The token is not valid yet.",
        "token_bad_signature": "The token's signature does not verify with any published key.",
        "token_bad_algorithm": "The token uses an algorithm that is not accepted (only EdDSA is).",
        "token_wrong_audience": "The token was issued for another audience.",
        "token_wrong_issuer": "The token was issued by someone else.",
        "token_missing_claim": "The token lacks a required claim.",
        "token_replayed": "This single-use token has already been used.",
        "token_key_revoked": "The API key this token was minted from has been revoked.",
        "token_key_expired": "The API key this token was minted from has expired.",
    }

    def __init__(self, reason: str, message: str | None = None):
        self.reason = reason
        self.message = message or self.MESSAGES[reason]
        super().__init__(self.message)


@dataclass(frozen=True)
class TokenClaims:
    jti: str
    key_pk: str
    key_id: str
    project_id: int
    project_slug: str
    environment: str
    environment_id: int
    deployment_key: str | None
    max_session_seconds: int | None
    single_use: bool
    expires_at: datetime
    session: dict | None


# --- Public keys by kid (a small in-process cache: verification is on every browser connect) -------
# An entry is re-read after REALTIME_KEY_RECHECK_SECONDS, so a signing key retired in an emergency
# (rotate_signing_key --verify-seconds 0) stops verifying in every process within that interval.

class _PublicKeyCache:
    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, object, datetime | None]] = {}

    def get(self, kid: str):
        """(public key, verify_until) or None when unknown or no longer verifying."""
        with self._lock:
            entry = self._entries.get(kid)
        if entry is None or time.monotonic() - entry[0] > settings.REALTIME_KEY_RECHECK_SECONDS:
            row = SigningKey.objects.filter(kid=kid).only("kid", "public_key_pem", "verify_until").first()
            if row is None:
                return None
            entry = (time.monotonic(), serialization.load_pem_public_key(row.public_key_pem.encode()),
                     row.verify_until)
            with self._lock:
                if len(self._entries) > 1000:
                    self._entries.clear()
                self._entries[kid] = entry
        _, cached, verify_until = entry
        if verify_until is not None and timezone.now() >= verify_until:
            return None
        return cached

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


public_key_cache = _PublicKeyCache()


# --- Minting --------------------------------------------------------------------------------------

def _key_row(api_key_pk: str) -> ApiKey | None:
    return (
        ApiKey.objects.select_related("project", "environment")
        .only(
            "id", "key_id", "project_id", "project__slug", "environment_id", "environment__kind",
            "revoked_at", "expires_at", "rotation_grace_ends_at",
        )
        .filter(pk=api_key_pk)
        .first()
    )


def _check_key_usable(row: ApiKey | None, now: datetime) -> ApiKey:
    """The one key rule (accounts.keys), told in the token's words."""
    if row is None:
        raise TokenRejected("token_key_revoked")
    reason = api_key_unusable_reason(revoked_at=row.revoked_at, expires_at=row.expires_at,
                                     rotation_grace_ends_at=row.rotation_grace_ends_at, now=now)
    if reason == "revoked_key":
        raise TokenRejected("token_key_revoked")
    if reason is not None:
        raise TokenRejected("token_key_expired")
    return row


def token_mint(
    *,
    api_key_pk: str,
    ttl_seconds: int = TOKEN_DEFAULT_TTL_SECONDS,
    deployment_key: str | None = None,
    single_use: bool = False,
    max_session_seconds: int | None = None,
    session: dict | None = None,
) -> tuple[str, datetime]:
    """Sign a token for the key. The TTL is capped at 3600 s. Raises ValueError for bad arguments,
    Deployment.DoesNotExist when ``deployment_key`` is not a deployment of the key's environment, and
    TokenRejected when the key itself can no longer be used."""
    if not isinstance(ttl_seconds, int) or ttl_seconds < 1:
        raise ValueError("ttl_seconds must be a positive integer")
    if max_session_seconds is not None and (not isinstance(max_session_seconds, int) or max_session_seconds < 1):
        raise ValueError("max_session_seconds must be a positive integer")
    if session is not None:
        if not isinstance(session, dict):
            raise ValueError("session must be a JSON object")
        if len(json.dumps(session)) > MAX_SESSION_CONFIG_BYTES:
            raise ValueError(f"session must be at most {MAX_SESSION_CONFIG_BYTES} bytes of JSON")
    now = timezone.now()
    row = _check_key_usable(_key_row(api_key_pk), now)
    if deployment_key is not None:
        deployment_resolve(project_id=row.project_id, environment_id=row.environment_id, deployment_key=deployment_key)
    ttl = min(ttl_seconds, TOKEN_MAX_TTL_SECONDS)
    issued = int(now.timestamp())
    expires = issued + ttl
    claims = {
        "iss": settings.SITE_URL,
        "aud": AUDIENCE,
        "sub": row.key_id,
        "key": str(row.pk),
        "project": row.project.slug,
        "project_id": row.project_id,
        "environment": row.environment.kind,
        "iat": issued,
        "nbf": issued,
        "exp": expires,
        "jti": uuid.uuid4().hex,
    }
    if deployment_key is not None:
        claims["deployment"] = deployment_key
    if max_session_seconds is not None:
        claims["max_session_seconds"] = max_session_seconds
    if single_use:
        claims["single_use"] = True
    if session is not None:
        claims["session"] = session
    signer = signing_key_current()
    private = serialization.load_pem_private_key(secret_decrypt(signer.private_key_encrypted).encode(), password=None)
    assert isinstance(private, Ed25519PrivateKey)  # signing_key_create makes only these
    token = jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": signer.kid, "typ": "JWT"})
    return token, datetime.fromtimestamp(expires, tz=UTC)


# --- Verification ---------------------------------------------------------------------------------

def _check_header(token: str) -> str:
    """Cheap checks needing no database: shape, algorithm, kid. Returns the kid."""
    if not isinstance(token, str) or not token or len(token) > 16384:
        raise TokenRejected("token_malformed")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRejected("token_malformed") from None
    if header.get("alg") not in ALGORITHMS:
        raise TokenRejected("token_bad_algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRejected("token_bad_signature", "The token names no signing key (kid).")
    return kid


_DECODE_ERRORS = [
    # Most specific first: several are subclasses of InvalidTokenError / DecodeError.
    (jwt.ExpiredSignatureError, "token_expired"),
    (jwt.ImmatureSignatureError, "token_not_yet_valid"),
    (jwt.InvalidAudienceError, "token_wrong_audience"),
    (jwt.InvalidIssuerError, "token_wrong_issuer"),
    (jwt.MissingRequiredClaimError, "token_missing_claim"),
    (jwt.InvalidAlgorithmError, "token_bad_algorithm"),
    (jwt.InvalidSignatureError, "token_bad_signature"),
    (jwt.InvalidKeyError, "token_bad_algorithm"),
]


def _decode(token: str, kid: str) -> dict:
    public = public_key_cache.get(kid)
    if public is None:
        raise TokenRejected("token_bad_signature", "The token's signing key (kid) is unknown or retired.")
    try:
        return jwt.decode(
            token,
            public,
            algorithms=ALGORITHMS,
            audience=AUDIENCE,
            issuer=settings.SITE_URL,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS, "verify_signature": True, "strict_aud": True},
        )
    except jwt.PyJWTError as exc:
        for error_type, reason in _DECODE_ERRORS:
            if isinstance(exc, error_type):
                raise TokenRejected(reason) from None
        raise TokenRejected("token_malformed") from None


def _claims_from(payload: dict, row: ApiKey) -> TokenClaims:
    deployment = payload.get("deployment")
    max_session = payload.get("max_session_seconds")
    session = payload.get("session")
    well_typed = (
        isinstance(payload["jti"], str)
        and (deployment is None or isinstance(deployment, str))
        and (max_session is None or (isinstance(max_session, int) and max_session > 0))
        and (session is None or isinstance(session, dict))
        and payload["sub"] == row.key_id
        and payload["project"] == row.project.slug
        and payload["project_id"] == row.project_id
        and payload["environment"] == row.environment.kind
    )
    if not well_typed:
        raise TokenRejected("token_malformed")
    return TokenClaims(
        jti=payload["jti"],
        key_pk=str(row.pk),
        key_id=row.key_id,
        project_id=row.project_id,
        project_slug=row.project.slug,
        environment=row.environment.kind,
        environment_id=row.environment_id,
        deployment_key=deployment,
        max_session_seconds=max_session,
        single_use=payload.get("single_use") is True,
        expires_at=datetime.fromtimestamp(payload["exp"], tz=UTC),
        session=session,
    )


def _remember_single_use(claims: TokenClaims, now: datetime) -> None:
    """First use wins: cache.add is atomic (Redis SET NX when REDIS_URL is set, so it holds across
    processes). The entry outlives the token, after which the token is refused as expired anyway."""
    remaining = (claims.expires_at - now) + timedelta(seconds=LEEWAY_SECONDS + 1)
    if not cache.add(f"realtime:jti:{claims.jti}", 1, timeout=max(1, int(remaining.total_seconds()) + 1)):
        raise TokenRejected("token_replayed")


def token_verify(*, token: str) -> TokenClaims:
    """Verify a token completely or raise TokenRejected with a distinct reason."""
    kid = _check_header(token)
    payload = _decode(token, kid)
    key_pk = payload.get("key")
    try:
        uuid.UUID(str(key_pk))
    except ValueError:
        raise TokenRejected("token_malformed") from None
    now = timezone.now()
    row = _check_key_usable(_key_row(str(key_pk)), now)
    claims = _claims_from(payload, row)
    if claims.single_use:
        _remember_single_use(claims, now)
    return claims


async def token_verify_async(*, token: str) -> TokenClaims:
    """Async twin for consumers: header checks inline, everything touching the database in a thread."""
    from channels.db import database_sync_to_async

    _check_header(token)
    return await database_sync_to_async(token_verify)(token=token)
