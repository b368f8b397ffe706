"""Both legs of a session relay without task hops (realtime/lib/frames.py): the upstream leg hands each
message to the session from its socket's read callback, in order and whole, and each leg writes a
frame at once only when its awaitable send would not have waited. Against real servers on loopback."""
from __future__ import annotations

import asyncio
import socket

import pytest
import uvicorn
import websockets
from websockets.exceptions import ConnectionClosed

from realtime.lib import frames, outbound
from realtime.lib.frames import ServerWebSocketProtocol

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class _Relayed:
    """What an upstream connection handed over, and whether any of it came from a task."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.from_a_task = False
        self.closed = asyncio.Event()

    def message(self, message: str | bytes) -> None:
        self.from_a_task |= asyncio.current_task() is not None
        self.messages.append(message)


async def _upstream(handler):
    server = await websockets.serve(handler, "127.0.0.1", 0, compression=None, max_size=None)
    port = server.sockets[0].getsockname()[1]
    connection = await outbound.websocket_connect(f"ws://127.0.0.1:{port}/", trusted=True, max_size=None)
    return server, connection


async def test_upstream_messages_reach_the_session_in_order_and_whole_from_the_read_callback():
    first_queued, go = asyncio.Event(), asyncio.Event()

    async def speak(ws) -> None:
        await ws.send("first")
        await (await ws.ping())  # the pong comes after "first" was read: it waits in the client's queue
        first_queued.set()
        await go.wait()
        await ws.send("whole")
        await ws.send(["frag", "ment"])  # one message in two frames
        await ws.send(b"\x00\x01")
        await ws.close(4000, "bye")

    server, connection = await _upstream(speak)
    async with server:
        await first_queued.wait()
        relayed = _Relayed()
        connection.relay_to(relayed.message, on_closed=relayed.closed.set)
        assert relayed.messages == ["first"]  # what was already received is handed over at once, here
        relayed.from_a_task = False  # (by this task: the rest must come from the socket's callback)
        go.set()
        async with asyncio.timeout(10):
            await relayed.closed.wait()
        assert relayed.messages == ["first", "whole", "fragment", b"\x00\x01"]
        assert not relayed.from_a_task
        assert connection.protocol.close_rcvd.code == 4000  # what the session reports as the close


@pytest.mark.parametrize("sends, close_code", [
    ([b"\xff\xfe"], 1007),  # a text frame that is not UTF-8
    ([["a", "b", "c"]], 1009),  # more fragments than allowed (2 here)
], ids=["bad-utf8", "too-many-fragments"])
async def test_an_upstream_breaking_the_protocol_is_closed_and_nothing_of_it_is_relayed(
        monkeypatch, sends, close_code):
    monkeypatch.setattr(frames, "MAX_FRAGMENTS", 2)
    received: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def speak(ws) -> None:
        for message in sends:
            await ws.send(message, text=True) if isinstance(message, bytes) else await ws.send(message)
        await ws.send("after")
        await ws.wait_closed()
        received.set_result(ws.protocol.close_rcvd.code)

    server, connection = await _upstream(speak)
    async with server:
        relayed = _Relayed()
        connection.relay_to(relayed.message, on_closed=relayed.closed.set)
        async with asyncio.timeout(10):
            await relayed.closed.wait()
            assert await received == close_code
        assert relayed.messages == []


async def test_send_now_sends_only_what_send_would_not_wait_for():
    """A peer that stops reading: send_now writes until websockets' send() would wait for the buffer
    to drain, then declines; once the connection is closed it declines too, and send() raises."""
    stop_reading = asyncio.Event()

    async def stall(ws) -> None:
        await stop_reading.wait()
        await ws.wait_closed()

    server, connection = await _upstream(stall)
    async with server:
        connection.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        stop_reading.set()
        high_water = connection.transport.get_write_buffer_limits()[1]
        message = "x" * 65536
        sent = 0
        while connection.send_now(message):
            sent += 1
            assert sent < 10_000
        assert connection.paused  # send() would wait here
        assert connection.transport.get_write_buffer_size() > high_water
        assert sent > 0
        connection.transport.abort()
        async with asyncio.timeout(10):
            await connection.wait_closed()
        assert not connection.send_now("late")
        with pytest.raises(ConnectionClosed):
            await connection.send("late")


async def test_the_server_sends_now_only_on_an_accepted_open_connection():
    answers: list[bool] = []

    async def application(scope, receive, send) -> None:
        server = send.__self__
        await receive()  # websocket.connect
        answers.append(server.send_text_now("before accepting"))
        await send({"type": "websocket.accept"})
        answers.append(server.send_text_now("now"))
        await send({"type": "websocket.close", "code": 1000})
        answers.append(server.send_text_now("after closing"))

    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(application, lifespan="off", ws=ServerWebSocketProtocol,
                                           ws_per_message_deflate=False, log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[listening]), name="test-uvicorn")
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as client:
            heard = [message async for message in client]
        assert heard == ["now"]
        assert answers == [False, True, False]
    finally:
        server.should_exit = True
        await serving
