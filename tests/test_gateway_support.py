"""Shared pieces of the gateway's live tests (no tests here).

ScriptedUpstream is a real WebSocket server speaking the realtime protocol on loopback, used as a
project's "custom URL" upstream agent: it records exactly what arrives and answers like a realtime
service, and a test can make it emit events or drop the connection.
"""
from __future__ import annotations

import asyncio
import base64
import json
import uuid
from dataclasses import dataclass, field

import websockets
from asgiref.sync import sync_to_async
from websockets.asyncio.server import ServerConnection, serve

from accounts.models import EnvironmentKind
from realtime.agents.services import agent_create, deployment_create

TIMEOUT = 15


@dataclass
class UpstreamConnection:
    ws: ServerConnection
    path: str
    headers: dict
    received: list[str] = field(default_factory=list)
    arrived: asyncio.Queue = field(default_factory=asyncio.Queue)

    async def next_received(self, timeout: float = TIMEOUT) -> dict:
        return json.loads(await asyncio.wait_for(self.arrived.get(), timeout))

    async def emit(self, event: dict) -> None:
        await self.ws.send(json.dumps(event))


class ScriptedUpstream:
    """A realtime server: session.created on connect, session.updated for session.update,
    conversation.item.added/done for items, a text+audio response with usage for response.create."""

    def __init__(self, *, audio_delta_bytes: int = 4800, usage=(11, 7)):
        self.connections: list[UpstreamConnection] = []
        self.connected: asyncio.Queue[UpstreamConnection] = asyncio.Queue()
        self.audio_delta_bytes = audio_delta_bytes
        self.usage = usage
        self._server = None
        self.port = None
        self.reading = asyncio.Event()  # cleared: the upstream stops reading (a stalled upstream)
        self.reading.set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/realtime?session={{session_id}}"

    async def __aenter__(self):
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.reading.set()
        self._server.close()
        await self._server.wait_closed()

    async def next_connection(self, timeout: float = TIMEOUT) -> UpstreamConnection:
        return await asyncio.wait_for(self.connected.get(), timeout)

    async def _handle(self, ws: ServerConnection):
        conn = UpstreamConnection(ws=ws, path=ws.request.path, headers=dict(ws.request.headers.raw_items()))
        self.connections.append(conn)
        self.connected.put_nowait(conn)
        session = {"id": "upstream_sess", "type": "realtime", "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}}}}
        try:
            await conn.emit({"type": "session.created", "event_id": "up_0", "session": session})
            while True:
                await self.reading.wait()
                message = await ws.recv()
                conn.received.append(message)
                conn.arrived.put_nowait(message)
                event = json.loads(message)
                kind = event.get("type")
                if kind == "session.update":
                    session = {**session, **event.get("session", {})}
                    await conn.emit({"type": "session.updated", "event_id": "up_su", "session": session})
                elif kind == "conversation.item.create":
                    item = {**event.get("item", {}), "id": f"item_{len(conn.received)}"}
                    await conn.emit({"type": "conversation.item.added", "item": item})
                    await conn.emit({"type": "conversation.item.done", "item": item})
                elif kind == "response.create":
                    audio = base64.b64encode(bytes(self.audio_delta_bytes)).decode()
                    await conn.emit({"type": "response.created", "response": {"id": "resp_1"}})
                    await conn.emit({"type": "response.output_text.delta", "delta": "Hello"})
                    await conn.emit({"type": "response.output_audio.delta", "delta": audio})
                    await conn.emit({"type": "response.done", "response": {
                        "id": "resp_1", "status": "completed",
                        "usage": {"input_tokens": self.usage[0], "output_tokens": self.usage[1]}}})
        except websockets.ConnectionClosed:
            pass


def _make_custom_deployment(project, url: str, *, kind=EnvironmentKind.DEVELOPMENT, default=True, **agent):
    environment = project.environments.get(kind=kind)
    agent = agent_create(project=project, data={
        "name": agent.pop("name", f"Scripted {kind}"), "provider": "custom", "url": url,
        "header_template": {"Authorization": "Bearer {credential}", "X-Session": "{session_id}"},
        "credential": "upstream-secret-123", **agent,
    })
    return deployment_create(project=project, environment=environment, agent=agent, name=f"{agent.name} dep",
                             is_default=default)


make_custom_deployment = sync_to_async(_make_custom_deployment)


def basic(raw: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


def bearer(raw: str) -> dict:
    return {"Authorization": f"Bearer {raw}"}


# Session ids are global: a per-run suffix keeps a rerun from meeting a previous run's leftovers in Redis.
RUN = uuid.uuid4().hex[:8]


def session_url(server, key: str = "s1", **query) -> str:
    key = f"{key}-{RUN}"
    extra = "".join(f"&{name}={value}" for name, value in query.items())
    return f"{server.ws_url}/api/v1/realtime/session?key={key}&protocol=realtime{extra}"


async def connect(url: str, headers: dict | None = None, **kwargs):
    return await websockets.connect(url, additional_headers=headers or {}, open_timeout=TIMEOUT,
                                    compression=None, **kwargs)


async def recv_json(ws, timeout: float = TIMEOUT) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, kind: str, timeout: float = TIMEOUT) -> tuple[dict, list[dict]]:
    """Events up to and including the first of type ``kind``: (that event, everything before it)."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if event.get("type") == kind:
                return event, seen
            seen.append(event)


async def closed(ws, timeout: float = TIMEOUT) -> int:
    """Read (and drop) whatever is left until the connection closes; its close code."""
    async with asyncio.timeout(timeout):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            pass
    return ws.close_code


async def expect_refusal(ws, timeout: float = TIMEOUT) -> tuple[dict, int]:
    """The gateway's error event then its close: (error object, close code). (daphne sends no close
    reason, so the error event carries the code.)"""
    event = await recv_json(ws, timeout)
    assert event["type"] == "error", event
    return event["error"], await closed(ws, timeout)


async def until(predicate, timeout: float = 30):
    """Wait for a condition on data another process writes (no event reaches this process)."""
    async with asyncio.timeout(timeout):
        while not (result := await sync_to_async(predicate)()):
            await asyncio.sleep(0.1)
    return result
