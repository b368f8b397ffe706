"""Realtime-dialect clients for the fleet fault tests: each streams events through the gateway to an
echo upstream and counts the echoes, so a test can tell a live session from a lost one."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import websockets

OPEN_TIMEOUT = 15.0


async def open_session(ws_url: str, key: str, *, session_key: str | None = None, resume: bool = False):
    """A realtime connection, after its first server event (session.created, session.resumed or the
    refusal's error). ``resume``: resume the session named ``session_key`` (docs/realtime.md)."""
    url = (f"{ws_url}/api/v1/realtime/session?key={session_key}&protocol=realtime{'&resume=1' if resume else ''}"
           if session_key else f"{ws_url}/v1/realtime")
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"},
                                  open_timeout=OPEN_TIMEOUT, compression=None, ping_interval=None)
    first = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT))
    return ws, first


async def refusal(ws_url: str, key: str, **options) -> tuple[dict, int | None, float]:
    """Try to open a session expected to be refused: (error object, close code, seconds taken)."""
    started = time.monotonic()
    ws, first = await open_session(ws_url, key, **options)
    assert first["type"] == "error", first
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            async for _ in ws:
                pass
    except websockets.ConnectionClosed:
        pass
    return first["error"], ws.close_code, time.monotonic() - started


@dataclass
class Streamer:
    """One session that sends a numbered event every ``interval`` s and counts the echoes."""

    ws: object
    interval: float = 0.1
    sent: int = 0
    echoed: int = 0
    events: list = field(default_factory=list)
    close_code: int | None = None
    errors: list = field(default_factory=list)
    last_echo: float = 0.0
    _tasks: list = field(default_factory=list)

    def start(self) -> Streamer:
        self._tasks = [asyncio.create_task(self._send(), name="streamer-send"),
                       asyncio.create_task(self._read(), name="streamer-read")]
        return self

    @property
    def open(self) -> bool:
        return self.close_code is None and not self._tasks[1].done()

    async def _send(self) -> None:
        try:
            while True:
                self.sent += 1
                await self.ws.send(json.dumps({"type": "conversation.item.create", "event_id": f"n{self.sent}",
                                               "item": {"type": "message", "role": "user",
                                                        "content": [{"type": "input_text", "text": "x" * 200}]}}))
                await asyncio.sleep(self.interval)
        except websockets.ConnectionClosed:
            pass

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                event = json.loads(raw)
                if event.get("type") == "conversation.item.create":
                    self.echoed += 1
                    self.last_echo = time.monotonic()
                elif event.get("type") == "error":
                    self.errors.append(event["error"])
        except websockets.ConnectionClosed:
            pass
        self.close_code = self.ws.close_code

    async def echoes_after(self, count: int, timeout: float = 10.0) -> None:
        """Wait until more than ``count`` echoes arrived (the session still relays)."""
        async with asyncio.timeout(timeout):
            while self.echoed <= count:
                if not self.open:
                    raise AssertionError(f"session closed with {self.close_code}: {self.errors}")
                await asyncio.sleep(0.05)

    async def closed(self, timeout: float = 30.0) -> int | None:
        async with asyncio.timeout(timeout):
            await self._tasks[1]
        return self.close_code

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ws.close()


async def streamers(ws_url: str, key: str, count: int, **options) -> list[Streamer]:
    result = []
    for _ in range(count):
        ws, first = await open_session(ws_url, key, **options)
        assert first["type"] == "session.created", first
        result.append(Streamer(ws).start())
    return result
