"""The keepalive of outbound WebSockets (realtime/lib/keepalive.py): one timer per event loop pings every
upstream each interval, and closes one whose pong is late with 1011, as websockets' own keepalive did."""
from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import weakref

import pytest
import websockets
from websockets.exceptions import ConnectionClosedError
from websockets.protocol import State

from realtime.lib import keepalive, outbound

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

INTERVAL = 0.2


@pytest.fixture(autouse=True)
def short_interval(monkeypatch):
    monkeypatch.setattr(keepalive, "PING_INTERVAL_SECONDS", INTERVAL)


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Completes the WebSocket handshake, then reads and never writes: a peer that stopped answering."""
    request = await reader.readuntil(b"\r\n\r\n")
    key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    while await reader.read(65536):
        pass
    writer.close()


async def _echo(connection) -> None:
    async for message in connection:
        await connection.send(message)


async def test_an_upstream_that_stops_answering_is_closed_with_1011_after_a_ping_goes_unanswered():
    server = await asyncio.start_server(_silent, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        connection = await outbound.websocket_connect(f"ws://127.0.0.1:{port}/", trusted=True)
        connection.close_timeout = 0.5  # the silent peer will not answer the close either
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ConnectionClosedError) as closed:
            async with asyncio.timeout(10):
                await connection.recv()
        assert (closed.value.sent.code, closed.value.sent.reason) == (1011, "keepalive ping timeout")
        assert loop.time() - started >= 2 * INTERVAL  # pinged after one interval, given up after the next


async def test_an_answering_upstream_stays_open_across_intervals_and_its_latency_is_measured():
    async with websockets.serve(_echo, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        connection = await outbound.websocket_connect(f"ws://127.0.0.1:{port}/", trusted=True)
        try:
            await asyncio.sleep(INTERVAL * 4)  # the subject is time: several rounds of pings
            assert connection.state is State.OPEN
            assert connection.latency > 0  # a pong to the keepalive's ping came back
            await connection.send("still there")
            assert await asyncio.wait_for(connection.recv(), 5) == "still there"
        finally:
            await connection.close()


async def test_a_closed_upstream_is_not_kept_alive_by_the_keepalive_queue():
    async with websockets.serve(_echo, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        connection = await outbound.websocket_connect(f"ws://127.0.0.1:{port}/", trusted=True)
        await connection.close()
        gone = weakref.ref(connection)
        del connection
        gc.collect()
        assert gone() is None
