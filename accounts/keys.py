"""API key format, generation and the one verification function every entry point uses.

Format: ``sb_<dev|stg|prod>_<32 base62 random><6 base62 CRC32 of everything before it>``.
The checksum lets a malformed or mistyped key be refused without touching the database and lets
secret scanners recognise leaked keys.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import string
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from project.singleflight import Flights

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
KEY_PATTERN = re.compile(r"^sb_(dev|stg|prod)_([0-9A-Za-z]{32})([0-9A-Za-z]{6})$")
PREFIX_RANDOM_CHARS = 4  # shown in the key list: sb_dev_AbCd…wxyz
LAST_USED_WRITE_INTERVAL = timedelta(seconds=60)


class KeyRejected(Exception):
    """A key that must not authenticate. ``reason`` is a stable code shown to the caller."""

    MESSAGES = {
        "missing_key": "No API key was provided.",
        "malformed_key": "The API key is not in the sb_<env>_<secret> format.",
        "bad_checksum": "The API key's checksum does not match; it was probably mistyped or truncated.",
        "unknown_key": "The API key is not known.",
        "revoked_key": "The API key has been revoked.",
        "expired_key": "The API key has expired.",
        "rotated_key": "The API key was rotated and its grace period has ended.",
    }

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(self.MESSAGES[reason])

    @property
    def message(self) -> str:
        return self.MESSAGES[self.reason]


def _base62(number: int, width: int) -> str:
    chars = []
    while number:
        number, rem = divmod(number, 62)
        chars.append(BASE62[rem])
    return "".join(reversed(chars)).rjust(width, "0")


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def key_generate(*, env_short: str) -> str:
    if env_short not in ("dev", "stg", "prod"):
        raise ValueError(f"unknown environment {env_short!r}")
    body = f"sb_{env_short}_" + "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    return body + checksum(body)


def key_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("ascii")).hexdigest()


def key_display_parts(raw: str) -> tuple[str, str]:
    """(prefix, last4) as stored for display."""
    env_short = raw.split("_", 2)[1]
    prefix = f"sb_{env_short}_" + raw[len(env_short) + 4: len(env_short) + 4 + PREFIX_RANDOM_CHARS]
    return prefix, raw[-4:]


def key_check_format(raw: str | None) -> str:
    """Refuse a malformed or checksum-failing key without any database access; return the env short."""
    if not raw:
        raise KeyRejected("missing_key")
    match = KEY_PATTERN.match(raw)
    if not match:
        raise KeyRejected("malformed_key")
    env_short, random_part, check = match.groups()
    if not secrets.compare_digest(checksum(f"sb_{env_short}_{random_part}"), check):
        raise KeyRejected("bad_checksum")
    return env_short


@dataclass(frozen=True)
class VerifiedKey:
    """What a successful verification yields; everything downstream works from this, never the secret."""

    pk: str  # the ApiKey row (one secret)
    key_id: str  # stable across rotation
    name: str
    project_id: int
    project_slug: str
    environment_id: int
    environment: str  # development / staging / production
    expires_at: datetime | None
    valid_until: datetime | None  # the earlier of expiry and rotation grace end


class _KeyCache:
    """A short-lived in-process cache of verified keys, keyed by digest. Revocation invalidates it
    in this process at once; other processes see it within API_KEY_CACHE_SECONDS."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, VerifiedKey]] = {}
        self._last_used_written: dict[str, float] = {}

    def get(self, digest: str) -> VerifiedKey | None:
        ttl = settings.API_KEY_CACHE_SECONDS
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            stored_at, verified = entry
            if time.monotonic() - stored_at > ttl:
                del self._entries[digest]
                return None
            return verified

    def put(self, digest: str, verified: VerifiedKey) -> None:
        if settings.API_KEY_CACHE_SECONDS <= 0:
            return
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (time.monotonic(), verified)

    def invalidate_pk(self, pk: str) -> None:
        with self._lock:
            for digest in [d for d, (_, v) in self._entries.items() if v.pk == pk]:
                del self._entries[digest]

    def should_write_last_used(self, pk: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if not self._last_used_due(pk, now):
                return False
            self._last_used_written[pk] = now
            return True

    def last_used_due(self, pk: str) -> bool:
        """Whether the next verification of ``pk`` writes ``last_used_at`` (nothing is marked)."""
        with self._lock:
            return self._last_used_due(pk, time.monotonic())

    def _last_used_due(self, pk: str, now: float) -> bool:
        last = self._last_used_written.get(pk)
        return last is None or now - last >= LAST_USED_WRITE_INTERVAL.total_seconds()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._last_used_written.clear()


key_cache = _KeyCache()
_verify_flights: Flights[VerifiedKey] = Flights("api-key-verify")


def api_key_unusable_reason(
    *, revoked_at: datetime | None, expires_at: datetime | None, rotation_grace_ends_at: datetime | None,
    now: datetime,
) -> str | None:
    """THE key-usability rule, used by every entry point (keys, tokens, the gateway's re-check): None
    when usable, else the KeyRejected reason. Any ``revoked_at`` revokes (a date set ahead of time
    does not postpone it: revoking goes through accounts.services.api_key_revoke, which stamps now)."""
    if revoked_at is not None:
        return "revoked_key"
    if expires_at is not None and now >= expires_at:
        return "expired_key"
    if rotation_grace_ends_at is not None and now >= rotation_grace_ends_at:
        return "rotated_key"
    return None


_KEY_STATE_FIELDS = ("pk", "revoked_at", "expires_at", "rotation_grace_ends_at")


def api_keys_unusable(*, api_key_pks: list[str]) -> list[str]:
    """Those of ``api_key_pks`` that may no longer be used (revoked, expired, rotated out, deleted), in
    one query: the periodic re-check behind revocation notices."""
    from accounts.models import ApiKey

    now = timezone.now()
    rows = {str(row.pop("pk")): row for row in ApiKey.objects.filter(pk__in=api_key_pks).values(*_KEY_STATE_FIELDS)}
    return [pk for pk in api_key_pks
            if str(pk) not in rows or api_key_unusable_reason(**rows[str(pk)], now=now) is not None]


def _check_validity(verified: VerifiedKey, now: datetime) -> None:
    if verified.valid_until is not None and now >= verified.valid_until:
        if verified.expires_at is not None and now >= verified.expires_at:
            raise KeyRejected("expired_key")
        raise KeyRejected("rotated_key")


def api_key_verify(*, raw: str | None) -> VerifiedKey:
    """The one verification function. Raises KeyRejected with a distinct reason.

    Malformed and bad-checksum keys cost no query; a valid key costs one indexed query (by digest),
    then is cached briefly; ``last_used_at`` is written at most once a minute per key.
    """
    from accounts.models import ApiKey  # models import keys; keep the cycle out of import time

    key_check_format(raw)
    digest = key_digest(raw)
    now = timezone.now()
    verified = key_cache.get(digest)
    if verified is None:
        row = (
            ApiKey.objects.select_related("project", "environment")
            .filter(digest=digest)
            .only(
                "id", "key_id", "name", "project_id", "project__slug", "environment_id", "environment__kind",
                "expires_at", "revoked_at", "rotation_grace_ends_at",
            )
            .first()
        )
        if row is None:
            raise KeyRejected("unknown_key")
        reason = api_key_unusable_reason(revoked_at=row.revoked_at, expires_at=row.expires_at,
                                         rotation_grace_ends_at=row.rotation_grace_ends_at, now=now)
        if reason is not None:
            raise KeyRejected(reason)
        ends = [t for t in (row.expires_at, row.rotation_grace_ends_at) if t is not None]
        verified = VerifiedKey(
            pk=str(row.id),
            key_id=row.key_id,
            name=row.name,
            project_id=row.project_id,
            project_slug=row.project.slug,
            environment_id=row.environment_id,
            environment=row.environment.kind,
            expires_at=row.expires_at,
            valid_until=min(ends) if ends else None,
        )
        key_cache.put(digest, verified)
    else:
        _check_validity(verified, now)
    if key_cache.should_write_last_used(verified.pk):
        cutoff = now - LAST_USED_WRITE_INTERVAL
        ApiKey.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff), pk=verified.pk).update(
            last_used_at=now
        )
    return verified


async def api_key_verify_async(*, raw: str | None) -> VerifiedKey:
    """Async twin for consumers: format and cache checks run inline; only a key not in the cache, or
    one whose ``last_used_at`` is due (once a minute), takes the database thread, shared by every session."""
    from channels.db import database_sync_to_async

    key_check_format(raw)
    assert raw is not None  # key_check_format refuses a missing key
    digest = key_digest(raw)
    verified = key_cache.get(digest)
    if verified is not None and not key_cache.last_used_due(verified.pk):
        _check_validity(verified, timezone.now())
        return verified
    # Opens of the same key arriving together (a cold cache) share one trip to the database thread.
    return await _verify_flights.run(digest, lambda: database_sync_to_async(api_key_verify)(raw=raw))
