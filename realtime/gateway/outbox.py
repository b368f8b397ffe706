"""Frames on their way to one client connection: sent in order by one task, bounded in bytes.

The relay's hot path skips the task: ``offer`` writes a frame at once when nothing is queued ahead of
it and the server can take it without waiting (``ServerWebSocketProtocol.send_text_now``, the
production ``--ws`` protocol); only the overflow, and every frame on other servers, waits for the task.

A client that stops reading must not grow the server's memory without bound. What an ASGI server's
``send()`` does with a frame differs (read in their sources):

- uvicorn (``--ws websockets``, ``websockets-sansio`` and ``wsproto``) and granian wait in ``send()``
  while the socket's write buffer is full (asyncio flow control above its high-water mark; granian
  awaits tokio-tungstenite's flush). Frames then wait here, where they are counted.
- daphne returns from ``send()`` at once: autobahn appends the frame to the Twisted transport's
  buffer, which grows without limit (daphne issue #170). The bytes waiting there are read from the
  transport (DaphneConnection) and counted too.

Undelivered bytes are those queued here plus those in the server's transport buffer. Past
REALTIME_CLIENT_BUFFER_BYTES ``push`` raises ClientTooSlow; the session then ends with its
``client_too_slow`` error queued after everything already accepted, and a close (4430).

A client that has stopped reading gets CLOSE_GRACE_SECONDS to take its last frames and answer the
close. On daphne that is autobahn's close-handshake timeout for this connection (its default, under a
second, would cut off a client that resumes reading before it reaches the close); where the frames
cannot even be handed to the server (uvicorn, granian), the connection is then abandoned (``on_abandon``).
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from realtime.gateway.fifo import Fifo

logger = logging.getLogger(__name__)

# Bounded memory meanwhile: nothing more is queued for a connection that is closing.
CLOSE_GRACE_SECONDS = 5.0


class ClientTooSlow(Exception):
    """The client's undelivered data reached the limit: the frame was not queued."""


class DaphneConnection:
    """What daphne's ``send()`` does not tell: the bytes accepted but not yet written to the socket.

    daphne passes ``functools.partial(Server.handle_reply, protocol)`` as ``send``; the protocol is an
    autobahn WebSocketServerProtocol whose Twisted transport (a FileDescriptor, perhaps under a TLS
    wrapper) holds the unwritten bytes in ``dataBuffer[offset:]`` plus ``_tempDataLen``. Twisted has no
    public accessor for them; tests/test_client_backpressure_live.py fails if an upgrade moves them.
    """

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol, transport):
        self.protocol = protocol
        self.transport = transport

    @classmethod
    def of(cls, send) -> DaphneConnection | None:
        if not isinstance(send, functools.partial) or not send.args:
            return None
        protocol = send.args[0]
        transport = getattr(protocol, "transport", None)
        for _depth in range(3):  # TLS: TLSMemoryBIOProtocol -> the TCP transport
            if transport is None or not hasattr(protocol, "closeHandshakeTimeout"):
                return None
            if hasattr(transport, "dataBuffer") and hasattr(transport, "_tempDataLen"):
                return cls(protocol, transport)
            transport = getattr(transport, "transport", None)
        return None

    def backlog(self) -> int:
        transport = self.transport
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    def allow_close_handshake(self, seconds: float) -> None:
        self.protocol.closeHandshakeTimeout = seconds


def server_write_now(send) -> Callable[[str], bool] | None:
    """The server's synchronous text send, if it has one: ``ServerWebSocketProtocol.send_text_now``
    (realtime/lib/frames.py, the production ``--ws`` protocol), which writes a frame at once when
    ``send()`` would not wait and says False otherwise. None for other servers: every frame then goes
    through the outbox's task."""
    write_now = getattr(getattr(send, "__self__", None), "send_text_now", None)
    return write_now if callable(write_now) else None


