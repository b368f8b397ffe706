"""A client that stops reading does not grow the server's memory: once its undelivered data passes
REALTIME_CLIENT_BUFFER_BYTES the session ends with ``client_too_slow`` (close 4430), after everything
accepted before that point. On daphne (whose send() never waits) and on uvicorn (whose send() waits
for the socket), the production server."""
from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from tests.test_gateway_support import make_custom_deployment, session_url

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

LIMIT = 1024 * 1024
DELTA = "A" * (64 * 1024)  # one 64 KiB audio delta
FLOOD_DELTAS = 3200  # 200 MiB: far beyond the limit, and beyond what the test allows the server to grow
MAX_GROWTH_KIB = 16 * 1024  # measured: about 4.5 MiB for a 1 MiB limit

UVICORN = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", "{port}",
           "--loop", "uvloop", "--http", "httptools", "--ws", "realtime.lib.frames:ServerWebSocketProtocol", "--ws-per-message-deflate", "false",
           "--lifespan", "off", "--no-access-log"]  # the production command (README.md)


class FloodUpstream:
    """A realtime upstream (websockets' sans-I/O server protocol on an asyncio server) that answers
    ``response.create`` with FLOOD_DELTAS audio deltas as fast as the gateway takes them, and sets
    ``closed`` the moment the gateway's close frame arrives (the gateway has given up on its client)."""

    def __init__(self):
        self.sent = 0
        self.closed = asyncio.Event()
        self._server = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"

    async def __aenter__(self):
        self._server = await asyncio.get_running_loop().create_server(lambda: _FloodConnection(self), "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        await self._server.wait_closed()


class _FloodConnection(asyncio.Protocol):
    def __init__(self, upstream: FloodUpstream):
        self.upstream = upstream
        self.ws = ServerProtocol(max_size=None)
        self.flooding = self.paused = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Request):
                self.ws.send_response(self.ws.accept(event))
                self.ws.send_text(json.dumps({"type": "session.created", "session": {"type": "realtime"}}).encode())
            elif event.opcode == Opcode.TEXT and json.loads(event.data).get("type") == "response.create":
                self.flooding = True
            elif event.opcode == Opcode.CLOSE:
                self.upstream.closed.set()
                self.flooding = False
        self._write()

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self._write()

    def _write(self):
        while self.flooding and not self.paused and self.upstream.sent < FLOOD_DELTAS:
            n = self.upstream.sent
            self.ws.send_text(b'{"type":"response.output_audio.delta","event_id":"d%d","delta":"%s"}' % (n, DELTA.encode()))
            self.upstream.sent += 1
            self.transport.write(b"".join(self.ws.data_to_send()))
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            else:
                self.transport.close()

    def connection_lost(self, exc):
        self.upstream.closed.set()


class StalledClient:
    """A real WebSocket client on a raw socket (websockets' sans-I/O protocol) that reads only when told."""

    def __init__(self, url: str, headers: dict):
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.request = self.protocol.connect()
        for name, value in headers.items():
            self.request.headers[name] = value
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # keep the kernel's share small
        self.sock.setblocking(False)
        self.events: list = []

    async def _flush(self):
        await asyncio.get_running_loop().sock_sendall(self.sock, b"".join(self.protocol.data_to_send()))

    async def _read_some(self) -> bool:
        """Read what has arrived; False at the end (EOF, or the server's close frame, answered)."""
        data = await asyncio.get_running_loop().sock_recv(self.sock, 1 << 20)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        self.events += self.protocol.events_received()
        if self.protocol.close_rcvd is not None:
            try:
                await self._flush()  # the close reply; the server may drop the TCP connection meanwhile
            except ConnectionError:
                pass
            return False
        await self._flush()
        return bool(data)

    async def open(self, port: int):
        await asyncio.get_running_loop().sock_connect(self.sock, ("127.0.0.1", port))
        self.protocol.send_request(self.request)
        await self._flush()
        async with asyncio.timeout(15):
            while not any(isinstance(event, Response) for event in self.events):
                await self._read_some()

    async def send_text(self, text: str):
        self.protocol.send_text(text.encode())
        await self._flush()

    async def read_to_the_end(self, timeout: float = 30):
        async with asyncio.timeout(timeout):
            while await self._read_some():
                pass

    def texts(self) -> list[dict]:
        return [json.loads(frame.data) for frame in self.events
                if not isinstance(frame, Response) and frame.opcode == Opcode.TEXT]

    def close(self):
        self.sock.close()


def _kib(pid: int, field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))


@pytest.mark.parametrize("server_kind", ["daphne", "uvicorn"])
async def test_a_client_that_stops_reading_is_cut_off_with_its_code_and_memory_stays_bounded(
        server_factory, project, dev_key, server_kind):
    from realtime.models import SessionRecord

    _, raw = dev_key
    async with FloodUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_CLIENT_BUFFER_BYTES": str(LIMIT)},
                                argv=UVICORN if server_kind == "uvicorn" else None)
        url = session_url(server, f"slow-{server_kind}")
        client = StalledClient(url, {"Authorization": f"Bearer {raw}"})
        try:
            await client.open(server.port)
            baseline = _kib(server.process.pid, "VmRSS")
            await client.send_text(json.dumps({"type": "response.create"}))
            # The client reads nothing until the gateway has given up on it (and so closes its upstream).
            await asyncio.wait_for(upstream.closed.wait(), 60)
            peak = _kib(server.process.pid, "VmHWM")
            await client.read_to_the_end()
        finally:
            client.close()

    texts = client.texts()
    deltas = [event["event_id"] for event in texts if event["type"] == "response.output_audio.delta"]
    errors = [event["error"]["code"] for event in texts if event["type"] == "error"]
    assert upstream.sent < FLOOD_DELTAS  # the flood was stopped, not buffered
    assert peak - baseline < MAX_GROWTH_KIB, f"server grew by {peak - baseline} KiB"
    # Everything accepted before the limit arrives, in order, then the error, then the close.
    assert len(deltas) * len(DELTA) >= LIMIT - len(DELTA)
    assert deltas == [f"d{n}" for n in range(len(deltas))]
    assert errors == ["client_too_slow"]
    assert texts[-1]["type"] == "error"
    assert client.protocol.close_rcvd is not None and client.protocol.close_rcvd.code == 4430
    # The sessions page shows why it ended (written by the server process once its close completes).
    client_key = url.split("key=")[1].split("&")[0]  # the client's id; the record keeps it beside the gateway's own

    def ended():
        return list(SessionRecord.objects.filter(client_key=client_key, ended_at__isnull=False)
                    .values_list("close_reason", flat=True))

    async with asyncio.timeout(15):
        while not (reasons := await sync_to_async(ended)()):
            await asyncio.sleep(0.1)  # written by another process: no event reaches this one
    assert reasons == ["client_too_slow"]
