"""Frames on their way to one client connection: sent in order by one task, bounded in bytes.

A client that stops reading must not grow the server's memory without bound. What an ASGI server's
``send()`` does with a frame differs (read in their sources):

- uvicorn (``--ws websockets``, ``websockets-sansio`` and ``wsproto``) and granian wait in ``send()``
  while the socket's write buffer is full (asyncio flow control above its high-water mark; granian
  awaits tokio-tungstenite's flush). Frames then wait here, where they are counted.
- daphne returns from ``send()`` at once: autobahn appends the frame to the Twisted transport's
  buffer, which grows without limit (daphne issue #170). The bytes waiting there are read from the
  transport (``server_backlog``) and counted too.

Undelivered bytes are those queued here plus those in the server's transport buffer. Past
REALTIME_CLIENT_BUFFER_BYTES ``push`` raises ClientTooSlow; the session then ends with its
``client_too_slow`` error queued after everything already accepted, and a close (4430). A close the
client never reads is given up on after CLOSE_GRACE_SECONDS (``on_abandon``).
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from realtime.fifo import Fifo

logger = logging.getLogger(__name__)

# How long frames and the close may take to reach a client that has stopped reading before the
# connection is abandoned (its memory is bounded meanwhile: it cannot queue more).
CLOSE_GRACE_SECONDS = 5.0


class ClientTooSlow(Exception):
    """The client's undelivered data reached the limit: the frame was not queued."""


def server_backlog(send) -> Callable[[], int] | None:
    """A function returning the bytes the ASGI server accepted from ``send()`` but has not yet written
    to the socket, for servers whose ``send()`` never waits (daphne); None elsewhere.

    daphne passes ``functools.partial(Server.handle_reply, protocol)`` as ``send``; the protocol's
    Twisted transport (a FileDescriptor, perhaps under a TLS wrapper) holds the unwritten bytes in
    ``dataBuffer[offset:]`` plus ``_tempDataLen``. Twisted has no public accessor for this; the live
    test of this limit (tests/test_client_backpressure_live.py) fails if a Twisted upgrade moves it.
    """
    if not isinstance(send, functools.partial) or not send.args:
        return None
    transport = getattr(send.args[0], "transport", None)
    for _depth in range(3):  # TLS: TLSMemoryBIOProtocol -> the TCP transport
        if transport is None:
            return None
        if hasattr(transport, "dataBuffer") and hasattr(transport, "_tempDataLen"):
            def backlog(transport=transport) -> int:
                return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

            return backlog
        transport = getattr(transport, "transport", None)
    return None


class ClientOutbox:
    """``accept`` once, then ``push`` text frames and ``close`` the connection; one task sends them."""

    __slots__ = ("_send", "_limit", "_backlog", "_frames", "_queued_bytes", "_task", "_closing", "_on_abandon",
                 "abandoned")

    def __init__(self, send, *, limit_bytes: int, on_abandon: Callable[[], None]):
        self._send = send
        self._limit = limit_bytes
        self._backlog = server_backlog(send)
        self._frames: Fifo[dict] = Fifo()
        self._queued_bytes = 0
        self._task: asyncio.Task | None = None
        self._closing = False
        self._on_abandon = on_abandon
        self.abandoned = False

    async def accept(self, subprotocol: str | None, *, name: str) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    def undelivered_bytes(self) -> int:
        return self._queued_bytes + (self._backlog() if self._backlog is not None else 0)

    def push(self, text: str, *, bounded: bool = True) -> None:
        """Queue a text frame. ``bounded`` frames raise ClientTooSlow past the limit (the gateway's own
        error events are not bounded: they are few and small, and say why the connection ends)."""
        if self._closing:
            return
        if bounded and self.undelivered_bytes() + len(text) > self._limit:
            raise ClientTooSlow
        self._frames.put({"type": "websocket.send", "text": text})
        self._queued_bytes += len(text)

    def close(self, *, code: int, reason: str) -> None:
        """Send the close after every frame queued so far; nothing is queued after it."""
        if self._closing:
            return
        self._closing = True
        self._frames.put({"type": "websocket.close", "code": code, "reason": reason})
        asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, self._give_up)

    async def _run(self) -> None:
        get = self._frames.get
        while True:
            frame = await get()
            is_close = frame["type"] == "websocket.close"
            if not is_close:
                self._queued_bytes -= len(frame["text"])
            try:
                await self._send(frame)
            except Exception as exc:  # the connection went away under us: nothing left to send to
                logger.debug("client connection gone while sending: %r", exc)
                is_close = True
            if is_close:
                self._closing = True
                self._frames.clear()
                self._queued_bytes = 0
                return
            frame = None  # an idle connection must not keep its last frame alive

    def _give_up(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        logger.info("client did not take its last %d bytes and the close within %.0f s; connection abandoned",
                    self.undelivered_bytes(), CLOSE_GRACE_SECONDS)
        self.abandoned = True
        task.cancel()
        self._frames.clear()
        self._queued_bytes = 0
        self._on_abandon()

    async def stop(self) -> None:
        """The connection is gone: drop what is queued and end the sending task."""
        self._closing = True
        self._frames.clear()
        self._queued_bytes = 0
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
