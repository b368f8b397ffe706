"""Resume buffers and session ownership.

While a client is away, its upstream's events wait here, in the memory of the process that holds the
upstream connection (never in the channel layer, which is at-most-once with a 60 s expiry). The buffer
is bounded: overflowing it ends the session rather than growing without limit.

Ownership says which process holds which session and for which project. With REDIS_URL it lives in
Redis (a leased record refreshed while the session lives) so any process can tell whether a session
exists and where; without Redis only this process exists, so the in-process registry is the truth.
"""
from __future__ import annotations

import json
import os
import socket
from collections import deque
from dataclasses import dataclass

from django.conf import settings

from realtime.gateway import liveness
from realtime.gateway.limits import redis_client

OWNER_TTL_SECONDS = liveness.LEASE_SECONDS  # renewed every second by the owner's monitor (liveness.py)


class BufferOverflow(Exception):
    pass


class ResumeBuffer:
    """Events received from upstream while no client is attached, oldest first."""

    __slots__ = ("events", "max_events")

    def __init__(self, *, max_events: int):
        self.events: deque[str] | None = None  # made on first use: most sessions never need one
        self.max_events = max_events

    def append(self, text: str) -> None:
        if self.events is None:
            self.events = deque()
        if len(self.events) >= self.max_events:
            raise BufferOverflow(f"more than {self.max_events} events buffered")
        self.events.append(text)

    def popleft(self) -> str:
        return self.events.popleft()

    def __len__(self) -> int:
        return len(self.events) if self.events is not None else 0


@dataclass(frozen=True)
class SessionOwner:
    process: str  # which process holds the upstream connection
    project_id: int


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_key(session_id: str) -> str:
    return f"{settings.REDIS_PREFIX}:rt:owner:{session_id}"


async def session_owner_claim(*, session_id: str, project_id: int) -> bool:
    """Record this process as the session's owner. False if another live process already owns it."""
    client = redis_client()
    if client is None:
        return True
    value = json.dumps({"process": process_id(), "project_id": project_id})
    if await client.set(_owner_key(session_id), value, nx=True, px=int(OWNER_TTL_SECONDS * 1000)):
        liveness.owner_held(_owner_key(session_id), value)
        return True
    current = await session_owner_lookup(session_id=session_id)
    if current is not None and current.process == process_id():
        liveness.owner_held(_owner_key(session_id), value)
        return True
    return False


async def session_owner_refresh(*, session_id: str, project_id: int) -> None:
    client = redis_client()
    if client is not None:
        value = json.dumps({"process": process_id(), "project_id": project_id})
        await client.set(_owner_key(session_id), value, px=int(OWNER_TTL_SECONDS * 1000))


async def session_owner_lookup(*, session_id: str) -> SessionOwner | None:
    client = redis_client()
    if client is None:
        return None
    raw = await client.get(_owner_key(session_id))
    if raw is None:
        return None
    data = json.loads(raw)
    if not await liveness.owner_alive(data["process"]):
        return None  # its process stopped beating: a stale record, never something to wait for
    return SessionOwner(process=data["process"], project_id=int(data["project_id"]))


_RELEASE = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['process'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


async def session_owner_release(*, session_id: str) -> None:
    """Delete the ownership record if it is still this process's (compare and delete, atomically)."""
    liveness.owner_dropped(_owner_key(session_id))
    client = redis_client()
    if client is not None:
        await client.eval(_RELEASE, 1, _owner_key(session_id), process_id())
