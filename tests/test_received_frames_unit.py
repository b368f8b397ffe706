"""A quiet connection does not keep its last message (realtime/lib/frames.py): once a message has been
delivered, neither the client leg (uvicorn with the production ``--ws`` protocol) nor the upstream leg
(the outbound WebSocket client) holds its payload until the peer sends something else."""
from __future__ import annotations

import asyncio
import gc
import socket
import tracemalloc

import pytest
import uvicorn
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from realtime.lib import outbound
from realtime.lib.frames import ServerWebSocketProtocol

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

CONNECTIONS = 8
PAYLOAD = 256 * 1024


def _message(n: int) -> str:
    return f"{n:08d}" + "x" * (PAYLOAD - 8)


def _payloads_held() -> int:
    """Live allocations of half a payload (a fragment) or more, made since tracing started."""
    gc.collect()
    return sum(1 for trace in tracemalloc.take_snapshot().traces if trace.size >= PAYLOAD // 2)


@pytest.fixture
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


class _Client:
    """A WebSocket client that chooses its own framing (websockets' client ends a fragmented message
    with an empty frame, which would hide a held last fragment)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = ClientProtocol(parse_uri("ws://127.0.0.1/"), max_size=None)

    @classmethod
    async def connect(cls, port: int) -> _Client:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        client.protocol.send_request(client.protocol.connect())
        await client._flush()
        while not client.protocol.events_received():
            client.protocol.receive_data(await client.reader.read(65536))
        return client

    async def send(self, message: str, *, fragmented: bool) -> None:
        data = message.encode()
        if fragmented:  # two fragments of half a payload each
            self.protocol.send_text(data[:PAYLOAD // 2], fin=False)
            self.protocol.send_continuation(data[PAYLOAD // 2:], fin=True)
        else:
            self.protocol.send_text(data)
        await self._flush()

    async def recv(self) -> str:
        while True:
            for event in self.protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    return event.data.decode()
            self.protocol.receive_data(await self.reader.read(65536))

    async def _flush(self) -> None:
        self.writer.write(b"".join(self.protocol.data_to_send()))
        await self.writer.drain()


async def _receiving_application(scope, receive, send) -> None:
    """Accepts, then answers each message with its first 8 characters and its length."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while (answer := _answer(await receive())) is not None:  # keeps no message between receives
        await send({"type": "websocket.send", "text": answer})


def _answer(event: dict) -> str | None:
    if event["type"] != "websocket.receive":
        return None
    data = event.get("text") or event.get("bytes") or b""
    head = data[:8] if isinstance(data, str) else data[:8].decode()
    return f"{head} {len(data)}"


@pytest.mark.parametrize("fragmented", [False, True], ids=["whole", "fragmented"])
async def test_the_server_does_not_hold_a_quiet_clients_last_message(traced, fragmented):
    listening = socket.create_server(("127.0.0.1", 0))  # listening already: connects wait in its backlog
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_receiving_application, lifespan="off", ws=ServerWebSocketProtocol,
                                           ws_per_message_deflate=False, log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[listening]), name="test-uvicorn")
    try:
        clients = [await _Client.connect(port) for _ in range(CONNECTIONS)]
        for n, client in enumerate(clients):
            await client.send(_message(n), fragmented=fragmented)
            assert await client.recv() == f"{n:08d} {PAYLOAD}"  # delivered whole

        assert _payloads_held() == 0  # the stock protocol holds one per connection
        for client in clients:
            client.writer.close()
    finally:
        server.should_exit = True
        await serving


async def test_the_upstream_leg_does_not_hold_a_quiet_upstreams_last_message(traced):
    async def speak(connection) -> None:
        await connection.send(_message(int(await connection.recv())))
        await connection.wait_closed()

    async with websockets.serve(speak, "127.0.0.1", 0, compression=None, max_size=None) as upstream:
        port = upstream.sockets[0].getsockname()[1]
        connections = [await outbound.websocket_connect(f"ws://127.0.0.1:{port}/", trusted=True, max_size=None)
                       for _ in range(CONNECTIONS)]
        for n, connection in enumerate(connections):
            await connection.send(str(n))
            assert await connection.recv() == _message(n)  # delivered whole

        assert _payloads_held() == 0  # websockets' client holds one per connection
        for connection in connections:
            await connection.close()
