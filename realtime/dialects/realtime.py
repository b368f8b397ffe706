"""The realtime dialect (seed 004): events go to and from the upstream unchanged; the gateway only adds
its own ``error`` events ``{type: "error", event_id, error: {type, code, message, param, event_id}}``.

Routes: ``/api/v1/realtime/session?key=<session-id>&protocol=realtime[&resume=1]`` and
``/v1/realtime[?deployment=<deploymentKey>]`` (OpenAI style; a new session per connection). ``key`` is
the client's own id, scoped to the key's project and environment and reusable: a plain connect always
starts a new session (``session.created``); ``resume=1`` attaches to the live one instead, answered
first with ``{"type": "session.resumed", "event_id", "session": {"key", "replayed_events"}}`` and then
the events buffered while the client was away (realtime.gateway.session, docs/realtime.md).

A plain ASGI application rather than a Channels consumer: this is the relay's hot path, and a
consumer costs per client event a thread hop (``aclose_old_connections`` before every handler), an
``asyncio.wait`` and a new task (``await_many_dispatch``), plus a channel-layer subscription per
connection. Measured in bench/README.md ("Relay"); revocation notices reach sessions through
realtime/gateway/revocation.py instead.
"""
from __future__ import annotations

import asyncio
import re
import uuid

import orjson
from django.conf import settings

from realtime.gateway import availability, metrics
from realtime.gateway.auth import AuthFailed, accepted_subprotocol, scope_query
from realtime.gateway.lifecycle import session_admit
from realtime.gateway.limits import CLOSE_BAD_REQUEST, ClientGate, GatewayError
from realtime.gateway.outbox import ClientOutbox
from realtime.gateway.session import GatewaySession, SessionRefused, session_connect

SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")

# Client events of the realtime protocol (GA and beta names). Anything else is answered here.
CLIENT_EVENTS = frozenset({
    "session.update", "transcription_session.update",
    "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
    "conversation.item.create", "conversation.item.retrieve", "conversation.item.truncate",
    "conversation.item.delete", "response.create", "response.cancel", "output_audio_buffer.clear",
})


def error_event(error: GatewayError, *, client_event_id: str | None = None, param: str | None = None) -> str:
    return orjson.dumps({
        "type": "error",
        "event_id": "event_sb_" + uuid.uuid4().hex[:20],
        "error": {"type": error.error_type, "code": error.code, "message": error.message,
                  "param": param, "event_id": client_event_id},
    }).decode()


def _bad_request(code: str, message: str, close: bool = False) -> GatewayError:
    return GatewayError(code, message, CLOSE_BAD_REQUEST if close else None)


