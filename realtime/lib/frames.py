"""The two WebSocket legs of a session at the frame level: our subclasses of uvicorn's server protocol
(the client leg) and of websockets' asyncio client (the upstream leg).

Relaying without task hops. A relayed event should cost about what it costs the bare relay (issue 14).
Both legs therefore offer a synchronous path besides their awaitable API:

- ``ServerWebSocketProtocol.send_text_now`` writes a text frame to the client at once when uvicorn's
  ``send()`` would not wait (realtime.gateway.outbox);
- ``UpstreamClientConnection.send_now`` writes a text frame to the upstream at once when websockets'
  ``send()`` would not wait;
- ``UpstreamClientConnection.relay_to`` hands each upstream message to a callback as its frames are
  parsed, instead of queueing it for a task awaiting ``recv()``: an upstream event reaches the client
  within the upstream socket's read callback (realtime.gateway.session).

Received frames are let go of once delivered. websockets' sans-I/O parser (``Protocol.parse``, 17.4)
keeps the last frame it parsed in a local variable until the next frame arrives. On a quiet connection
that is the last message's payload, held for as long as the peer says nothing (up to the next keepalive
ping, 20 s, or for good if the peer never pings): 6.5 KB per leg for a session whose last message was
100 ms of audio. Each leg hands a data frame's payload on and then empties the frame the parser still
points at. Only data frames are emptied: control frames (close, ping, pong) are read by the protocol
itself after parsing.
"""
from __future__ import annotations

from collections.abc import Callable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.messages import MAX_FRAGMENTS
from websockets.exceptions import InvalidState
from websockets.frames import DATA_OPCODES, CloseCode, Frame, Opcode
from websockets.protocol import Event, State

from project.ticks import tick_at_or_after


def frame_release(frame: Frame) -> None:
    """Drop the frame's reference to its payload (whoever took the payload keeps it)."""
    frame.data = b""


class ServerWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol (``--ws realtime.lib.frames:ServerWebSocketProtocol``),
    letting go of each client frame once it is queued for the application, with a synchronous send."""

    def handle_text(self, event: Frame) -> None:
        super().handle_text(event)
        frame_release(event)

    def handle_bytes(self, event: Frame) -> None:
        super().handle_bytes(event)
        frame_release(event)

    def handle_cont(self, event: Frame) -> None:
        super().handle_cont(event)
        frame_release(event)

    def schedule_ping(self) -> None:
        """uvicorn's keepalive ping (``--ws-ping-interval``), on the process's grid of whole seconds
        (project/ticks.py): the connections due within the same second are pinged in one wake-up."""
        assert self.ping_interval is not None
        due = self.loop.time() + max(0.0, self.ping_interval - self.last_ping_rtt)
        self.ping_timer = self.loop.call_at(tick_at_or_after(due, period=self.ping_interval), self.send_keepalive_ping)

    def send_text_now(self, text: str) -> bool:
        """What ``send({"type": "websocket.send", "text": text})`` does, when it would not wait: the
        connection accepted, not closing, the socket's buffer under its high-water mark. False (nothing
        sent) otherwise; the caller then uses ``send()``, which waits or raises as the ASGI spec says."""
        if (not self.handshake_complete or self.close_sent or self.disconnected or self.initial_response is not None
                or not self.writable.is_set()):
            return False
        try:
            self.conn.send_text(text.encode())
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True


MessageHandler = Callable[[str | bytes], None]


class UpstreamClientConnection(ClientConnection):
    """websockets' asyncio client connection, with a synchronous send and, once ``relay_to`` is called,
    messages handed to a callback as they arrive instead of to ``recv()``."""

    _on_message: MessageHandler | None = None
    _on_closed: Callable[[], None] | None = None
    _fragments: list[bytes | bytearray | memoryview] | None = None  # a fragmented message's payloads so far
    _fragment_opcode = Opcode.TEXT
    _failed = False  # the upstream broke the protocol: nothing more of it is relayed

    def send_now(self, text: str) -> bool:
        """What ``await send(text)`` does, when it would not wait: the connection open, no fragmented
        send under way, writing not paused. False (nothing sent) otherwise; the caller then awaits
        ``send()``, which waits for the buffer to drain or raises ConnectionClosed."""
        if self.protocol.state is not State.OPEN or self.send_in_progress is not None or self.paused:
            return False
        self.protocol.send_text(text.encode())
        try:
            self.send_data()
        except Exception as exc:  # as send(): a failed write ends the connection (the close is reported)
            self.set_connection_exc(exc)
            self.transport.abort()
        return True

    def relay_to(self, on_message: MessageHandler, *, on_closed: Callable[[], None]) -> None:
        """From now on, hand each message (text as str, binary as bytes) to ``on_message`` as soon as
        its last frame is parsed, in order, and call ``on_closed`` once the connection is closed; never
        call ``recv()`` after this. Messages already received are handed over first, here.
        ``on_message`` runs inside the socket's read callback: it must not raise, nor block."""
        assert not self.recv_messages.get_in_progress, "relay_to() while recv() is waiting"
        self._on_message, self._on_closed = on_message, on_closed
        queued = self.recv_messages.frames.queue
        while queued:
            self._relay_frame(queued.popleft())
        self.recv_messages.maybe_resume()
        if self.protocol.state is State.CLOSED:  # lost before relaying began: connection_lost ran already
            self.loop.call_soon(on_closed)

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame) and event.opcode in DATA_OPCODES:
            if self._on_message is not None:
                self._relay_frame(event)
                frame_release(event)
                return
            # Frame() rather than dataclasses.replace(): this runs for every upstream message (0.24 µs
            # against 1.3 µs).
            delivered = Frame(event.opcode, event.data, event.fin, event.rsv1, event.rsv2, event.rsv3)
            frame_release(event)
            event = delivered
        super().process_event(event)

    def _relay_frame(self, frame: Frame) -> None:
        if self._failed:  # closing: what the upstream sends meanwhile is dropped, not collected
            return
        fragments = self._fragments
        if fragments is None:
            if frame.fin:
                self._relay_message(frame.opcode, frame.data)
            else:  # the payloads are kept, not the frames: the parser's frame is emptied after this
                self._fragment_opcode, self._fragments = frame.opcode, [frame.data]
            return
        if len(fragments) >= MAX_FRAGMENTS:  # as recv(): many tiny frames are not an unbounded list
            self._fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
            return
        fragments.append(frame.data)
        if frame.fin:
            self._fragments = None
            self._relay_message(self._fragment_opcode, b"".join(fragments))

    def _relay_message(self, opcode: Opcode, data: bytes | bytearray | memoryview) -> None:
        # Not the protocol's state: frames parsed from one read are processed after all of them, so a
        # close frame read with the messages before it has moved the state on already.
        if self._on_message is None or self._failed:
            return
        if opcode is Opcode.TEXT:
            try:
                message: str | bytes = str(data, "utf-8")
            except UnicodeDecodeError as exc:  # as recv(): the upstream broke the protocol
                self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        else:
            message = bytes(data)
        self._on_message(message)

    def _fail(self, code: CloseCode, reason: str) -> None:
        self._failed = True
        self.protocol.fail(code, reason)
        self.send_data()
        self.transport.close()  # after the close frame: connection_lost then tells on_closed

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        on_closed, self._on_message, self._on_closed = self._on_closed, None, None
        if on_closed is not None:
            on_closed()
