"""The rooms dialect's bus between processes: python-socketio's Redis manager, telling the caller
whether a broadcast reached the other processes.

python-socketio delivers a broadcast to this process's clients, then publishes it for the others;
when the publish fails it logs and drops it. The rooms dialect bills a message only once the bus took
it (``broadcast_published``), and tells the sender when it did not: a message lost in an outage is
neither billed nor silently lost. A failed publish marks Redis down (one log line per outage,
realtime.gateway.availability) instead of two error lines per message.
"""
from __future__ import annotations

import contextvars

import socketio

from realtime.gateway import availability

_published: contextvars.ContextVar[bool] = contextvars.ContextVar("rooms_published", default=True)


class RoomsRedisManager(socketio.AsyncRedisManager):
    async def _publish(self, data):
        try:
            if not self.connected:
                self._redis_connect()
            result = await self.redis.publish(self.channel, self.json.dumps(data))
        except Exception as exc:
            self.connected = False  # reconnect on the next publish
            availability.failure_logged(self._get_logger(), "rooms: publish failed", exc)
            _published.set(False)
            return None
        _published.set(True)
        return result


def broadcast_begin() -> None:
    """Call before ``sio.emit``; ``broadcast_published`` then says whether the bus took it."""
    _published.set(True)


def broadcast_published() -> bool:
    return _published.get()
