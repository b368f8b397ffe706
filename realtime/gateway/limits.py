"""Limits of a gateway session: stable error codes and close codes, the per-connection token bucket,
and concurrent sessions per key (in Redis when REDIS_URL is set, so the limit holds across processes).
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings


@dataclass(frozen=True)
class GatewayError:
    """A refusal or failure the client must be told about: a stable ``code``, a human ``message``,
    and the WebSocket close code to use when it ends the connection (None: the connection stays)."""

    code: str
    message: str
    close_code: int | None = None
    error_type: str = "invalid_request_error"


# Close codes (4000-4999 are the application's). 44xx: the client's side; 45xx: upstream/server side.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_BUDGET_EXCEEDED = 4402  # as HTTP 402 Payment Required
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_IDLE = 4408
CLOSE_REPLACED = 4409
CLOSE_EXPIRED = 4410
CLOSE_SESSION_TOO_LONG = 4420
CLOSE_TOO_MANY_SESSIONS = 4429
CLOSE_SLOW_PEER = 4430
CLOSE_INTERNAL = 4500
CLOSE_UPSTREAM_UNAVAILABLE = 4502
CLOSE_UPSTREAM_CLOSED = 4503
CLOSE_SESSION_ELSEWHERE = 4421


def frame_too_large(size: int, *, limit: int) -> GatewayError:
    """``limit``: the one the check applied (each dialect has its own), so the client is told the truth."""
    return GatewayError(
        "frame_too_large", f"The event is {size} bytes; the limit is {limit}. It was not relayed.",
    )


BINARY_NOT_SUPPORTED = GatewayError("binary_not_supported", "Send JSON text frames; binary frames are not accepted.")
INVALID_JSON = GatewayError("invalid_json", "The frame is not valid JSON; nothing was done with it.")
RATE_LIMITED = GatewayError(
    "rate_limited", "Too many events per second on this connection; this event was not relayed.",
)
IDLE_TIMEOUT = GatewayError("idle_timeout", "No client events within the idle timeout.", CLOSE_IDLE)
SESSION_TOO_LONG = GatewayError(
    "session_duration_exceeded", "The session reached its maximum duration.", CLOSE_SESSION_TOO_LONG
)
TOO_MANY_SESSIONS = GatewayError(
    "too_many_sessions", "This key already has its maximum number of concurrent sessions.", CLOSE_TOO_MANY_SESSIONS
)
KEY_REVOKED = GatewayError("key_revoked", "The API key of this session was revoked.", CLOSE_UNAUTHORIZED,
                           "authentication_error")
CLIENT_TOO_FAST = GatewayError(
    "client_too_fast", "The upstream is not keeping up with this client's events.", CLOSE_SLOW_PEER
)
CLIENT_TOO_SLOW = GatewayError(
    "client_too_slow", "The client is not reading events fast enough.", CLOSE_SLOW_PEER
)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. One per connection, no locking
    (a consumer handles its frames one at a time)."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, *, rate: float, burst: int):
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# --- Concurrent sessions per key ------------------------------------------------------------------

# A key's slots are kept per process: the set ``<prefix>:rt:slots:<key id>:<process id>`` holds the
# sessions a process runs on that key, and ``<prefix>:rt:slots:<key id>`` indexes the processes. Slots
# are not renewed one by one: a process's set counts while its heartbeat (realtime/gateway/liveness.py,
# one key renewed every second for the whole process) exists, so a crashed process's slots stop counting
# within liveness.LEASE_SECONDS and the next acquire on that key deletes them. An acquire costs one step
# per process of the fleet holding slots on the key, not per session. The caller's own set always counts
# for itself; another process that deleted it while this one's heartbeat was missing (an outage) sees it
# again after this one's next beat (liveness.beat). Heartbeat and per-process keys are named inside the
# script: fine on one Redis, not on a Redis Cluster.
LOCAL_SLOT_TTL = 60.0  # without Redis there is one process: its slots die with it
SLOT_KEY_TTL_SECONDS = 3600  # slot keys no live process renews (liveness.beat) are deleted after this

# KEYS[1] the key's process index; ARGV: per-process set prefix, heartbeat prefix, this process,
# this session, the limit, the TTL.
_ACQUIRE = """
local counted = 0
for _, process in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if process == ARGV[3] or redis.call('EXISTS', ARGV[2] .. process) == 1 then
    counted = counted + redis.call('SCARD', ARGV[1] .. process)
  else
    redis.call('DEL', ARGV[1] .. process)
    redis.call('SREM', KEYS[1], process)
  end
end
local own = ARGV[1] .. ARGV[3]
if redis.call('SISMEMBER', own, ARGV[4]) == 1 then
  return 1
end
if counted >= tonumber(ARGV[5]) then
  return 0
