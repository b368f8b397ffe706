"""Periodic work shares wake-ups (project/ticks.py): the keepalive pings of both legs, the heartbeat
and the flushes wake the process on one grid of whole seconds, so an idle process wakes once a second
for all of them rather than once per connection and job."""
from __future__ import annotations

import asyncio
import socket

import pytest
import uvicorn
import websockets

from project import ticks
from realtime.lib import keepalive, outbound
from realtime.lib.frames import ServerWebSocketProtocol

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


def _on_grid(when: float) -> bool:
    return abs(when / ticks.TICK_SECONDS - round(when / ticks.TICK_SECONDS)) < 1e-6


async def test_a_periodic_job_comes_onto_the_grid_never_later_and_stays_there():
    now = asyncio.get_running_loop().time()
    off_grid = now + 0.3 - (now % 1.0)  # some time after now, 0.3 past a grid point
    first = ticks.tick_at_or_before(off_grid + 5.0, period=5.0)  # a 5 s job, from off the grid
    assert _on_grid(first) and off_grid + 4.0 < first <= off_grid + 5.0  # sooner, never later
    assert ticks.tick_at_or_before(first + 5.0, period=5.0) == first + 5.0  # then every period, on the grid
    # Clocks read a hair apart: a point just past the asked time is taken, not one a whole tick earlier.
    assert ticks.tick_at_or_before(first + 5.0 - 0.001, period=5.0) == first + 5.0


async def test_a_period_shorter_than_a_tick_is_left_off_the_grid():
    loop = asyncio.get_running_loop()
    assert ticks.tick_at_or_after(loop.time() + 0.2, period=0.2) % ticks.TICK_SECONDS != 0
    asked = loop.time() + 0.25
    assert ticks.tick_at_or_before(asked, period=0.25) == asked


async def test_both_legs_of_a_session_are_pinged_on_the_grid():
    """The client leg (uvicorn with the production ``--ws`` protocol, ``--ws-ping-interval 20``) and the
    upstream leg (the process keepalive): their next ping is due on a grid point, at most a tick late."""
    timers: list[asyncio.TimerHandle] = []

    async def application(scope, receive, send) -> None:
        await receive()
        await send({"type": "websocket.accept"})  # starts uvicorn's keepalive
        timers.append(send.__self__.ping_timer)
        await receive()  # until the client leaves

    async def echo(ws) -> None:
        async for message in ws:
            await ws.send(message)

    listening = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(application, lifespan="off", ws=ServerWebSocketProtocol, ws_ping_interval=20,
                                           ws_per_message_deflate=False, log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[listening]), name="test-uvicorn")
    try:
        loop = asyncio.get_running_loop()
        async with websockets.serve(echo, "127.0.0.1", 0) as upstream_server:
            upstream_port = upstream_server.sockets[0].getsockname()[1]
            await asyncio.sleep(0.013)  # opened off the grid
            opened = loop.time()
            upstream = await outbound.websocket_connect(f"ws://127.0.0.1:{upstream_port}/", trusted=True)
            async with websockets.connect(f"ws://127.0.0.1:{listening.getsockname()[1]}/") as client:
                await client.send("hello")
                upstream_timer = keepalive._keepalives[loop]._timer
                assert upstream_timer is not None and timers
                for timer in (upstream_timer, timers[0]):
                    assert _on_grid(timer.when())
                    assert opened + 20 <= timer.when() <= loop.time() + 20 + ticks.TICK_SECONDS
            await upstream.close()
    finally:
        server.should_exit = True
        await serving
