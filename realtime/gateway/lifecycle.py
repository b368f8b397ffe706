"""The lifecycle of one client session, whatever its dialect: every rule written once.

A dialect authenticates with ``session_admit`` (origin, the one key rule of accounts.keys behind an API
key or a token, the monthly budget), then holds a SessionLifecycle for the life of the session:

- ``start()``: the per-key concurrent cap (leased slots in Redis, so it holds across processes, rooms
  included), the revocation watch (the channel-layer notice plus the periodic re-check of
  realtime/gateway/revocation.py) and the session record (the Sessions page and the console);
- ``touch()`` on client activity (a float stored: the hot path pays nothing more); ``watch()`` enforces
  the duration limit (counted from the session's original start), the idle timeout and the budget's
  grace period from the process clock; the budget itself is looked at for all sessions of the process
  at once (realtime.gateway.budgets' board), which tells only the sessions whose budget is spent (realtime.gateway.clock): one timer per session at its next deadline, no
  task of its own and no periodic wake-up;
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
from realtime.gateway.background import tasks_stop
from realtime.gateway.budgets import BudgetGuard
from realtime.gateway.clock import Alarm
from realtime.gateway.limits import GatewayError
from realtime.gateway.records import session_record_close, session_record_open
from realtime.gateway.revocation import KeyWatch, key_watch

logger = logging.getLogger(__name__)


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


# Lifecycles started and not yet released in this process, and who waits for there to be none (a drain).
_live: set[SessionLifecycle] = set()
_released_waiters: list[asyncio.Future] = []


async def lifecycles_released() -> None:
    """Return once every session of this process has been released (its record's end noted)."""
    if _live:
        waiter = asyncio.get_running_loop().create_future()
        _released_waiters.append(waiter)
        await waiter


def _released(lifecycle: SessionLifecycle) -> None:
    _live.discard(lifecycle)
    if not _live:
        while _released_waiters:
            waiter = _released_waiters.pop()
            if not waiter.done():
                waiter.set_result(None)


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
        self.recorded = False
        self.started_wall = time.time()  # the ORIGINAL start: a resume never restarts the duration
        now = time.monotonic()
        self._started = now
        self.deadline = now + max_seconds_for(auth)
        self.last_activity = now
        self._slot = False
        self._watches: list[KeyWatch] = []
        self._budget = BudgetGuard(auth=auth, on_spent=self._budget_spent)
        # With Redis the process monitor renews every slot each second (liveness.py, which also re-takes
        # a slot lost in an outage); the watch renews the in-process slots (no Redis).
        self._next_lease = now + limits.LOCAL_SLOT_TTL / 3
        self._alarm: Alarm | None = None
        self._work: asyncio.Task | None = None  # a budget look or a close, started by the alarm
        self._closing = False
        self._warn: Warn | None = None
        self._close: Close | None = None
        self._idle_applies: Callable[[], bool] | None = None

    # --- Start ------------------------------------------------------------------------------------

    async def start(self, *, record: bool = True, deployment_id: int | None = None) -> None:
        """The per-key cap, the revocation watch and (unless the holder notes it later, once it knows
        the deployment: ``record_start``) the session record. Raises SessionRefused; releases on failure."""
        _live.add(self)
        try:
            if not await limits.session_slot_acquire(key_id=self.auth.key_id, session_id=self.session_id,
                                                     limit=settings.REALTIME_MAX_SESSIONS_PER_KEY):
                raise SessionRefused(limits.TOO_MANY_SESSIONS)
            self._slot = True
            # Before the session goes live, so a revocation from now on reaches it.
            await self.watch_key(api_key_pk=self.auth.pk)
            if record:
                await self.record_start(deployment_id=deployment_id)
            if self.revoked:
                raise SessionRefused(limits.KEY_REVOKED)
        except BaseException as exc:
            reason = exc.error.code if isinstance(exc, SessionRefused) else "refused"
            await self.release(reason=reason)
            raise

    async def record_start(self, *, deployment_id: int | None) -> None:
        """Write the session record, and wait for it: the open is the step that finds a hung database
        (issue 11: new sessions are refused within REALTIME_ADMISSION_TIMEOUT_SECONDS, never served
        blind). Opens arriving together are written together; the end is noted (records.py)."""
        self.recorded = True  # from here on, a release notes the end (nothing to end if it was never written)
        await session_record_open(
            session_id=self.session_id, client_key=self.client_key, project_id=self.auth.project_id,
            api_key_pk=self.auth.pk, key_id=self.auth.key_id, deployment_id=deployment_id, dialect=self.dialect,
        )

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
        self.rearm()

    def limit_error(self, now: float, *, idle: bool) -> GatewayError | None:
        if now >= self.deadline:
            return limits.SESSION_TOO_LONG
        if idle and self.idle_timeout and now - self.last_activity >= settings.REALTIME_IDLE_TIMEOUT_SECONDS:
            return limits.IDLE_TIMEOUT
        return None

    # --- The watch: every limit on the process clock -----------------------------------------------

    def watch(self, *, warn: Warn, close: Close, idle: Callable[[], bool] | None = None) -> None:
        """Enforce the duration limit, the idle timeout (while ``idle()``, if given, is true: a session
        with no client attached is not idle), the budget and the in-process slot lease from the process
        clock (realtime.gateway.clock): no task of the session's own until something must happen."""
        self._warn, self._close, self._idle_applies = warn, close, idle
        self._alarm = Alarm(self._due, name=f"lifecycle:{self.session_id}")
        self._budget.watch()
        self.rearm()

    def rearm(self) -> None:
        """Look at the deadlines again (after a client attaches or a limit tightened)."""
        if self._alarm is not None and self._work is None and not self.released and not self._closing:
            self._alarm.set(self._next_due())

    def _idle_watched(self) -> bool:
        return self.idle_timeout and (self._idle_applies is None or self._idle_applies())

    def _next_due(self) -> float:
        due = min(self.deadline, self._budget.due)  # the budget's grace period, once warned
        if self._idle_watched():
            due = min(due, self.last_activity + settings.REALTIME_IDLE_TIMEOUT_SECONDS)
        if limits.redis_client() is None:
            due = min(due, self._next_lease)
        return due

    def _due(self) -> None:
        """The alarm passed (plain code on the event loop): close, look at the budget, renew the
        in-process slot, or only move the alarm (the client was active meanwhile)."""
        if self.released or self._closing or self._work is not None:
            return
        now = time.monotonic()
        error = self.limit_error(now, idle=self._idle_watched())
        if error is not None:
            self._start_work(self._close_once(error.code, error), "close")
            return
        if now >= self._budget.due:  # the grace period is over: close unless the budget was raised
            self._start_work(self._budget_look(now), "budget")
            return
        if now >= self._next_lease:
            # With Redis the process monitor renews every slot each second (liveness.py).
            self._next_lease = now + limits.LOCAL_SLOT_TTL / 3
            limits.session_slot_renew_local(key_id=self.auth.key_id, session_id=self.session_id)
        self.rearm()

    def _budget_spent(self) -> None:
        """The process's budget board found this key or project spent: warn (in a task)."""
        if self.released or self._closing or self._work is not None:
            return
        self._start_work(self._budget_look(time.monotonic()), "budget")

    def _start_work(self, coro, what: str) -> None:
        self._work = asyncio.get_running_loop().create_task(coro, name=f"lifecycle-{what}:{self.session_id}")
        self._work.add_done_callback(self._work_done)

    def _work_done(self, task: asyncio.Task) -> None:
        if self._work is task:
            self._work = None
        if not task.cancelled() and task.exception() is not None:
            logger.error("session %s: %s failed", self.session_id, task.get_name(), exc_info=task.exception())
        self.rearm()

    async def _close_once(self, reason: str, error: GatewayError | None) -> None:
        if self._closing or self.released:
            return
        self._closing = True  # from here on the close runs to its end: release does not cancel it
        assert self._close is not None  # set by watch(), which armed the alarm
        await self._close(reason, error)

    async def _warn_live(self, error: GatewayError) -> None:
        if not self.released and not self._closing and self._warn is not None:
            await self._warn(error)

    async def _budget_look(self, now: float) -> None:
        await self._budget.step(now, warn=self._warn_live, close=lambda error: self._close_once(error.code, error))

    # --- Release ----------------------------------------------------------------------------------

    async def release(self, *, reason: str) -> None:
        """Once: the watches, the slot, and the record's end with ``reason``."""
        if self.released:
            return
        self.released = True
        for watch in self._watches:
            watch.cancel()
        self._watches.clear()
        self._budget.unwatch()
        if self._alarm is not None:
            self._alarm.cancel()
        work = self._work
        try:
            if work is not None and not self._closing:  # a budget look still running
                await tasks_stop([work])
            if self._slot:
                try:
                    await limits.session_slot_release(key_id=self.auth.key_id, session_id=self.session_id)
                except Exception:
                    logger.exception("slot release failed for session %s", self.session_id)
        finally:
            # Also when a second cancel (a server cancelling the connection's task again) interrupts the
            # awaits above: the record would otherwise stay "live" and a drain wait for it for good. A
            # slot not released lapses with its lease.
            if self.recorded:
                session_record_close(session_id=self.session_id, close_reason=reason)
            _released(self)


__all__ = ["AuthFailed", "SessionLifecycle", "SessionRefused", "max_seconds_for", "refused", "session_admit"]