end
redis.call('SADD', own, ARGV[4])
redis.call('SADD', KEYS[1], ARGV[3])
redis.call('EXPIRE', own, ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""
_acquire_scripts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per Redis client: EVALSHA, not the script's text on every open

_local_slots: dict[str, dict[str, float]] = {}
REDIS_MAX_CONNECTIONS = 100
REDIS_POOL_WAIT_SECONDS = 5.0
_redis_clients: dict = {}


def redis_client():
    """One asyncio Redis client per event loop (None without REDIS_URL). A server process has one
    loop; keying by loop keeps a client from being used on a loop it was not made for."""
    if not settings.REDIS_URL:
        return None
    import asyncio

    import redis.asyncio

    from realtime.lib.redis_options import redis_options

    loop = asyncio.get_running_loop()
    client = _redis_clients.get(loop)
    if client is None:
        for stale in [other for other in _redis_clients if other.is_closed()]:
            del _redis_clients[stale]
        # A blocking pool: when hundreds of sessions end at once, a call waits briefly for a free
        # connection instead of failing with "Too many connections" (and leaving its slot held).
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL, decode_responses=True, max_connections=REDIS_MAX_CONNECTIONS,
            timeout=REDIS_POOL_WAIT_SECONDS, **redis_options())
        client = _redis_clients[loop] = redis.asyncio.Redis(connection_pool=pool)
    return client


def slot_index_key(key_id: str) -> str:
    return f"{settings.REDIS_PREFIX}:rt:slots:{key_id}"


def slot_set_key(key_id: str) -> str:
    """This process's set of the key's slots."""
    from realtime.gateway.buffer import process_id

    return f"{slot_index_key(key_id)}:{process_id()}"


async def session_slot_acquire(*, key_id: str, session_id: str, limit: int) -> bool:
    """Take one of the key's concurrent-session slots (or keep this session's). False when full."""
    client = redis_client()
    if client is None:
        now = time.time()
        slots = _local_slots.setdefault(key_id, {})
        for sid in [s for s, until in slots.items() if until < now]:
            del slots[sid]
        if session_id not in slots and len(slots) >= limit:
            return False
        slots[session_id] = now + LOCAL_SLOT_TTL
        return True
    from realtime.gateway import liveness
    from realtime.gateway.buffer import process_id

    script = _acquire_scripts.get(client)
    if script is None:
        script = _acquire_scripts[client] = client.register_script(_ACQUIRE)
    index = slot_index_key(key_id)
    result = await script(keys=[index], args=[f"{index}:", liveness.beat_key_prefix(), process_id(), session_id,
                                              limit, SLOT_KEY_TTL_SECONDS])
    if result:
        liveness.slot_held(index, session_id)
    return bool(result)


def session_slot_renew_local(*, key_id: str, session_id: str) -> None:
    """Without Redis: renew this process's own slot (with Redis, liveness.beat renews every slot the
    process holds in one pipeline each second)."""
    slots = _local_slots.get(key_id)
    if slots is not None and session_id in slots:
        slots[session_id] = time.time() + LOCAL_SLOT_TTL


async def session_slot_release(*, key_id: str, session_id: str) -> None:
    client = redis_client()
    if client is None:
        _local_slots.get(key_id, {}).pop(session_id, None)
        return
    from realtime.gateway import liveness

    liveness.slot_dropped(slot_index_key(key_id), session_id)
    await client.srem(slot_set_key(key_id), session_id)


class ClientGate:
    """Per-connection admission of client frames: size first, then the event rate. A refused frame
    is answered with an error and not relayed; the connection and everything accepted stay."""

    __slots__ = ("bucket", "max_bytes")

    def __init__(self, *, max_bytes: int | None = None):
        self.bucket = TokenBucket(rate=settings.REALTIME_EVENTS_PER_SECOND, burst=settings.REALTIME_EVENT_BURST)
        self.max_bytes = settings.REALTIME_MAX_FRAME_BYTES if max_bytes is None else max_bytes

    def check(self, text: str) -> GatewayError | None:
        length = len(text)
        # Characters never outnumber UTF-8 bytes; encode only when the answer could differ.
        if length > self.max_bytes or (length * 4 > self.max_bytes and len(text.encode()) > self.max_bytes):
            return frame_too_large(len(text.encode()), limit=self.max_bytes)
        if not self.bucket.allow():
            return RATE_LIMITED
        return None

    def parse(self, text: str | None) -> tuple[Any, GatewayError | None]:
        """Every WebSocket dialect's first step for a client frame: binary refused, then size and rate,
        then JSON. ``(value, None)``, or ``(None, error)`` for the dialect to answer in its own format."""
        if text is None:
            return None, BINARY_NOT_SUPPORTED
        refusal = self.check(text)
        if refusal is not None:
            return None, refusal
        try:
            return orjson.loads(text), None
        except orjson.JSONDecodeError:
            return None, INVALID_JSON
