"""The lifecycle of one client session, whatever its dialect: every rule written once.

A dialect authenticates with ``session_admit`` (origin, the one key rule of accounts.keys behind an API
key or a token, the monthly budget), then holds a SessionLifecycle for the life of the session:

- ``start()``: the per-key concurrent cap (leased slots in Redis, so it holds across processes, rooms
  included), the revocation watch (the channel-layer notice plus the periodic re-check of
  realtime/gateway/revocation.py) and the session record (the Sessions page and the console);
- ``touch()`` on client activity; ``step()`` (from a loop the holder already runs) or ``run()`` (a task
  of its own) enforces the duration limit (counted from the session's original start), the idle
  timeout and the budget, and renews the slot lease;
- ``release()`` once, at the end: slot, watch and record (with the close reason).

Frame size and rate are per frame: ``limits.ClientGate``. Metering stays with the holder (its meter
is flushed by the same loop) and the relay with realtime.gateway.session. The lifecycle never talks to
the client itself: ``warn`` and ``close`` callbacks do, in the dialect's words.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings

from realtime.gateway import limits
from realtime.gateway.auth import (
    AuthFailed,
    ConnectionAuth,
    api_key_authenticate,
    connection_authenticate,
    origin_check,
    token_authenticate,
)
from realtime.gateway.budgets import BudgetGuard
from realtime.gateway.limits import GatewayError
from realtime.gateway.records import session_record_end, session_record_start
from realtime.gateway.revocation import KeyWatch, key_watch

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.5

Warn = Callable[[GatewayError], Awaitable[None]]
Close = Callable[[str, GatewayError | None], Awaitable[None]]


class SessionRefused(Exception):
    """The session cannot start or resume; ``error`` says why (with a close code)."""

    def __init__(self, error: GatewayError):
        self.error = error
        super().__init__(error.code)


def refused(code: str, message: str, close_code: int, error_type: str = "invalid_request_error") -> SessionRefused:
    return SessionRefused(GatewayError(code, message, close_code, error_type))


async def session_admit(*, scope=None, api_key: str | None = None, token: str | None = None) -> ConnectionAuth:
    """Admission before a session exists, for every dialect: the origin (when a scope is given), the
    credential (an API key or token given the dialect's way, else the scope's headers, subprotocol or
    query) under the one key rule, and the monthly budget. Raises AuthFailed with a stable code."""
    if api_key is None and token is None:
        return await connection_authenticate(scope=scope)  # the origin first, then the credential
    if scope is not None:
        origin_check(scope)
    if api_key is not None:
        return await api_key_authenticate(raw=api_key)
    return await token_authenticate(token=token)


def max_seconds_for(auth: ConnectionAuth) -> float:
    """The session's duration limit: the server's, or a token's tighter one."""
    limit = float(settings.REALTIME_MAX_SESSION_SECONDS)
    if auth.max_session_seconds:
        limit = min(limit, float(auth.max_session_seconds))
    return limit


