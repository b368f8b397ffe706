"""The server floor for ``bench/relay.py --scale``: the smallest ASGI relay, served by uvicorn with the
production options of README.md, its upstream leg on the ``websockets`` client configured as the gateway's
(``realtime/lib/outbound.py``: no compression, keepalive pings every 20 s). No Django, no parsing, no auth,
no metering, no limits. The gateway's figures over this floor are what Switchboard's own code costs; the
floor's over the minimal relay (``bench/minimal_relay.py``, ``websockets`` on both legs) are what uvicorn's
ASGI WebSocket layer costs.

Run: ``BENCH_FLOOR_UPSTREAM=ws://127.0.0.1:9000/ python -m uvicorn bench.asgi_relay_floor:application ...``
(from the repository root; uvicorn passes no arguments to an application, hence the variable).
"""
from __future__ import annotations

import asyncio
import os

import websockets
from websockets.asyncio.client import connect

# Spawned by bench/relay.py, not a benchmark itself: bench/run_all.py skips it.
BENCH_HELPER = True

MAX_FRAME = 16 * 1024 * 1024


async def _to_client(upstream, send) -> None:
    try:
        async for message in upstream:
            await send({"type": "websocket.send", "text": message})
    except websockets.ConnectionClosed:
        pass


async def application(scope, receive, send) -> None:
    if scope["type"] != "websocket" or (await receive())["type"] != "websocket.connect":
        return
    del scope
    async with connect(os.environ["BENCH_FLOOR_UPSTREAM"], compression=None, max_size=MAX_FRAME,
                       ping_interval=20, ping_timeout=20) as upstream:
        await send({"type": "websocket.accept"})
        pump = asyncio.create_task(_to_client(upstream, send), name="floor-upstream-to-client")
        try:
            while (message := await receive())["type"] == "websocket.receive":
                text = message.get("text")
                message = None  # an idle session keeps no event alive, as the gateway
                await upstream.send(text)
                text = None
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
