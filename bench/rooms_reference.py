"""The smallest rooms server, the reference for bench/dialects.py's rooms fan-out: python-socketio's
ASGI app served like the gateway (bench/dialects.py: uvicorn), every client in one room, a ``message`` broadcast to the
room. No authentication, database, metering or limits.

Run: ``python -m uvicorn bench.rooms_reference:application --port N`` (or under daphne), from the repository root.
"""
from __future__ import annotations

import socketio

# Spawned by bench/dialects.py, not a benchmark itself: bench/run_all.py skips it.
BENCH_HELPER = True

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", async_handlers=False, logger=False,
                           engineio_logger=False)
application = socketio.ASGIApp(sio, socketio_path="socket.io")


@sio.event
async def connect(sid, environ, auth):
    await sio.enter_room(sid, "room")


@sio.event
async def message(sid, data):
    await sio.emit("message", data, room="room")