class SessionLifecycle:
    """Admission, limits, revocation, the record and release of one session (see the module doc)."""

    def __init__(self, *, auth: ConnectionAuth, dialect: str, session_id: str, client_key: str | None = None,
                 idle_timeout: bool = True):
        self.auth = auth
        self.dialect = dialect
        self.session_id = session_id  # unique per session (the cap's slot, the record, the usage ledger)
        self.client_key = client_key or ""  # the client's own id for the session, if any
        self.idle_timeout = idle_timeout
        self.on_revoked: Callable[[], None] | None = None  # set by the holder once the session is live
        self.revoked = False
        self.released = False
        self.record_id: int | None = None
        self.started_wall = time.time()  # the ORIGINAL start: a resume never restarts the duration
        now = time.monotonic()
        self._started = now
        self.deadline = now + max_seconds_for(auth)
        self.last_activity = now
        self._slot = False
        self._watches: list[KeyWatch] = []
        self._budget = BudgetGuard(auth=auth)
        # With Redis the process monitor renews every slot each second (liveness.py); this renewal
        # keeps the in-process slots (no Redis) and re-takes a slot lost in an outage.
        self._next_lease = now + limits.LOCAL_SLOT_TTL / 3

    # --- Start ------------------------------------------------------------------------------------

    async def start(self, *, record: bool = True, deployment_id: int | None = None) -> None:
        """The per-key cap, the revocation watch and (unless the holder writes it in a database call
        of its own, ``record_start``) the session record. Raises SessionRefused; releases on failure."""
        try:
            if not await limits.session_slot_acquire(key_id=self.auth.key_id, session_id=self.session_id,
                                                     limit=settings.REALTIME_MAX_SESSIONS_PER_KEY):
                raise SessionRefused(limits.TOO_MANY_SESSIONS)
            self._slot = True
            # Before the session goes live, so a revocation from now on reaches it.
            await self.watch_key(api_key_pk=self.auth.pk)
            if record:
                await database_sync_to_async(self.record_start)(deployment_id=deployment_id)
            if self.revoked:
                raise SessionRefused(limits.KEY_REVOKED)
        except BaseException as exc:
            reason = exc.error.code if isinstance(exc, SessionRefused) else "refused"
            await self.release(reason=reason)
            raise

    def record_start(self, *, deployment_id: int | None) -> None:
        """The session record (sync: the holder may write it within a database call it makes anyway)."""
        record = session_record_start(
            session_id=self.session_id, client_key=self.client_key, project_id=self.auth.project_id, api_key_pk=self.auth.pk,
            key_id=self.auth.key_id, deployment_id=deployment_id, dialect=self.dialect,
        )
        self.record_id = record.pk

    async def watch_key(self, *, api_key_pk: str) -> None:
        """Watch one more key (a session resumed with the key its own was rotated into)."""
        if any(watch.api_key_pk == str(api_key_pk) for watch in self._watches):
            return
        self._watches.append(await key_watch(api_key_pk=api_key_pk, on_revoked=self._key_revoked))

    def _key_revoked(self) -> None:
        self.revoked = True
        if self.on_revoked is not None and not self.released:
            self.on_revoked()

    # --- Limits -----------------------------------------------------------------------------------

    def touch(self) -> None:
        """Client activity: the idle timeout starts again."""
        self.last_activity = time.monotonic()

    def within(self, *, max_seconds: float) -> bool:
        """Whether a limit of ``max_seconds`` counted from the original start has not passed yet."""
        return time.monotonic() < self._started + max_seconds

    def limit_duration(self, *, max_seconds: float) -> None:
        """A tighter duration limit from a resuming token, counted from the original start."""
        self.deadline = min(self.deadline, self._started + max_seconds)

    def limit_error(self, now: float, *, idle: bool) -> GatewayError | None:
        if now >= self.deadline:
            return limits.SESSION_TOO_LONG
        if idle and self.idle_timeout and now - self.last_activity >= settings.REALTIME_IDLE_TIMEOUT_SECONDS:
            return limits.IDLE_TIMEOUT
        return None

    async def step(self, now: float, *, warn: Warn, close: Close, idle: bool = True) -> bool:
        """Duration, idle (``idle``: False while no client is attached), budget and the slot lease.
        True once ``close`` was called (the session is over)."""
        error = self.limit_error(now, idle=idle)
        if error is not None:
            await close(error.code, error)
            return True
        if await self._budget.step(now, warn=warn, close=lambda error: close(error.code, error)):
            return True
        if now >= self._next_lease:
            self._next_lease = now + limits.LOCAL_SLOT_TTL / 3
            try:
                await limits.session_slot_acquire(key_id=self.auth.key_id, session_id=self.session_id,
                                                  limit=settings.REALTIME_MAX_SESSIONS_PER_KEY)
            except Exception:  # Redis briefly away: the connection stays, the next step retries
                logger.warning("slot lease refresh failed for session %s", self.session_id, exc_info=True)
        return False

    async def run(self, *, warn: Warn, close: Close) -> None:
        """``step`` as a task of its own, for holders with no periodic loop (tasks, rooms)."""
        while not self.released:
            await asyncio.sleep(TICK_SECONDS)
            if await self.step(time.monotonic(), warn=warn, close=close):
                return

    # --- Release ----------------------------------------------------------------------------------

    async def release(self, *, reason: str) -> None:
        """Once: the watches, the slot, and the record's end with ``reason``."""
        if self.released:
            return
        self.released = True
        for watch in self._watches:
            watch.cancel()
        self._watches.clear()
        if self._slot:
            try:
                await limits.session_slot_release(key_id=self.auth.key_id, session_id=self.session_id)
            except Exception:
                logger.exception("slot release failed for session %s", self.session_id)
        if self.record_id is not None:
            try:
                await database_sync_to_async(session_record_end)(record_id=self.record_id, close_reason=reason)
            except Exception:
                logger.exception("session record end failed for session %s", self.session_id)


__all__ = ["AuthFailed", "SessionLifecycle", "SessionRefused", "max_seconds_for", "refused", "session_admit"]
