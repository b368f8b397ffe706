"""The dialect-independent gateway session core.

A GatewaySession holds one upstream connection for one client session and relays events both ways in
order. A dialect consumer attaches a ClientLink (how to deliver an upstream event, report an error,
and end the client connection) and hands over client events already translated to the upstream
protocol; no protocol translation happens here.

Ordering: upstream events reach the client from one reader task; client events reach the upstream from
one writer task through a bounded queue. While no client is attached (a dropped client within the
resume window) upstream events go to a bounded ResumeBuffer that ``attach`` replays first.

Back-pressure: the client-to-upstream queue is bounded (REALTIME_UPSTREAM_QUEUE_EVENTS), so a client
outrunning its upstream ends with ``client_too_fast`` instead of growing memory. Towards the client, a
link's ``deliver`` raises ClientTooSlow once the client's undelivered data passes its bound (the
realtime dialect's ClientOutbox, REALTIME_CLIENT_BUFFER_BYTES); the session then ends with
``client_too_slow``. While no client is attached, the resume buffer is bounded (REALTIME_BUFFER_MAX_EVENTS).

Revocation: each session registers its key with the process's watcher (realtime/gateway/revocation.py), which
closes it with ``key_revoked`` on the channel-layer notice or on its periodic re-check.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Protocol

import orjson
from channels.db import database_sync_to_async
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from realtime.gateway import availability, buffer, limits, metrics, upstream
from realtime.gateway.auth import ConnectionAuth
from realtime.gateway.budgets import BudgetGuard
from realtime.gateway.fifo import Fifo
from realtime.gateway.limits import GatewayError
from realtime.gateway.metering import SessionMeter
from realtime.gateway.outbox import ClientTooSlow
from realtime.gateway.records import session_record_end, session_record_project, session_record_start
from realtime.gateway.revocation import KeyWatch, key_watch
from realtime.sessions.timeline import timeline_tap

logger = logging.getLogger(__name__)

WATCHDOG_TICK = 0.5


class ClientLink(Protocol):
    async def deliver(self, text: str, *, bounded: bool = True) -> None: ...
    async def report(self, error: GatewayError) -> None: ...
    async def end(self, *, code: int, reason: str) -> None: ...


class SessionRefused(Exception):
    """The session cannot start or resume; ``error`` says why (with a close code)."""

    def __init__(self, error: GatewayError):
        self.error = error
        super().__init__(error.code)


def _refused(code: str, message: str, close_code: int, error_type: str = "invalid_request_error") -> SessionRefused:
    return SessionRefused(GatewayError(code, message, close_code, error_type))


# Sessions this process holds, by session id (ownership across processes is in buffer.py / Redis).
_sessions: dict[str, GatewaySession] = {}
# Closing tasks outlive the consumer that started them; kept here so they are not garbage collected.
_closing: set[asyncio.Task] = set()


def _background(coro, name: str) -> None:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def new_session_id() -> str:
    return "sess_" + uuid.uuid4().hex


class GatewaySession:
    def __init__(self, *, session_id: str, auth: ConnectionAuth, dialect: str, resumable: bool):
        self.session_id = session_id
        self.auth = auth
        self.dialect = dialect
        self.resumable = resumable and settings.REALTIME_RESUME_SECONDS > 0
        self.link: ClientLink | None = None
        self.opened = False
        self.closed = False
        self.close_reason = ""
        self._upstream = None
        self._to_upstream: Fifo[str] = Fifo()
        self._buffer = buffer.ResumeBuffer(max_events=settings.REALTIME_BUFFER_MAX_EVENTS)
        self._tasks: list[asyncio.Task] = []
        self._record_id: int | None = None
        self._owner_claimed = False
        self._meter: SessionMeter | None = None
        self._key_watch: KeyWatch | None = None
        self._revoked_while_opening = False
        self._swallow_config_reply = False
        now = time.monotonic()
        self._started = now
        self._last_client_event = now
        self._detached_at: float | None = None
        max_seconds = settings.REALTIME_MAX_SESSION_SECONDS
        if auth.max_session_seconds:
            max_seconds = min(max_seconds, auth.max_session_seconds)
        self._deadline = now + max_seconds

    # --- Opening ----------------------------------------------------------------------------------

    async def _open(self, *, deployment_key: str | None, server) -> None:
        from realtime.agents.selectors import agent_credential, deployment_resolve

        if not await limits.session_slot_acquire(
            key_id=self.auth.key_id, session_id=self.session_id, limit=settings.REALTIME_MAX_SESSIONS_PER_KEY
        ):
            raise SessionRefused(limits.TOO_MANY_SESSIONS)
        try:
            if not await buffer.session_owner_claim(session_id=self.session_id, project_id=self.auth.project_id):
                raise _refused("session_in_use", "This session id is in use.", limits.CLOSE_REPLACED)
            self._owner_claimed = True
            # Before the session goes live, so a revocation from now on reaches it (released by _release).
            self._key_watch = await key_watch(api_key_pk=self.auth.pk, on_revoked=self._key_revoked)

            def resolve():
                from accounts.models import Deployment

                try:
                    deployment = deployment_resolve(
                        project_id=self.auth.project_id, environment_id=self.auth.environment_id,
                        deployment_key=deployment_key,
                    )
                except Deployment.DoesNotExist:
                    return None, None, None
                credential = agent_credential(agent=deployment.agent)
                record = session_record_start(
                    session_id=self.session_id, project_id=self.auth.project_id, api_key_pk=self.auth.pk,
                    key_id=self.auth.key_id, deployment_id=deployment.pk, dialect=self.dialect,
                )
                return deployment, credential, record.pk

            # The deployment is not kept: an idle session's memory is a goal (bench/README.md, "Relay").
            deployment, credential, self._record_id = await database_sync_to_async(resolve)()
            if deployment is None:
                raise _refused("deployment_not_found", "No such deployment in this key's environment.",
                               limits.CLOSE_NOT_FOUND)
            agent = deployment.agent
            target = upstream.upstream_target(
                agent=agent, credential=credential, session_id=self.session_id, server=server
            )
            try:
                connect_started = time.monotonic()
                self._upstream = await upstream.upstream_connect(
                    target=target, max_frame_bytes=settings.REALTIME_MAX_FRAME_BYTES
                )
                metrics.upstream_connect.observe(time.monotonic() - connect_started)
                # The session inspector's timeline: notes each event both ways, writes in batches elsewhere.
                self._upstream = timeline_tap(self._upstream, project_id=self.auth.project_id, session_id=self.session_id)
            except upstream.UpstreamFailed as exc:
                raise SessionRefused(exc.error) from None
        except SessionRefused as exc:
            await self._release(reason=exc.error.code)
            raise
        except Exception as exc:
            outage = availability.admission_failure(exc)  # an outage: one log line per outage, not per session
            if outage is None:
                logger.exception("session %s could not start", self.session_id)
            await self._release(reason=outage.code if outage else "internal_error")
            raise SessionRefused(outage or GatewayError("internal_error", "The gateway could not start the session.",
                                                        limits.CLOSE_INTERNAL, "server_error")) from None
        except BaseException:
            await self._release(reason="cancelled")
            raise
        if self._revoked_while_opening:
            await self._upstream.close()
            await self._release(reason=limits.KEY_REVOKED.code)
            raise SessionRefused(limits.KEY_REVOKED)
        config = upstream.agent_session_config(agent=agent, overrides=self.auth.session_config)
        if config is not None:
            # Applied before any client event; its session.updated reply is the gateway's, not the client's.
            self._to_upstream.put(upstream.session_update_event(config))
            self._swallow_config_reply = True
        # Taken by the process's usage writer every flush interval (accounts.billing.writer).
        self._meter = SessionMeter(key=self.auth, session_id=self.session_id, dialect=self.dialect)
        self._spawn(self._read_upstream(), "upstream-reader")
        self._spawn(self._write_upstream(), "upstream-writer")
        self._spawn(self._watchdog(), "watchdog")
        self.opened = True
        metrics.session_opened(self.dialect)

    def _key_revoked(self) -> None:
        if not self.opened:  # _open refuses the session when it gets there
            self._revoked_while_opening = True
            return
        self.close_soon(reason=limits.KEY_REVOKED.code, error=limits.KEY_REVOKED)

    async def _budget_warn(self, error: GatewayError) -> None:
        link = self.link
        if link is not None:  # a detached client hears the close reason when it resumes (session_expired)
            await link.report(error)

    async def _budget_close(self, error: GatewayError) -> None:
        await self.close(reason=error.code, error=error)

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=f"{name}:{self.session_id}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task) -> None:
        """A session task that dies of a bug must not leave the session half alive."""
        if task.cancelled() or task.exception() is None:
            return
        logger.error("session %s: task %s failed", self.session_id, task.get_name(), exc_info=task.exception())
        if not self.closed:
            error = GatewayError("internal_error", "The gateway failed; the session was closed.",
                                 limits.CLOSE_INTERNAL, "server_error")
            self.close_soon(reason="internal_error", error=error)

    # --- Attaching clients ------------------------------------------------------------------------

    async def attach(self, link: ClientLink) -> None:
        """Make ``link`` the client: replay what was buffered, in order, then go live. A previous
        client still attached is told it was replaced and closed."""
        previous, self.link = self.link, None
        if previous is not None:
            await previous.report(GatewayError("session_replaced", "Another connection resumed this session.",
                                               limits.CLOSE_REPLACED))
            await previous.end(code=limits.CLOSE_REPLACED, reason="session_replaced")
        while len(self._buffer):
            # Not bounded by the link's limit: the resume buffer bounded these already.
            await link.deliver(self._buffer.popleft(), bounded=False)
        # No await between the emptiness check above and this line, so nothing can slip in between.
        self.link = link
        self._detached_at = None
        self._last_client_event = time.monotonic()

    async def detach(self, link: ClientLink, *, close_code: int | None) -> None:
        """The client connection ended. A resumable session keeps its upstream for the resume window
        unless the client said goodbye with a normal close (1000)."""
        if self.link is not link or self.closed:
            return
        self.link = None
        if self.resumable and close_code != 1000:
            logger.info("session %s: client gone (close code %s); kept for resume", self.session_id, close_code)
            self._detached_at = time.monotonic()
            return
        # Its own task: daphne cancels a consumer that takes long to finish after a disconnect, and
        # the close (final usage flush, record) must not be cut short by that.
        self.close_soon(reason="client_closed")

    # --- Relaying ---------------------------------------------------------------------------------

    async def from_client(self, text: str, event: dict) -> None:
        """A client event, already checked by the dialect, for the upstream (unchanged)."""
        if self.closed:
            return
        metrics.relay(self.dialect, "to_upstream").add(text)
        self._last_client_event = time.monotonic()
        self._meter.client_event(event)  # audio by bytes; a declared format changes nothing
        if len(self._to_upstream) >= settings.REALTIME_UPSTREAM_QUEUE_EVENTS:
            self.close_soon(reason=limits.CLIENT_TOO_FAST.code, error=limits.CLIENT_TOO_FAST)
            return
        self._to_upstream.put(text)

    def meter_add(self, metric: str, quantity) -> None:
        """Usage a dialect counts itself (e.g. conversation messages), on this session's meter."""
        if self._meter is not None:
            self._meter.add(metric, quantity)

    def _meter_upstream(self, kind: str, event: dict) -> bool:
        """Meter one upstream event; False if it must not reach the client."""
        self._meter.upstream_event(kind, event)  # validated usage, audio at the confirmed format
        if kind == "session.updated":
            if self._swallow_config_reply:
                self._swallow_config_reply = False
                return False
        elif kind == "error" and self._swallow_config_reply:
            self._swallow_config_reply = False  # the agent config was refused: the client sees why
        return True

    def _from_upstream(self, message) -> str | None:
        """Meter one upstream message: the text to relay, or None if it must not reach the client."""
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        kind = event.get("type") if isinstance(event, dict) else None
        if kind is not None and not self._meter_upstream(kind, event):
            return None
        return text

    async def _read_upstream(self) -> None:
        recv = self._upstream.recv
        relayed = metrics.relay(self.dialect, "to_client")
        try:
            while True:
                text = self._from_upstream(await recv())
                if text is None:
                    continue
                relayed.add(text)
                link = self.link
                if link is not None:
                    try:
                        await link.deliver(text)
                    except ClientTooSlow:
                        await self.close(reason=limits.CLIENT_TOO_SLOW.code, error=limits.CLIENT_TOO_SLOW)
                        return
                else:
                    try:
                        self._buffer.append(text)
                    except buffer.BufferOverflow:
                        await self.close(reason="resume_buffer_overflow")
                        return
                text = None  # an idle session must not keep its last event (often 6 KB of audio) alive
        except ConnectionClosed as exc:
            if not self.closed:
                rcvd = exc.rcvd
                error = upstream.upstream_closed_error(
                    code=rcvd.code if rcvd else None, reason=rcvd.reason if rcvd else ""
                )
                await self.close(reason="upstream_closed", error=error)

    async def _write_upstream(self) -> None:
        send, get = self._upstream.send, self._to_upstream.get
        try:
            while True:
                await send(await get())
        except ConnectionClosed:
            pass  # the reader reports the close

    async def _watchdog(self) -> None:
        """Session duration, idle timeout, the resume window, the monthly budget and
        the lease refreshes."""
        budget = BudgetGuard(auth=self.auth)
        next_lease = time.monotonic()
        tick = WATCHDOG_TICK
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now >= self._deadline:
                return await self.close(reason=limits.SESSION_TOO_LONG.code, error=limits.SESSION_TOO_LONG)
            if self._detached_at is not None:
                if now - self._detached_at >= settings.REALTIME_RESUME_SECONDS:
                    return await self.close(reason="resume_window_expired")
            elif now - self._last_client_event >= settings.REALTIME_IDLE_TIMEOUT_SECONDS:
                return await self.close(reason=limits.IDLE_TIMEOUT.code, error=limits.IDLE_TIMEOUT)
            if await budget.step(now, warn=self._budget_warn, close=self._budget_close):
                return
            if now >= next_lease:
                # With Redis, the process monitor renews every lease each second (liveness.py).
                next_lease = now + limits.LOCAL_SLOT_TTL / 3
                try:
                    await buffer.session_owner_refresh(session_id=self.session_id, project_id=self.auth.project_id)
                    await limits.session_slot_acquire(key_id=self.auth.key_id, session_id=self.session_id,
                                                      limit=settings.REALTIME_MAX_SESSIONS_PER_KEY)
                except Exception as exc:
                    availability.failure_logged(logger, "lease refresh failed for session %s", exc, self.session_id)

    # --- Closing ----------------------------------------------------------------------------------

    def close_soon(self, *, reason: str, error: GatewayError | None = None) -> None:
        """Close in a task of its own, for callers running in a consumer (which daphne may cancel)."""
        if not self.closed:
            _background(self.close(reason=reason, error=error), f"close:{self.session_id}")

    async def close(self, *, reason: str, error: GatewayError | None = None) -> None:
        """End the session once: tell the attached client (error, then close), close the upstream,
        stop the tasks, flush usage, release the slot and ownership, and record the reason."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self.opened:
            metrics.session_closed(self.dialect, reason)
        logger.info("session %s: closing (%s)", self.session_id, reason)
        if _sessions.get(self.session_id) is self:
            del _sessions[self.session_id]  # from now on a reconnect hears session_expired
        link, self.link = self.link, None
        if link is not None:
            try:
                if error is not None:
                    await link.report(error)
                await link.end(code=(error.close_code if error and error.close_code else 1000), reason=reason)
            except Exception:
                logger.exception("could not tell the client session %s ended", self.session_id)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        others = [task for task in self._tasks if task is not current]
        if others:
            _done, pending = await asyncio.wait(others, timeout=5)
            if pending:
                logger.warning("session %s: tasks slow to stop: %s", self.session_id,
                               ", ".join(f"{task.get_name()} at {task.get_stack(limit=3)}" for task in pending))
        if self._upstream is not None:
            try:
                await asyncio.wait_for(self._upstream.close(), timeout=5)
            except Exception:
                pass
        if self._meter is not None:
            await self._meter.close()
        await self._release(reason=reason)

    async def _release(self, *, reason: str) -> None:
        self.closed = True
        if self._key_watch is not None:
            self._key_watch.cancel()
            self._key_watch = None
        if _sessions.get(self.session_id) is self:
            del _sessions[self.session_id]
        steps = [lambda: limits.session_slot_release(key_id=self.auth.key_id, session_id=self.session_id)]
        if self._owner_claimed:  # never another process's ownership record
            steps.append(lambda: buffer.session_owner_release(session_id=self.session_id))
        for step in steps:
            try:
                await step()
            except Exception as exc:
                availability.failure_logged(logger, "release step failed for session %s", exc, self.session_id)
        if self._record_id is not None:
            await database_sync_to_async(session_record_end)(record_id=self._record_id, close_reason=reason)


async def session_connect(
    *, auth: ConnectionAuth, link: ClientLink, dialect: str, session_id: str | None = None,
    deployment_key: str | None = None, server=None,
) -> GatewaySession:
    """Start a new session, or resume the one named ``session_id`` (same project only), and attach
    ``link`` to it. Raises SessionRefused with a stable code."""
    if auth.deployment_key and deployment_key and deployment_key != auth.deployment_key:
        raise _refused("deployment_forbidden", "The token is pinned to another deployment.", limits.CLOSE_FORBIDDEN)
    deployment_key = deployment_key or auth.deployment_key
    resumable = session_id is not None
    session_id = session_id or new_session_id()

    session = _sessions.get(session_id)
    if session is not None:
        if session.auth.project_id != auth.project_id:
            raise _refused("session_forbidden", "This session belongs to another project.", limits.CLOSE_FORBIDDEN)
        if session.closed:
            raise _refused("session_expired", "This session has ended and can no longer be resumed.",
                           limits.CLOSE_EXPIRED)
        if not session.opened:
            raise _refused("session_in_use", "This session is still starting; retry.", limits.CLOSE_REPLACED)
        await session.attach(link)
        return session

    owner = await buffer.session_owner_lookup(session_id=session_id)
    if owner is not None and owner.process != buffer.process_id():
        if owner.project_id != auth.project_id:
            raise _refused("session_forbidden", "This session belongs to another project.", limits.CLOSE_FORBIDDEN)
        raise _refused(
            "session_elsewhere", f"This session is held by gateway process {owner.process}; reconnect there.",
            limits.CLOSE_SESSION_ELSEWHERE,
        )
    if resumable:
        previous_project = await database_sync_to_async(session_record_project)(session_id=session_id)
        if previous_project is not None:
            if previous_project != auth.project_id:
                raise _refused("session_forbidden", "This session belongs to another project.",
                               limits.CLOSE_FORBIDDEN)
            raise _refused("session_expired", "This session has ended and can no longer be resumed.",
                           limits.CLOSE_EXPIRED)

    session = GatewaySession(session_id=session_id, auth=auth, dialect=dialect, resumable=resumable)
    _sessions[session_id] = session
    try:
        await session._open(deployment_key=deployment_key, server=server)
    finally:
        if not session.opened and _sessions.get(session_id) is session:
            del _sessions[session_id]
    await session.attach(link)
    return session


def sessions_live() -> list[GatewaySession]:
    """Sessions this process holds (for shutdown and diagnostics)."""
    return list(_sessions.values())
