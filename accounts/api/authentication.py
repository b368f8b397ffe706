"""DRF authentication with an API key: ``Authorization: Bearer <key>``, ``Basic base64(<key>)`` or
``Basic base64(<key>:)``."""
import base64
import binascii

from rest_framework import authentication, exceptions

from accounts.keys import KeyRejected, VerifiedKey, api_key_verify


class ApiKeyPrincipal:
    """The request.user of an API-key caller: not a portal user, scoped to one project and environment."""

    is_authenticated = True
    is_anonymous = False
    is_active = True

    def __init__(self, key: VerifiedKey):
        self.key = key

    def __str__(self):
        return self.key.key_id


def api_key_from_authorization(header: str | None) -> str | None:
    """Extract the raw key from an Authorization header value, or None if it carries none."""
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            # Seed 004 says its keys are "already Base64-encoded"; accept a raw key too.
            return credentials or None
        key, _, _password = decoded.partition(":")
        return key or None
    return None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            return None
        raw = api_key_from_authorization(header)
        if raw is None or not raw.startswith("sb_"):
            # Not ours (a JWT, say): let other authenticators look at it.
            if raw is None:
                raise exceptions.AuthenticationFailed({"code": "malformed_key", "message": "Unsupported Authorization header."})
            return None
        try:
            verified = api_key_verify(raw=raw)
        except KeyRejected as exc:
            raise exceptions.AuthenticationFailed({"code": exc.reason, "message": exc.message}) from None
        return ApiKeyPrincipal(verified), verified

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
