"""The rooms dialect (seed 003): python-socketio's ASGI server, mounted at ``/socket.io/`` in
project.asgi.

Handshake ``auth: {apiKey}`` or ``auth: {token}`` (the short-lived JWT the realtime dialect accepts,
so a browser needs no API key); a missing or refused credential is a ``connect_error`` whose message
says why and whose ``data.code`` is the stable code. A connection joins the room of its key's project
and environment; a ``message`` event (a string) is broadcast to every client of that room, the sender
included. Too large a message or too many per second answer with an ``error`` event ``{code, message}``
and are not broadcast. With REDIS_URL, python-socketio's Redis manager carries room broadcasts between
processes. Each broadcast message is metered (``messages``) for its key.

Every other rule is the session lifecycle's (realtime.gateway.lifecycle), as for the other dialects:
the per-key concurrent cap (``too_many_sessions`` at connect), the session record, the idle timeout
(no message sent) and the duration limit, the budget, and revocation (an ``error`` event
``key_revoked``, then a disconnect, on the notice or within REALTIME_KEY_RECHECK_SECONDS). A limit that
ends a connection is told first as an ``error`` event with its code.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import socketio
from django.conf import settings

from realtime.dialects import rooms_bus
from realtime.gateway import availability, drain, metrics
from realtime.gateway.auth import AuthFailed, ConnectionAuth
from realtime.gateway.lifecycle import SessionLifecycle, SessionRefused, session_admit
from realtime.gateway.limits import KEY_REVOKED, GatewayError, TokenBucket
from realtime.gateway.metering import SessionMeter
from realtime.sessions.timeline import timeline_note

logger = logging.getLogger(__name__)


@dataclass
class RoomConnection:
    auth: ConnectionAuth
    room: str
    bucket: TokenBucket
    meter: SessionMeter
    lifecycle: SessionLifecycle
    close_reason: str = "client_closed"
    ending: bool = field(default=False)


def room_name(*, project_id: int, environment_id: int) -> str:
    return f"project.{project_id}.env.{environment_id}"


def _client_manager():
    if settings.REDIS_URL:
        from realtime.dialects.rooms_bus import RoomsRedisManager

        return RoomsRedisManager(settings.REDIS_URL, channel=f"{settings.REDIS_PREFIX}:socketio")
    return None


def _cors_origins():
    origins = list(settings.REALTIME_ALLOWED_ORIGINS)
    return "*" if "*" in origins else origins


sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=_client_manager(),
    cors_allowed_origins=_cors_origins(),
    # Handled in arrival order per client, so one client's messages are broadcast in the order sent.
    async_handlers=False,
    # Above the message limit, so an oversized message is answered with an error event rather than
    # the transport dropping the connection.
    max_http_buffer_size=max(1_000_000, settings.ROOMS_MAX_MESSAGE_BYTES * 2 + 1024),
    logger=False,
    engineio_logger=False,
)

_connections: dict[str, RoomConnection] = {}
_background: set[asyncio.Task] = set()  # revocation closes and final flushes (held until done)


def _spawn(coro, name: str) -> None:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _error(code: str, message: str) -> dict:
    return {"code": code, "message": message}


def _refuse(error: GatewayError) -> socketio.exceptions.ConnectionRefusedError:
    return socketio.exceptions.ConnectionRefusedError(error.message, {"code": error.code})


@sio.event
async def connect(sid, environ, auth):
    refusal = availability.admission_check()  # an outage or a drain: refused at once, with its code
    if refusal is not None:
        metrics.error_sent(refusal.code)
        raise socketio.exceptions.ConnectionRefusedError(refusal.message, {"code": refusal.code})
    api_key = auth.get("apiKey") if isinstance(auth, dict) else None
    token = auth.get("token") if isinstance(auth, dict) else None
    if not (isinstance(api_key, str) and api_key) and not (isinstance(token, str) and token):
        raise socketio.exceptions.ConnectionRefusedError(
            "A credential is required: connect with auth: {token} (a short-lived token) or auth: {apiKey}.",
            {"code": "missing_api_key"})
    try:
        if isinstance(api_key, str) and api_key:
            key = await session_admit(api_key=api_key)
        else:
            key = await session_admit(token=token)
    except AuthFailed as exc:
        raise _refuse(exc.error) from None
    # One id for the session's record, usage and timeline: one session on the Sessions page.
    lifecycle = SessionLifecycle(auth=key, dialect="rooms", session_id=f"rooms:{sid}")
    try:
        await lifecycle.start()
    except SessionRefused as exc:
        raise _refuse(exc.error) from None
    room = room_name(project_id=key.project_id, environment_id=key.environment_id)
    meter = SessionMeter(key=key, session_id=lifecycle.session_id, dialect="rooms", count_session_time=False)
    meter.start()
    _connections[sid] = RoomConnection(
        auth=key, room=room, meter=meter, lifecycle=lifecycle,
        bucket=TokenBucket(rate=settings.ROOMS_MESSAGES_PER_SECOND, burst=settings.ROOMS_MESSAGE_BURST),
    )
    lifecycle.on_revoked = lambda: _spawn(_end(sid, KEY_REVOKED.code, KEY_REVOKED), f"rooms-revoked:{sid}")
    await sio.enter_room(sid, room)
    metrics.session_opened("rooms")
    lifecycle.watch(warn=lambda error: _warn(sid, error), close=lambda reason, error: _end(sid, reason, error))


async def _warn(sid: str, error: GatewayError) -> None:
    await sio.emit("error", _error(error.code, error.message), to=sid)


async def _end(sid: str, reason: str, error: GatewayError | None) -> None:
    """A lifecycle rule ends the connection: say why, then disconnect."""
    connection = _connections.get(sid)
    if connection is None or connection.ending:
        return
    connection.ending = True
    connection.close_reason = reason
    if error is not None:
        await sio.emit("error", _error(error.code, error.message), to=sid)
    await sio.disconnect(sid)


@sio.event
async def message(sid, data=None, *extra):  # an emit with no payload, or several, is refused below
    connection = _connections.get(sid)
    if connection is None:
        return
    if not isinstance(data, str) or extra:
        await sio.emit("error", _error("invalid_message", "A message is a string."), to=sid)
        return
    size = len(data.encode("utf-8"))
    if size > settings.ROOMS_MAX_MESSAGE_BYTES:
        await sio.emit("error", _error(
            "message_too_large",
            f"The message is {size} bytes; the limit is {settings.ROOMS_MAX_MESSAGE_BYTES}. It was not sent."), to=sid)
        return
    connection.lifecycle.touch()
    if not connection.bucket.allow():
        await sio.emit("error", _error(
            "rate_limited", "Too many messages per second on this connection; this one was not sent."), to=sid)
        return
    if not availability.redis_dependency.up and settings.REDIS_URL:
        await sio.emit("error", _error(availability.SERVICE_UNAVAILABLE.code,
                                       "The room cannot be reached right now; the message was not sent."), to=sid)
        return
    rooms_bus.broadcast_begin()
    await sio.emit("message", data, room=connection.room)
    # Billed once the bus took it; a message lost on the way to the other processes is not.
    if rooms_bus.broadcast_published():
        connection.meter.add("messages", 1)
    else:
        await sio.emit("error", _error("message_not_delivered", "The message reached only part of the room "
                                       "(the bus between gateway processes is unavailable); it was not billed."),
                       to=sid)
    timeline_note(project_id=connection.auth.project_id, session_id=connection.lifecycle.session_id, direction="client",
                  event={"type": "message", "data": data})


async def _release(connection: RoomConnection) -> None:
    await connection.meter.close()
    await connection.lifecycle.release(reason=connection.close_reason)


@sio.event
async def disconnect(sid, reason=None):
    connection = _connections.pop(sid, None)
    if connection is not None:
        metrics.session_closed("rooms", connection.close_reason if connection.ending else str(reason or "client_closed"))
        # Its own task, held here: the final usage flush and the record must not be cut short with the
        # connection's task.
        _spawn(_release(connection), f"rooms-release:{sid}")


async def _drain() -> None:
    """SIGTERM: tell every connection why before the server closes it; a Socket.IO client may simply
    reconnect (another process serves the same room)."""
    error = {**_error(availability.SERVER_SHUTTING_DOWN.code,
                      "This gateway process is shutting down; reconnect (the room is served by other processes)."),
             "resumable": True}
    for sid in list(_connections):
        connection = _connections.get(sid)
        if connection is not None:
            connection.close_reason = availability.SERVER_SHUTTING_DOWN.code
        await sio.emit("error", error, to=sid)
        await sio.disconnect(sid)
    await asyncio.gather(*list(_background), return_exceptions=True)  # their usage and records, flushed before exit


drain.drain_hook("rooms", _drain)