class RealtimeConnection:
    """One client connection. Parses, calls the gateway core, renders errors; nothing else.
    It is the session's ClientLink: upstream events leave through a bounded ClientOutbox."""

    __slots__ = ("scope", "session_endpoint", "session", "gate", "outbox", "_main", "_session_key")

    def __init__(self, scope, send, *, session_endpoint: bool):
        self.scope = scope
        self.session_endpoint = session_endpoint
        self.session: GatewaySession | None = None
        self._session_key: str | None = None
        self.gate = ClientGate()
        self.outbox = ClientOutbox(send, limit_bytes=settings.REALTIME_CLIENT_BUFFER_BYTES, on_abandon=self._abandon)
        self._main: asyncio.Task | None = None

    async def run(self, receive) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        self._main = asyncio.current_task()
        close_code = None
        # Accept first so a refusal can carry its reason (an error event and a close code); a refusal
        # before accepting is a bare HTTP 403 to the client.
        await self.outbox.accept(accepted_subprotocol(self.scope), name=f"client-outbox:{id(self):x}")
        try:
            await self._open()
            self.scope = None  # not needed once the session is open; an idle connection keeps less
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    await self._receive(message.get("text"))
                    message = None  # an idle connection must not keep its last event alive
                elif kind == "websocket.disconnect":
                    close_code = message.get("code")
                    break
        except asyncio.CancelledError:
            if not self.outbox.abandoned:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # our own: the client stopped reading (see _abandon)
        finally:
            await self.outbox.stop()
            if self.session is not None:
                await self.session.detach(self, close_code=close_code)

    async def _open(self) -> None:
        query = scope_query(self.scope)
        session_id = None
        resume = False
        try:
            refusal = availability.admission_check()  # an outage or a drain: refused at once
            if refusal is not None:
                raise SessionRefused(refusal)
            if self.session_endpoint:
                session_id = query.get("key", "")
                if not SESSION_ID_PATTERN.match(session_id):
                    raise SessionRefused(_bad_request(
                        "invalid_session_key", "The key query parameter (1-100 of A-Z a-z 0-9 _ . : -) is required.",
                        close=True))
                if "protocol" not in query:  # required by seed 004
                    raise SessionRefused(_bad_request(
                        "missing_protocol", "The protocol query parameter is required: protocol=realtime.", close=True))
                if query["protocol"] != "realtime":
                    raise SessionRefused(_bad_request(
                        "unsupported_protocol", "Only protocol=realtime is supported.", close=True))
                resume = query.get("resume", "0") in ("1", "true")
                self._session_key = session_id

            async def admit() -> GatewaySession:
                auth = await session_admit(scope=self.scope)
                return await session_connect(
                    auth=auth, link=self, dialect="realtime", session_key=session_id, resume=resume,
                    deployment_key=query.get("deployment") or query.get("deploymentKey") or None,
                    server=self.scope.get("server"),
                )

            self.session = await availability.within_admission_bound(admit())
        except (AuthFailed, SessionRefused) as exc:
            await self.report(exc.error)
            await self.end(code=exc.error.close_code or CLOSE_BAD_REQUEST, reason=exc.error.code)
        except Exception as exc:
            error = availability.admission_failure(exc)
            if error is None:
                raise
            await self.report(error)
            await self.end(code=error.close_code or CLOSE_BAD_REQUEST, reason=error.code)

    async def _receive(self, text: str | None) -> None:
        session = self.session
        if session is None or session.closed:
            return
        event, refusal = self.gate.parse(text)
        if refusal is not None:
            await self.report(refusal)
            return
        assert text is not None  # a binary frame was refused above
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(kind, str):
            await self.report(_bad_request("invalid_event", "An event is a JSON object with a string type."))
            return
        if kind not in CLIENT_EVENTS:
            event_id = event.get("event_id")
            await self.report(
                _bad_request("unknown_event_type", f"Unknown client event type {kind[:80]!r}; it was not relayed."),
                client_event_id=event_id if isinstance(event_id, str) else None, param="type",
            )
            return
        await session.from_client(text, event)

    def _abandon(self) -> None:
        """The client took neither its last frames nor the close within the grace period."""
        if self._main is not None:
            self._main.cancel()

    # --- ClientLink ---------------------------------------------------------------------------------

    def deliver(self, text: str, *, bounded: bool = True) -> None:
        self.outbox.offer(text, bounded=bounded)  # raises ClientTooSlow past REALTIME_CLIENT_BUFFER_BYTES

    async def report(self, error: GatewayError, *, client_event_id: str | None = None, param: str | None = None):
        metrics.error_sent(error.code)
        self.outbox.push(error_event(error, client_event_id=client_event_id, param=param), bounded=False)

    async def end(self, *, code: int, reason: str) -> None:
        self.outbox.close(code=code, reason=reason)

    async def resumed(self, *, replayed: int) -> None:
        self.outbox.push(orjson.dumps({
            "type": "session.resumed", "event_id": "event_sb_" + uuid.uuid4().hex[:20],
            "session": {"key": self._session_key, "replayed_events": replayed},
        }).decode(), bounded=False)


def realtime_application(*, session_endpoint: bool):
    """The ASGI application of one realtime route."""

    async def application(scope, receive, send):
        connection = RealtimeConnection(scope, send, session_endpoint=session_endpoint)
        del scope  # the connection lets go of it once the session is open
        await connection.run(receive)

    return application
