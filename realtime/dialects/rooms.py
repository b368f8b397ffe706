"""The rooms dialect (seed 003): python-socketio's ASGI server, mounted at ``/socket.io/`` in
project.asgi.

Handshake ``auth: {apiKey}``; a missing or refused key is a ``connect_error`` whose message says why and
whose ``data.code`` is the stable code. A connection joins the room of its key's project and
environment; a ``message`` event (a string) is broadcast to every client of that room, the sender
included. Too large a message or too many per second answer with an ``error`` event
``{code, message}`` and are not broadcast. A connection whose key is revoked gets an ``error`` event
``key_revoked`` and is disconnected within REALTIME_KEY_RECHECK_SECONDS. With REDIS_URL,
python-socketio's Redis manager carries room broadcasts between processes. Each broadcast message is
metered (``messages``) for its key.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import socketio
from django.conf import settings

from realtime.dialects import rooms_bus
from realtime.gateway import availability, drain, metrics
from realtime.gateway.auth import AuthFailed, ConnectionAuth, api_key_authenticate, api_key_is_active
from realtime.gateway.budgets import budget_watch
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
    budget_watch: asyncio.Task | None = None


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
_sweeper: asyncio.Task | None = None


async def _sweep_revoked_keys() -> None:
    """Disconnect connections whose key was revoked (or expired, or rotated out) since they connected:
    checked every REALTIME_KEY_RECHECK_SECONDS while this process has connections."""
    while _connections:
        await asyncio.sleep(settings.REALTIME_KEY_RECHECK_SECONDS)
        for pk in {connection.auth.pk for connection in _connections.values()}:
            try:
                active = await api_key_is_active(api_key_pk=pk)
            except Exception:
                logger.exception("rooms: key re-check failed")
                continue
            if active:
                continue
            for sid in [sid for sid, connection in _connections.items() if connection.auth.pk == pk]:
                await sio.emit("error", _error(KEY_REVOKED.code, KEY_REVOKED.message), to=sid)
                await sio.disconnect(sid)


def _sweeper_ensure() -> None:
    global _sweeper
    if _sweeper is None or _sweeper.done():
        _sweeper = asyncio.get_running_loop().create_task(_sweep_revoked_keys(), name="rooms-key-sweeper")


def _error(code: str, message: str) -> dict:
    return {"code": code, "message": message}


@sio.event
async def connect(sid, environ, auth):
    refusal = availability.admission_check()  # an outage or a drain: refused at once, with its code
    if refusal is not None:
        metrics.error_sent(refusal.code)
        raise socketio.exceptions.ConnectionRefusedError(refusal.message, {"code": refusal.code})
    api_key = auth.get("apiKey") if isinstance(auth, dict) else None
    if not isinstance(api_key, str) or not api_key:
        raise socketio.exceptions.ConnectionRefusedError(
            "An API key is required: connect with auth: {apiKey}.", {"code": "missing_api_key"})
    try:
        key = await api_key_authenticate(raw=api_key)
    except AuthFailed as exc:
        raise socketio.exceptions.ConnectionRefusedError(exc.error.message, {"code": exc.error.code}) from None
    room = room_name(project_id=key.project_id, environment_id=key.environment_id)
    meter = SessionMeter(key=key, session_id=f"rooms:{sid}", dialect="rooms", count_session_time=False)
    meter.start()
    connection = _connections[sid] = RoomConnection(
        auth=key, room=room, meter=meter,
        bucket=TokenBucket(rate=settings.ROOMS_MESSAGES_PER_SECOND, burst=settings.ROOMS_MESSAGE_BURST),
    )
    await sio.enter_room(sid, room)
    metrics.session_opened("rooms")
    _sweeper_ensure()
    connection.budget_watch = asyncio.get_running_loop().create_task(
        budget_watch(auth=key, warn=lambda error: _budget_warn(sid, error), close=lambda error: _budget_close(sid, error)),
        name=f"rooms-budget-watch:{sid}")


async def _budget_warn(sid: str, error: GatewayError) -> None:
    await sio.emit("error", _error(error.code, error.message), to=sid)


async def _budget_close(sid: str, error: GatewayError) -> None:
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
    timeline_note(project_id=connection.auth.project_id, session_id=connection.meter.session_id, direction="client",
                  event={"type": "message", "data": data})


_meters_closing: set[asyncio.Task] = set()


@sio.event
async def disconnect(sid, reason=None):
    connection = _connections.pop(sid, None)
    if connection is not None:
        metrics.session_closed("rooms", str(reason or "client_closed"))
        watch = connection.budget_watch
        if watch is not None and watch is not asyncio.current_task():  # not when the watch itself disconnects
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        # Its own task, held here: the final usage flush must not be cut short with the connection's task.
        task = asyncio.get_running_loop().create_task(connection.meter.close(), name=f"rooms-meter-close:{sid}")
        _meters_closing.add(task)
        task.add_done_callback(_meters_closing.discard)


async def _drain() -> None:
    """SIGTERM: tell every connection why before the server closes it; a Socket.IO client may simply
    reconnect (another process serves the same room)."""
    error = {**_error(availability.SERVER_SHUTTING_DOWN.code,
                      "This gateway process is shutting down; reconnect (the room is served by other processes)."),
             "resumable": True}
    for sid in list(_connections):
        await sio.emit("error", error, to=sid)
        await sio.disconnect(sid)
    await asyncio.gather(*list(_meters_closing), return_exceptions=True)  # their usage, flushed before exit


drain.drain_hook("rooms", _drain)
