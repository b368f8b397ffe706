"""The dialect-independent gateway session core.

A GatewaySession holds one upstream connection for one client session and relays events both ways in
order. A dialect consumer attaches a ClientLink (how to deliver an upstream event, report an error,
and end the client connection) and hands over client events already translated to the upstream
protocol; no protocol translation happens here.

Ordering and tasks: upstream events reach the client from the upstream socket's read callback, in order
(``UpstreamClientConnection.relay_to``), so a session has no reader task; client events are written to
the upstream by the task that received them, unless something is queued ahead or the upstream's buffer
is full: then they wait, in order, for the session's writer task (bounded). While no client is attached
(a dropped client within the resume window) upstream events go to a bounded ResumeBuffer that
``attach`` replays first.

Back-pressure: the client-to-upstream queue is bounded (REALTIME_UPSTREAM_QUEUE_EVENTS), so a client
outrunning its upstream ends with ``client_too_fast`` instead of growing memory. Towards the client, a
link's ``deliver`` raises ClientTooSlow once the client's undelivered data passes its bound (the
realtime dialect's ClientOutbox, REALTIME_CLIENT_BUFFER_BYTES); the session then ends with
``client_too_slow``. While no client is attached, the resume buffer is bounded (REALTIME_BUFFER_MAX_EVENTS).

Rules (admission, the per-key cap, limits, revocation, the session record, release) are the
lifecycle's (realtime/gateway/lifecycle.py), which every dialect holds; its limits and this session's
resume window are timers on the process clock (realtime/gateway/clock.py), not a task per session.

Session keys: a client's id (seed 004 ``key``) is scoped to its project and environment and may be used
for any number of sessions over time. A plain connect always starts a fresh session; ``resume=True``
attaches to the live one only for the same key_id (the key or its rotation), environment and
deployment, within the token's limits, and tells the client (``ClientLink.resumed``).
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Protocol

import orjson
from channels.db import database_sync_to_async
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from project.singleflight import Flights
from realtime.agents.deployment_cache import deployment_cache_get, deployment_cache_put
from realtime.gateway import availability, buffer, limits, metrics, upstream
from realtime.gateway.auth import ConnectionAuth, api_keys_inactive
from realtime.gateway.clock import Alarm
from realtime.gateway.fifo import Fifo
from realtime.gateway.lifecycle import SessionLifecycle, SessionRefused, refused
from realtime.gateway.limits import GatewayError
from realtime.gateway.metering import SessionMeter
from realtime.gateway.outbox import ClientTooSlow
from realtime.sessions.timeline import SessionTimeline

logger = logging.getLogger(__name__)


class ClientLink(Protocol):
    # Synchronous: upstream events are relayed from the upstream socket's read callback (no task).
    # Raises ClientTooSlow once the client's undelivered data passes its bound.
    def deliver(self, text: str, *, bounded: bool = True) -> None: ...
    async def report(self, error: GatewayError) -> None: ...
    async def end(self, *, code: int, reason: str) -> None: ...
    async def resumed(self, *, replayed: int) -> None: ...


_refused = refused

INTERNAL_ERROR = GatewayError("internal_error", "The gateway failed; the session was closed.",
                              limits.CLOSE_INTERNAL, "server_error")
SESSION_REPLACED = GatewayError("session_replaced", "A new session was started with this session key.",
                                limits.CLOSE_REPLACED)

# Sessions this process holds, by the gateway's own session id; and by client session key, scoped to
# project and environment (ownership across processes is in buffer.py / Redis).
_sessions: dict[str, GatewaySession] = {}
_by_key: dict[str, GatewaySession] = {}


def scoped_session_key(*, auth: ConnectionAuth, session_key: str) -> str:
    """A client's session key names a session only within its project and environment: two tenants
    using the same key never meet."""
    return f"{auth.project_id}:{auth.environment_id}:{session_key}"


# Closing tasks outlive the consumer that started them; kept here so they are not garbage collected.
_closing: set[asyncio.Task] = set()


def _background(coro, name: str) -> None:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def new_session_id() -> str:
    return "sess_" + uuid.uuid4().hex


# Upstream event types the session neither meters nor holds back (see _meter_upstream and
# SessionMeter.upstream_event): relayed without parsing when the event names its type first.
RELAYED_UNREAD = frozenset({
    "response.output_text.delta", "response.output_audio_transcript.delta", "response.audio_transcript.delta",
    "response.text.delta", "response.function_call_arguments.delta", "input_audio_buffer.append",
    "conversation.item.input_audio_transcription.delta", "response.output_item.added",
    "response.content_part.added", "response.output_text.done", "response.output_audio.done",
    "response.output_audio_transcript.done", "response.content_part.done", "response.output_item.done",
    "conversation.item.added", "conversation.item.done", "response.created", "rate_limits.updated",
    "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
})
_TYPE_PREFIX = '{"type":"'


def leading_event_type(text: str) -> str | None:
    """The type of a JSON event written with ``"type"`` as its first member and no space (how OpenAI's
    and the local agent's events are serialised), read without parsing; None for any other layout."""
    if not text.startswith(_TYPE_PREFIX):
        return None
    end = text.find('"', 9, 120)
    if end < 0:
        return None
    kind = text[9:end]
    return None if "\\" in kind else kind


class GatewaySession:
    def __init__(self, *, auth: ConnectionAuth, dialect: str, session_key: str | None = None):
        self.session_id = new_session_id()
        self.session_key = session_key  # the client's id, if it gave one (scoped: see scoped_session_key)
        self.scoped_key = scoped_session_key(auth=auth, session_key=session_key) if session_key else None
        self.auth = auth
        self.dialect = dialect
        self.resumable = session_key is not None and settings.REALTIME_RESUME_SECONDS > 0
        self.lifecycle = SessionLifecycle(auth=auth, dialect=dialect, session_id=self.session_id,
                                          client_key=session_key)
        self.deployment_key: str | None = None
        self.deployment_default = False
        self.link: ClientLink | None = None
        self.opened = False
        self.closed = False
        self.close_reason = ""
        self._upstream: Any = None  # an UpstreamClientConnection once _open has connected
        self._relayed = metrics.relay(dialect, "to_client")
        self._relayed_up = metrics.relay(dialect, "to_upstream")
        # The session inspector's timeline: each event both ways, noted inline, written in batches elsewhere.
        self._timeline = SessionTimeline(project_id=auth.project_id, session_id=self.session_id)
        self._to_upstream: Fifo[str] = Fifo()
        self._upstream_sending = False  # a send to the upstream is under way (ordering: see from_client)
        self._relay_stopped = False  # upstream events are no longer relayed: the session is closing
        self._writer_started = False
        self._buffer = buffer.ResumeBuffer(max_events=settings.REALTIME_BUFFER_MAX_EVENTS)
        self._tasks: list[asyncio.Task] = []
        self._owner_claimed = False
        # Made by _open before anything is relayed (never for a refused session: no session time billed).
        self._meter: SessionMeter = None  # type: ignore[assignment]
        self._swallow_config_reply = False
        self._detached_at: float | None = None
        self._resume_alarm = Alarm(self._resume_window_over, name=f"resume-window:{self.session_id}")

    # --- Opening ----------------------------------------------------------------------------------

    async def _open(self, *, deployment_key: str | None, server) -> None:
        lifecycle = self.lifecycle
        await lifecycle.start(record=False)  # the cap and the revocation watch (raises SessionRefused)
        try:
            if self.scoped_key is not None:
                await buffer.session_owner_claim(scoped_key=self.scoped_key, session_id=self.session_id)
                self._owner_claimed = True

            # A known deployment comes from the process's cache: the common open reads no database.
            resolved = deployment_cache_get(project_id=self.auth.project_id, environment_id=self.auth.environment_id,
                                            deployment_key=deployment_key)
            if resolved is None:  # opens of the same deployment arriving together share one load
                resolved = await _deployment_flights.run(
                    (self.auth.project_id, self.auth.environment_id, deployment_key),
                    lambda: database_sync_to_async(_deployment_load)(auth=self.auth, deployment_key=deployment_key))
            if resolved is None:
                raise _refused("deployment_not_found", "No such deployment in this key's environment.",
                               limits.CLOSE_NOT_FOUND)
            deployment, credential = resolved
            await lifecycle.record_start(deployment_id=deployment.pk)
            self.deployment_key, self.deployment_default = deployment.deployment_key, deployment.is_default
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
        if lifecycle.revoked:  # revoked while opening
            await self._upstream.close()
            await self._release(reason=limits.KEY_REVOKED.code)
            raise SessionRefused(limits.KEY_REVOKED)
        lifecycle.on_revoked = self._key_revoked
        config = upstream.agent_session_config(agent=agent, overrides=self.auth.session_config)
        if config is not None:
            # Applied before any client event; its session.updated reply is the gateway's, not the client's.
            self._queue_upstream(upstream.session_update_event(config))
            self._swallow_config_reply = True
        # Taken by the process's usage writer every flush interval (accounts.billing.writer).
        self._meter = SessionMeter(key=self.auth, session_id=self.session_id, dialect=self.dialect)
        # Upstream events are relayed as the upstream socket delivers them (no reader task): what
        # arrived while opening is buffered for attach(), like everything while no client is attached.
        self._upstream.relay_to(self._from_upstream_message, on_closed=self._upstream_closed)
        # Every limit on the process clock; no client attached (waiting for a resume) is not idle.
        lifecycle.watch(warn=self._budget_warn, close=self._lifecycle_close, idle=lambda: self._detached_at is None)
        self.opened = True
        metrics.session_opened(self.dialect)

    def _resume_window_over(self) -> None:
        if self._detached_at is not None:
            self.close_soon(reason="resume_window_expired")

    def _key_revoked(self) -> None:
        self.close_soon(reason=limits.KEY_REVOKED.code, error=limits.KEY_REVOKED)

    async def _budget_warn(self, error: GatewayError) -> None:
        link = self.link
        if link is not None:  # a detached client hears the close reason when it resumes (session_expired)
            await link.report(error)

    async def _lifecycle_close(self, reason: str, error: GatewayError | None) -> None:
        await self.close(reason=reason, error=error)

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
            self.close_soon(reason="internal_error", error=INTERNAL_ERROR)

    # --- Attaching clients ------------------------------------------------------------------------

    async def attach(self, link: ClientLink, *, resumed: bool = False) -> None:
        """Make ``link`` the client: (on resume, tell it so,) replay what was buffered, in order, then
        go live. A previous client still attached is told it was replaced and closed."""
        previous, self.link = self.link, None
        if previous is not None:
            await previous.report(GatewayError("session_replaced", "Another connection resumed this session.",
                                               limits.CLOSE_REPLACED))
            await previous.end(code=limits.CLOSE_REPLACED, reason="session_replaced")
        if resumed:
            await link.resumed(replayed=len(self._buffer))
        while len(self._buffer):
            # Not bounded by the link's limit: the resume buffer bounded these already.
            link.deliver(self._buffer.popleft(), bounded=False)
        # No await between the emptiness check above and this line, so nothing can slip in between.
        self.link = link
        self._detached_at = None
        self._resume_alarm.cancel()
        self.lifecycle.touch()
        self.lifecycle.rearm()

    async def detach(self, link: ClientLink, *, close_code: int | None) -> None:
        """The client connection ended. A resumable session keeps its upstream for the resume window
        unless the client said goodbye with a normal close (1000)."""
        if self.link is not link or self.closed:
            return
        self.link = None
        if self.resumable and close_code != 1000:
            logger.info("session %s: client gone (close code %s); kept for resume", self.session_id, close_code)
            self._detached_at = time.monotonic()
            self._resume_alarm.set(self._detached_at + settings.REALTIME_RESUME_SECONDS)
            return
        # Its own task: daphne cancels a consumer that takes long to finish after a disconnect, and
        # the close (final usage flush, record) must not be cut short by that.
        self.close_soon(reason="client_closed")

    # --- Relaying ---------------------------------------------------------------------------------

    async def from_client(self, text: str, event: dict) -> None:
        """A client event, already checked by the dialect, for the upstream (unchanged)."""
        if self.closed:
            return
        self._relayed_up.add(text)
        self.lifecycle.touch()
        self._meter.client_event(event)  # audio by bytes; a declared format changes nothing
        queued = len(self._to_upstream)
        # Nothing ahead of it, and the upstream can take it without waiting: written here, without
        # waking the writer task.
        if not queued and not self._upstream_sending and self._upstream.send_now(text):
            self._timeline.sent(text)
            return
        if queued >= settings.REALTIME_UPSTREAM_QUEUE_EVENTS:
            self.close_soon(reason=limits.CLIENT_TOO_FAST.code, error=limits.CLIENT_TOO_FAST)
            return
        self._queue_upstream(text)

    def _queue_upstream(self, text: str) -> None:
        """For the writer task, started on first use: a session whose events all went straight to the
        upstream never holds one."""
        self._to_upstream.put(text)
        if not self._writer_started:
            self._writer_started = True
            self._spawn(self._write_upstream(), "upstream-writer")

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
        if leading_event_type(text) in RELAYED_UNREAD:
            return text  # most upstream traffic: nothing to meter or hold back, so not parsed
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        kind = event.get("type") if isinstance(event, dict) else None
        if kind is not None and not self._meter_upstream(kind, event):
            return None
        return text

    def _from_upstream_message(self, message: str | bytes) -> None:
        """One upstream message, in the upstream socket's read callback (UpstreamClientConnection.relay_to):
        metered, then delivered to the client, or buffered while none is attached. Never raises."""
        if self.closed or self._relay_stopped:
            return
        try:
            self._timeline.received(message)
            text = self._from_upstream(message)
            if text is None:
                return
            self._relayed.add(text)
            link = self.link
            if link is not None:
                try:
                    link.deliver(text)
                except ClientTooSlow:
                    self._stop_relaying(reason=limits.CLIENT_TOO_SLOW.code, error=limits.CLIENT_TOO_SLOW)
            else:
                try:
                    self._buffer.append(text)
                except buffer.BufferOverflow:
                    self._stop_relaying(reason="resume_buffer_overflow")
        except Exception:  # a bug here must not reach the socket's callback, nor leave the session half alive
            logger.exception("session %s: relaying an upstream event failed", self.session_id)
            self._stop_relaying(reason="internal_error", error=INTERNAL_ERROR)

    def _stop_relaying(self, *, reason: str, error: GatewayError | None = None) -> None:
        """Nothing more reaches the client or the buffer; the session closes in a task of its own."""
        self._relay_stopped = True
        self.close_soon(reason=reason, error=error)

    def _upstream_closed(self) -> None:
        if self.closed:
            return
        rcvd = self._upstream.protocol.close_rcvd
        error = upstream.upstream_closed_error(code=rcvd.code if rcvd else None, reason=rcvd.reason if rcvd else "")
        self.close_soon(reason="upstream_closed", error=error)

    async def _write_upstream(self) -> None:
        """Sends what ``from_client`` queued: events that arrived while a send was waiting for the
        upstream to drain (or before the session was open), in order."""
        send, get = self._upstream.send, self._to_upstream.get
        try:
            while True:
                text: str | None = await get()
                self._upstream_sending = True
                self._timeline.sent(text)
                await send(text)
                self._upstream_sending = False
                text = None  # an idle session must not keep its last event alive
        except ConnectionClosed:
            pass  # reported by _upstream_closed

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
        self._resume_alarm.cancel()
        if self.opened:
            metrics.session_closed(self.dialect, reason)
        logger.info("session %s: closing (%s)", self.session_id, reason)
        self._unregister()
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
            self._timeline.ended()
            try:
                async with asyncio.timeout(5):  # not wait_for: it can swallow a cancel (gh-86296)
                    await self._upstream.close()
            except Exception:
                pass
        if self._meter is not None:
            await self._meter.close()
        await self._release(reason=reason)

    def _unregister(self) -> None:
        if _sessions.get(self.session_id) is self:
            del _sessions[self.session_id]
        if self.scoped_key is not None and _by_key.get(self.scoped_key) is self:
            del _by_key[self.scoped_key]  # from now on a resume hears session_not_resumable

    async def _release(self, *, reason: str) -> None:
        self.closed = True
        self._unregister()
        if self._owner_claimed and self.scoped_key is not None:  # only if the key still names this session
            try:
                await buffer.session_owner_release(scoped_key=self.scoped_key, session_id=self.session_id)
            except Exception as exc:
                availability.failure_logged(logger, "release step failed for session %s", exc, self.session_id)
        await self.lifecycle.release(reason=reason)


_deployment_flights: Flights = Flights("deployment")


def _deployment_load(*, auth: ConnectionAuth, deployment_key: str | None):
    """(deployment with its agent, decrypted credential) from the database, then cached; None if the
    key's environment has no such deployment."""
    from accounts.models import Deployment
    from realtime.agents.selectors import agent_credential, deployment_resolve

    try:
        deployment = deployment_resolve(project_id=auth.project_id, environment_id=auth.environment_id,
                                        deployment_key=deployment_key)
    except Deployment.DoesNotExist:
        return None
    credential = agent_credential(agent=deployment.agent)
    deployment_cache_put(project_id=auth.project_id, environment_id=auth.environment_id,
                         deployment_key=deployment_key, deployment=deployment, credential=credential)
    return deployment, credential


def _not_resumable() -> SessionRefused:
    # The same answer whether the key was never used, has ended, or belongs to another tenant: a
    # session key names a session only within one project and environment.
    return _refused("session_not_resumable", "No session with this key is waiting to be resumed in this project "
                    "and environment; connect without resume=1 to start a new one.", limits.CLOSE_EXPIRED)


async def _resume(*, auth: ConnectionAuth, link: ClientLink, scoped_key: str, deployment_key: str | None
                  ) -> GatewaySession:
    session = _by_key.get(scoped_key)
    if session is None or session.closed or not session.opened:
        owner = await buffer.session_owner_lookup(scoped_key=scoped_key)
        if owner is not None and owner.process != buffer.process_id():
            raise _refused("session_elsewhere",
                           f"This session is held by gateway process {owner.process}; reconnect there.",
                           limits.CLOSE_SESSION_ELSEWHERE)
        raise _not_resumable()
    if session.auth.key_id != auth.key_id:  # the same key, or the key it was rotated into (same key_id)
        raise _refused("resume_key_mismatch", "This session was started with another API key.",
                       limits.CLOSE_FORBIDDEN)
    if deployment_key is not None and deployment_key != session.deployment_key or (
            deployment_key is None and not session.deployment_default):
        raise _refused("resume_deployment_mismatch", "This session runs on another deployment than the one "
                       "this connection asks for (or its token is pinned to).", limits.CLOSE_FORBIDDEN)
    if session.lifecycle.revoked or await api_keys_inactive(api_key_pks=list({session.auth.pk, auth.pk})):
        raise SessionRefused(limits.KEY_REVOKED)
    if auth.max_session_seconds and not session.lifecycle.within(max_seconds=auth.max_session_seconds):
        raise _refused("session_duration_exceeded", "This token's max_session_seconds, counted from the "
                       "session's start, has passed.", limits.CLOSE_SESSION_TOO_LONG)
    if session.closed:  # closed while we looked
        raise _not_resumable()
    if auth.max_session_seconds:
        session.lifecycle.limit_duration(max_seconds=auth.max_session_seconds)
    await session.lifecycle.watch_key(api_key_pk=auth.pk)
    await session.attach(link, resumed=True)
    return session


async def session_connect(
    *, auth: ConnectionAuth, link: ClientLink, dialect: str, session_key: str | None = None,
    resume: bool = False, deployment_key: str | None = None, server=None,
) -> GatewaySession:
    """Start a new session and attach ``link`` to it; or, with ``resume``, attach ``link`` to the live
    session named ``session_key`` in the key's project and environment (same key or its rotation,
    same deployment, within the token's limits). Raises SessionRefused with a stable code.

    A plain connect with a ``session_key`` always starts a fresh session; a session still holding that
    key in this process is closed (``session_replaced``)."""
    if auth.deployment_key and deployment_key and deployment_key != auth.deployment_key:
        raise _refused("deployment_forbidden", "The token is pinned to another deployment.", limits.CLOSE_FORBIDDEN)
    deployment_key = deployment_key or auth.deployment_key
    scoped_key = scoped_session_key(auth=auth, session_key=session_key) if session_key else None
    if resume:
        if scoped_key is None:
            raise _refused("invalid_session_key", "Resuming needs the key of the session.", limits.CLOSE_BAD_REQUEST)
        return await _resume(auth=auth, link=link, scoped_key=scoped_key, deployment_key=deployment_key)

    session = GatewaySession(auth=auth, dialect=dialect, session_key=session_key)
    _sessions[session.session_id] = session
    if scoped_key is not None:
        previous = _by_key.get(scoped_key)
        _by_key[scoped_key] = session
        if previous is not None and not previous.closed:
            await previous.close(reason=SESSION_REPLACED.code, error=SESSION_REPLACED)
    try:
        await session._open(deployment_key=deployment_key, server=server)
    finally:
        if not session.opened:
            session._unregister()
    await session.attach(link)
    return session


def sessions_live() -> list[GatewaySession]:
    """Sessions this process holds (for shutdown and diagnostics)."""
    return list(_sessions.values())
