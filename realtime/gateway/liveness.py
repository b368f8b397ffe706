"""Process liveness: a dead process's sessions and per-key slots are released within seconds.

Each process runs one monitor task (started on its first request):

- every BEAT_SECONDS it writes its heartbeat ``<prefix>:fleet:proc:<process id>`` (expires after
  LEASE_SECONDS). Whatever the process holds in Redis is tied to that one key rather than leased one by
  one, so a beat costs the same with 5 sessions or 5,000: a per-key slot (realtime/gateway/limits.py)
  names its process and counts only while the heartbeat exists; an ownership record of a session key
  (buffer.py) names its process, and ``owner_alive`` makes a record of a process without a heartbeat
  stale at once. Ownership records and slot keys carry long TTLs only to clean up after dead
  processes; the beat renews the few that near theirs (OWNER_RENEW_SECONDS). The same round trip
  reads the deployments' generation (realtime.agents.deployment_cache);
- the beat's outcome marks Redis up or down, and it probes PostgreSQL (realtime.gateway.availability),
  so new sessions are refused at once during an outage.

When the beat finds its heartbeat gone (Redis was unreachable for longer than the lease, or restarted
empty), other processes may have removed this one's slots meanwhile: that beat writes every slot and
ownership record the process holds again, so live sessions keep them without a restart.
"""
from __future__ import annotations

import asyncio
import logging
import time

from django.conf import settings

from project.ticks import sleep_to_tick
from realtime.agents import deployment_cache
from realtime.gateway import availability

logger = logging.getLogger(__name__)

BEAT_SECONDS = 1.0
LEASE_SECONDS = 3.0  # a dead process's heartbeat lapses within this, and with it its slots and records
OWNER_TTL_SECONDS = 3600.0  # an ownership record outlives its dead process this long at most
OWNER_RENEW_SECONDS = OWNER_TTL_SECONDS / 2
SLOT_KEY_RENEW_SECONDS = 600.0

# What this process holds: ownership records (key -> [value, renewed at]); per-key slots (the key's
# process index -> {session id: None}, this process's set being "<index>:<process id>"), and when each
# key's slot keys last had their TTL renewed.
_owners: dict[str, list] = {}
_slots: dict[str, dict[str, None]] = {}
_slot_keys_renewed: dict[str, float] = {}
_state: dict[str, asyncio.Task | None] = {"task": None}


def owner_held(key: str, value: str) -> None:
    _owners[key] = [value, time.monotonic()]


def owner_dropped(key: str) -> None:
    _owners.pop(key, None)


def slot_held(index: str, session_id: str) -> None:
    _slots.setdefault(index, {})[session_id] = None
    _slot_keys_renewed.setdefault(index, time.monotonic())


def slot_dropped(index: str, session_id: str) -> None:
    sessions = _slots.get(index)
    if sessions is not None:
        sessions.pop(session_id, None)
        if not sessions:
            del _slots[index]
            _slot_keys_renewed.pop(index, None)


def beat_key_prefix() -> str:
    return f"{settings.REDIS_PREFIX}:fleet:proc:"


def _beat_key(process: str) -> str:
    return beat_key_prefix() + process


# Renew an ownership record only if it is absent (it lapsed in an outage) or still ours: a newer
# session may have taken the client's key over meanwhile.
_RENEW_OWNER = """
local value = redis.call('GET', KEYS[1])
if (not value) or value == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


async def beat(client) -> None:
    """One heartbeat (and whatever renewals are due), in one round trip."""
    from realtime.gateway.buffer import process_id
    from realtime.gateway.limits import SLOT_KEY_TTL_SECONDS

    heartbeat = _beat_key(process_id())
    pipe = client.pipeline(transaction=False)
    pipe.set(heartbeat, "1", px=int(LEASE_SECONDS * 1000), get=True)
    pipe.get(deployment_cache.generation_key())  # a deployment changed in any process: drop the cached ones
    async with asyncio.timeout(availability.PROBE_TIMEOUT_SECONDS):  # not wait_for: it can swallow a cancel (gh-86296)
        results = await pipe.execute()
    deployment_cache.deployment_cache_generation_seen(results[1])
    lapsed = results[0] is None  # first beat, or Redis lost or forgot this process meanwhile
    now = time.monotonic()
    pipe = client.pipeline(transaction=False)
    renewed_owners = [key for key, (_value, at) in _owners.items() if lapsed or now - at >= OWNER_RENEW_SECONDS]
    for key in renewed_owners:
        pipe.eval(_RENEW_OWNER, 1, key, _owners[key][0], int(OWNER_TTL_SECONDS * 1000))
    renewed_keys = [key for key, at in _slot_keys_renewed.items() if lapsed or now - at >= SLOT_KEY_RENEW_SECONDS]
    for index in renewed_keys:
        own = f"{index}:{process_id()}"
        if lapsed:
            sessions = list(_slots.get(index, ()))
            if sessions:
                pipe.sadd(own, *sessions)
                pipe.sadd(index, process_id())
        pipe.expire(own, SLOT_KEY_TTL_SECONDS)
        pipe.expire(index, SLOT_KEY_TTL_SECONDS)
    if not renewed_owners and not renewed_keys:
        return
    async with asyncio.timeout(availability.PROBE_TIMEOUT_SECONDS):
        await pipe.execute()
    for key in renewed_owners:
        if key in _owners:
            _owners[key][1] = now
    for key in renewed_keys:
        if key in _slot_keys_renewed:
            _slot_keys_renewed[key] = now


async def owner_alive(process: str) -> bool:
    """Whether the process named by an ownership record still beats (this one always does)."""
    from realtime.gateway.buffer import process_id
    from realtime.gateway.limits import redis_client

    if process == process_id():
        return True
    client = redis_client()
    if client is None:
        return True
    return bool(await client.exists(_beat_key(process)))


async def _beat_once(client) -> None:
    if client is None:
        return
    try:
        await beat(client)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        availability.redis_dependency.mark_down(
            f"no answer within {availability.PROBE_TIMEOUT_SECONDS:.1f} s" if isinstance(exc, TimeoutError) else exc)
    else:
        availability.redis_dependency.mark_up()  # the beat is the Redis probe: one round trip a second, not two


async def _monitor() -> None:
    from realtime.gateway.limits import redis_client

    prober = availability.Prober()
    try:
        while True:
            started = time.monotonic()
            # The beat first and beside the probes: a hung database must not delay the leases.
            await asyncio.gather(_beat_once(redis_client()), prober.probe())
            # On the process's grid: the beat shares its wake-up with the pings and flushes due then.
            await sleep_to_tick(max(0.05, BEAT_SECONDS - (time.monotonic() - started)))
    finally:
        await prober.close()


def ensure_started() -> None:
    """Start this process's monitor once (from a request: the server's event loop is running)."""
    task = _state["task"]
    if task is not None and not task.done():
        return
    _state["task"] = asyncio.get_running_loop().create_task(_monitor(), name="fleet-monitor")


async def stop() -> None:
    task, _state["task"] = _state["task"], None
    if task is not None:
        task.cancel()
        try:
            await task
        except BaseException:
            pass
