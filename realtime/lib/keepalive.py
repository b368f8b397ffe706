"""One keepalive per event loop for the outbound WebSockets (realtime.lib.outbound).

websockets' own keepalive is a task per connection that sleeps out the interval, pings, then waits for
the pong under a timeout: for every upstream, a task, its coroutine and a sleeping timer for the
session's whole life, and two task wake-ups per ping (issue 14: one clock per process). Here the
connections wait in one queue in the order they are due (everyone's interval is the same, so
appending keeps it sorted) behind a single timer of the event loop. When a connection is due, it is
closed with 1011 "keepalive ping timeout" if its previous ping is still unanswered, as websockets does;
otherwise it is pinged with websockets' public ``ping()`` and queued again. The detection time is
websockets' too: a silent peer is closed two intervals after the last pong at the latest.

The timer fires on the process's grid of whole seconds (project/ticks.py), at most a second after a
connection is due: every upstream due in the same second is pinged in one wake-up, together with the
client legs' pings (realtime/lib/frames.py), rather than each in a wake-up of its own.

The queue holds weak references: a connection that closed and was dropped is not kept alive until its
turn comes.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import typing
import weakref

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from project.ticks import tick_at_or_after

logger = logging.getLogger(__name__)

# Between two pings of a connection, and the time its pong may take.
PING_INTERVAL_SECONDS = 20.0
CLOSE_CODE = 1011
CLOSE_REASON = "keepalive ping timeout"


class _Keepalive:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        # (due at, the connection, the future of its last ping's pong or None), oldest first
        self._queue: collections.deque[tuple[float, weakref.ref[ClientConnection], asyncio.Future | None]] = \
            collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # the grid point the timer fires at
        self._tasks: set[asyncio.Task] = set()

    def add(self, connection: ClientConnection, pong: asyncio.Future | None = None) -> None:
        self._queue.append((self._loop.time() + PING_INTERVAL_SECONDS, weakref.ref(connection), pong))
        if self._timer is None:
            self._arm()

    def _arm(self) -> None:
        self._timer_at = tick_at_or_after(self._queue[0][0], period=PING_INTERVAL_SECONDS)
        self._timer = self._loop.call_at(self._timer_at, self._due)

    def _due(self) -> None:
        self._timer = None
        now = max(self._loop.time(), self._timer_at)  # (the loop's clock may read a hair before the point)
        due = []
        while self._queue and self._queue[0][0] <= now:
            _at, ref, pong = self._queue.popleft()
            connection = ref()
            if connection is not None and connection.state is State.OPEN:
                due.append((connection, pong))
        if due:
            self._start(self._ping(due), name="websocket-keepalive")
        if self._queue and self._timer is None:
            self._arm()

    async def _ping(self, due: list[tuple[ClientConnection, asyncio.Future | None]]) -> None:
        for connection, pong in due:
            if pong is not None and not pong.done():
                self._start(connection.close(CLOSE_CODE, CLOSE_REASON), name="websocket-keepalive-close")
                continue
            transport = connection.transport
            if transport.get_write_buffer_size() >= transport.get_write_buffer_limits()[1]:
                # ping() would wait for the buffer to drain, holding up every other connection's
                # ping; websockets' own keepalive would wait there too. Its turn comes again.
                self.add(connection)
                continue
            try:
                answer = await connection.ping()  # the future websockets resolves with the pong
            except ConnectionClosed:
                continue
            self.add(connection, typing.cast(asyncio.Future, answer))

    def _start(self, coroutine, *, name: str) -> None:
        task = self._loop.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("websocket keepalive failed", exc_info=task.exception())


_keepalives: dict[asyncio.AbstractEventLoop, _Keepalive] = {}


def keepalive_add(connection: ClientConnection) -> None:
    """Ping ``connection`` every PING_INTERVAL_SECONDS from now on, and close it when a pong is late."""
    loop = asyncio.get_running_loop()
    keepalive = _keepalives.get(loop)
    if keepalive is None:
        for stale in [other for other in _keepalives if other.is_closed()]:
            del _keepalives[stale]
        keepalive = _keepalives[loop] = _Keepalive(loop)
    keepalive.add(connection)
