"""The realtime dialect (seed 004): events go to and from the upstream unchanged; the gateway only adds
its own ``error`` events ``{type: "error", event_id, error: {type, code, message, param, event_id}}``.

Routes: ``/api/v1/realtime/session?key=<session-id>&protocol=realtime`` (resumable by ``key``) and
``/v1/realtime[?deployment=<deploymentKey>]`` (OpenAI style; a new session per connection).
"""
from __future__ import annotations

import re
import uuid

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer

from realtime.auth import AuthFailed, accepted_subprotocol, connection_authenticate, scope_query
from realtime.gateway import GatewaySession, SessionRefused, session_connect
from realtime.limits import CLOSE_BAD_REQUEST, KEY_REVOKED, ClientGate, GatewayError
from realtime.notify import key_group

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


class RealtimeConsumer(AsyncWebsocketConsumer):
    """Parses, calls the gateway core, renders errors; nothing else."""

    session_endpoint = False  # True on /api/v1/realtime/session (session ``key`` required)

    async def connect(self):
        self.session: GatewaySession | None = None
        self.gate = ClientGate()
        # Accept first so a refusal can carry its reason (an error event and a close code); a refusal
        # before accepting is a bare HTTP 403 to the client.
        await self.accept(accepted_subprotocol(self.scope))
        query = scope_query(self.scope)
        session_id = None
        try:
            if self.session_endpoint:
                session_id = query.get("key", "")
                if not SESSION_ID_PATTERN.match(session_id):
                    raise SessionRefused(_bad_request(
                        "invalid_session_key", "The key query parameter (1-100 of A-Z a-z 0-9 _ . : -) is required.",
                        close=True))
                if query.get("protocol", "realtime") != "realtime":
                    raise SessionRefused(_bad_request(
                        "unsupported_protocol", "Only protocol=realtime is supported.", close=True))
            auth = await connection_authenticate(scope=self.scope)
            self.session = await session_connect(
                auth=auth, link=self, dialect="realtime", session_id=session_id,
                deployment_key=query.get("deployment") or query.get("deploymentKey") or None,
                server=self.scope.get("server"),
            )
        except (AuthFailed, SessionRefused) as exc:
            await self.report(exc.error)
            await self.close(code=exc.error.close_code, reason=exc.error.code)
            return
        group = key_group(auth.pk)
        self.groups.append(group)
        await self.channel_layer.group_add(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        session = self.session
        if session is None or session.closed:
            return
        if text_data is None:
            await self.report(_bad_request("binary_not_supported", "Send events as JSON text frames."))
            return
        refusal = self.gate.check(text_data)
        if refusal is not None:
            await self.report(refusal)
            return
        try:
            event = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            await self.report(_bad_request("invalid_json", "The event is not valid JSON; it was not relayed."))
            return
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
        await session.from_client(text_data, event)

    async def disconnect(self, code):
        if self.session is not None:
            await self.session.detach(self, close_code=code)

    async def key_revoked(self, message):
        """Channel-layer notice from api_key_revoke (at-most-once; the session also re-checks)."""
        if self.session is not None:
            self.session.close_soon(reason=KEY_REVOKED.code, error=KEY_REVOKED)

    # --- ClientLink ---------------------------------------------------------------------------------

    async def deliver(self, text: str) -> None:
        await self.base_send({"type": "websocket.send", "text": text})

    async def report(self, error: GatewayError, *, client_event_id: str | None = None, param: str | None = None):
        await self.base_send({"type": "websocket.send", "text": error_event(error, client_event_id=client_event_id,
                                                                             param=param)})

    async def end(self, *, code: int, reason: str) -> None:
        await self.close(code=code, reason=reason)


class RealtimeSessionConsumer(RealtimeConsumer):
    session_endpoint = True
