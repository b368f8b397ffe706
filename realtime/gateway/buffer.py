"""Resume buffers and session ownership.

While a client is away, its upstream's events wait here, in the memory of the process that holds the
upstream connection (never in the channel layer, which is at-most-once with a 60 s expiry). The buffer
is bounded: overflowing it ends the session rather than growing without limit.

Ownership says which process holds the session now using a client's session key (scoped to its
project and environment). With REDIS_URL it lives in Redis (a leased record refreshed while the
session lives) so any process can tell where a resumable session is; without Redis only this process
exists, so the in-process registry is the truth.
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

OWNER_TTL_SECONDS = liveness.OWNER_TTL_SECONDS  # a record is stale once its process stops beating (liveness.py)


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
        assert self.events is not None  # callers check len() first
        return self.events.popleft()

    def __len__(self) -> int:
        return len(self.events) if self.events is not None else 0


@dataclass(frozen=True)
class SessionOwner:
    process: str  # which process holds the upstream connection
    session_id: str  # the gateway's own id of the session now using the client's key


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_key(scoped_key: str) -> str:
    return f"{settings.REDIS_PREFIX}:rt:owner:{scoped_key}"


async def session_owner_claim(*, scoped_key: str, session_id: str) -> None:
    """Record this process and session as the current user of a client's session key (a plain connect
    takes the key over: the previous session, wherever it runs, is no longer resumable)."""
    client = redis_client()
    if client is not None:
        value = json.dumps({"process": process_id(), "session_id": session_id})
        await client.set(_owner_key(scoped_key), value, px=int(OWNER_TTL_SECONDS * 1000))
        liveness.owner_held(_owner_key(scoped_key), value)


async def session_owner_lookup(*, scoped_key: str) -> SessionOwner | None:
    client = redis_client()
    if client is None:
        return None
    raw = await client.get(_owner_key(scoped_key))
    if raw is None:
        return None
    data = json.loads(raw)
    if not await liveness.owner_alive(data["process"]):
        return None  # its process stopped beating: a stale record, never something to wait for
    return SessionOwner(process=data["process"], session_id=data["session_id"])


_RELEASE = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['session_id'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


async def session_owner_release(*, scoped_key: str, session_id: str) -> None:
    """Delete the record if it still names this session (compare and delete, atomically)."""
    liveness.owner_dropped(_owner_key(scoped_key))
    client = redis_client()
    if client is not None:
        await client.eval(_RELEASE, 1, _owner_key(scoped_key), session_id)