class ClientOutbox:
    """``accept`` once, then ``push`` text frames and ``close`` the connection; one task sends them."""

    __slots__ = ("_send", "_limit", "_daphne", "_write_now", "_sending", "_frames", "_queued_bytes", "_task", "_name",
                 "_closing", "_on_abandon", "abandoned")

    def __init__(self, send, *, limit_bytes: int, on_abandon: Callable[[], None]):
        self._send = send
        self._limit = limit_bytes
        self._daphne = DaphneConnection.of(send)
        self._write_now = server_write_now(send)
        self._sending = False  # a frame is being handed to the server (ordering: see offer)
        self._frames: Fifo[dict] = Fifo()
        self._queued_bytes = 0  # characters, i.e. bytes for the ASCII JSON of the protocol
        self._task: asyncio.Task | None = None  # started by the first frame that has to wait (_enqueue)
        self._name = ""
        self._closing = False
        self._on_abandon = on_abandon
        self.abandoned = False

    async def accept(self, subprotocol: str | None, *, name: str) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        self._name = name

    def _enqueue(self, frame: dict) -> None:
        """Queue a frame for the sending task, started on first use: a connection whose frames all went
        straight to the server (offer) never holds one."""
        self._frames.put(frame)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name or "client-outbox")

    def undelivered_bytes(self) -> int:
        return self._queued_bytes + (self._daphne.backlog() if self._daphne is not None else 0)

    def push(self, text: str, *, bounded: bool = True) -> None:
        """Queue a text frame. ``bounded`` frames raise ClientTooSlow past the limit (the gateway's own
        error events are not bounded: they are few and small, and say why the connection ends)."""
        if self._closing:
            return
        if bounded and self.undelivered_bytes() + len(text) > self._limit:
            raise ClientTooSlow
        self._enqueue({"type": "websocket.send", "text": text})
        self._queued_bytes += len(text)

    def offer(self, text: str, *, bounded: bool = True) -> None:
        """``push``, but a frame with nothing ahead of it is written at once when the server can take
        it without waiting: the relay's hot path wakes no task."""
        write_now = self._write_now
        if write_now is None or self._closing or self._frames or self._sending:
            self.push(text, bounded=bounded)
            return
        if bounded and len(text) > self._limit:  # nothing queued here, and uvicorn's buffer is not full
            raise ClientTooSlow
        try:
            if write_now(text):
                return
        except Exception as exc:  # the connection went away under us: nothing left to send to
            logger.debug("client connection gone while sending: %r", exc)
            self._closing = True
            return
        self.push(text, bounded=bounded)  # the server's buffer is full, or it is closing: send() decides

    def call_in_order(self, action: Callable[[], None]) -> None:
        """Run ``action`` once every frame queued so far was handed to the server (a ping that must
        follow them on the wire)."""
        if not self._closing:
            self._enqueue({"type": "call", "action": action})

    def close(self, *, code: int, reason: str) -> None:
        """Send the close after every frame queued so far; nothing is queued after it."""
        if self._closing:
            return
        self._closing = True
        if self._daphne is not None:
            self._daphne.allow_close_handshake(CLOSE_GRACE_SECONDS)
        self._enqueue({"type": "websocket.close", "code": code, "reason": reason})
        asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, self._give_up)

    async def _run(self) -> None:
        get = self._frames.get
        while True:
            frame = await get()
            if frame["type"] == "call":
                try:
                    frame["action"]()
                except Exception:
                    logger.exception("outbox action failed")
                del frame
                continue
            is_close = frame["type"] == "websocket.close"
            if not is_close:
                self._queued_bytes -= len(frame["text"])
            self._sending = True
            try:
                await self._send(frame)
            except Exception as exc:  # the connection went away under us: nothing left to send to
                logger.debug("client connection gone while sending: %r", exc)
                is_close = True
            finally:
                self._sending = False
            if is_close:
                self._closing = True
                self._frames.clear()
                self._queued_bytes = 0
                return
            del frame  # an idle connection must not keep its last frame alive

    def _give_up(self) -> None:
        """The frames before the close could not even be handed to the server in the grace period."""
        task = self._task
        if task is None or task.done():
            return
        logger.info("client took neither its last %d bytes nor the close within %.0f s; connection abandoned",
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


class PongProbe:
    """WebSocket pings the application can await: a pong answering a ping proves that every frame
    written before the ping reached the client (at-least-once delivery, seed 001). ASGI has no ping,
    so this reaches into the server, like DaphneConnection: autobahn's ``sendPing``/``onPong`` under
    daphne; under uvicorn, the sans-I/O connection and ``handle_pong`` of ``--ws websockets-sansio``
    (the production setting, README.md) or the protocol's ``ping()`` of ``--ws websockets``. ``of``
    returns None elsewhere; callers then treat a frame handed to the server as delivered.
    tests/test_lifecycle_unit.py and tests/test_tasks_delivery_live.py fail if an upgrade moves them."""

    __slots__ = ("_ping", "_waiting", "_counter")

    def __init__(self, ping: Callable[[bytes], None]):
        self._ping = ping
        self._waiting: dict[bytes, Callable[[], None]] = {}
        self._counter = 0

    @classmethod
    def of(cls, send) -> PongProbe | None:
        if isinstance(send, functools.partial) and send.args:  # daphne
            protocol = send.args[0]
            if hasattr(protocol, "sendPing") and hasattr(protocol, "onPong"):
                probe = cls(protocol.sendPing)
                original = protocol.onPong

                def on_pong(payload, _original=original, _probe=probe):
                    _probe.pong(payload)
                    _original(payload)

                protocol.onPong = on_pong  # an instance attribute: this connection only
                return probe
        server: Any = getattr(send, "__self__", None)
        conn = getattr(server, "conn", None)
        if conn is not None and hasattr(conn, "send_ping") and hasattr(server, "handle_pong"):  # uvicorn sans-I/O
            def sansio_ping(payload: bytes, _protocol=server) -> None:
                if _protocol.transport.is_closing():
                    return
                _protocol.conn.send_ping(payload)
                _protocol.transport.write(b"".join(_protocol.conn.data_to_send()))

            probe = cls(sansio_ping)
            original_pong = server.handle_pong

            def handle_pong(event, _original=original_pong, _probe=probe) -> None:
                _probe.pong(bytes(event.data))
                _original(event)

            server.handle_pong = handle_pong  # an instance attribute: this connection only
            return probe
        ping = getattr(server, "ping", None)
        if ping is not None and asyncio.iscoroutinefunction(ping):  # uvicorn's websockets protocol
            probe = cls(lambda payload: None)

            def send_ping(payload: bytes, _ping=ping, _probe=probe) -> None:
                async def wait() -> None:
                    waiter = await _ping(payload)
                    await waiter
                    _probe.pong(payload)

                task = asyncio.get_running_loop().create_task(wait(), name="pong-probe")
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

            probe._ping = send_ping
            return probe
        return None

    def ping(self, on_pong: Callable[[], None]) -> None:
        """Send a ping now; ``on_pong()`` once it is answered (never, if the connection is dead)."""
        self._counter += 1
        payload = b"sb-%d" % self._counter
        self._waiting[payload] = on_pong
        self._ping(payload)

    def pong(self, payload: bytes) -> None:
        callback = self._waiting.pop(bytes(payload) if payload else b"", None)
        if callback is not None:
            callback()
