"""Process liveness: a dead process's sessions and per-key slots are released within seconds.

Each process runs one monitor task (started on its first request):

- every BEAT_SECONDS it writes its heartbeat ``<prefix>:fleet:proc:<process id>`` (expires after
  LEASE_SECONDS) and, in one pipeline, renews every lease it holds: the ownership record of each session
  it holds and each per-key concurrency slot. Leases last LEASE_SECONDS, so a SIGKILLed process's
  records lapse within LEASE_SECONDS; no per-session task does this work. The same round trip reads
  the deployments' generation (realtime.agents.deployment_cache);
- it probes PostgreSQL and Redis (realtime.gateway.availability), so new sessions are refused at once
  during an outage.

``owner_alive`` lets a process that meets another's ownership record answer at once: a record naming a
process without a heartbeat is stale (its process is gone), never something to wait for.

During a Redis outage renewals fail (logged once per outage by availability); when Redis returns the
next beat writes every lease again, so live sessions keep their records without a restart.
"""
from __future__ import annotations

import asyncio
import logging
import time

from django.conf import settings

from realtime.agents import deployment_cache
from realtime.gateway import availability

logger = logging.getLogger(__name__)

BEAT_SECONDS = 1.0
LEASE_SECONDS = 3.0  # a dead process's heartbeat, ownership records and slots lapse within this

# Leases this process holds: ownership records (key -> value) and slots (sorted-set key, member).
_owners: dict[str, str] = {}
_slots: set[tuple[str, str]] = set()
_state: dict[str, asyncio.Task | None] = {"task": None}


def owner_held(key: str, value: str) -> None:
    _owners[key] = value


def owner_dropped(key: str) -> None:
    _owners.pop(key, None)


def slot_held(key: str, member: str) -> None:
    _slots.add((key, member))


def slot_dropped(key: str, member: str) -> None:
    _slots.discard((key, member))


def _beat_key(process: str) -> str:
    return f"{settings.REDIS_PREFIX}:fleet:proc:{process}"


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
    """One heartbeat and the renewal of every lease held, in one round trip."""
    from realtime.gateway.buffer import process_id

    lease_ms = int(LEASE_SECONDS * 1000)
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.set(_beat_key(process_id()), "1", px=lease_ms)
    pipe.get(deployment_cache.generation_key())  # a deployment changed in any process: drop the cached ones
    for key, value in list(_owners.items()):
        pipe.eval(_RENEW_OWNER, 1, key, value, lease_ms)
    for key, member in list(_slots):
        pipe.zadd(key, {member: now + LEASE_SECONDS})
        pipe.expire(key, int(LEASE_SECONDS * 2) + 1)
    results = await asyncio.wait_for(pipe.execute(), availability.PROBE_TIMEOUT_SECONDS)
    deployment_cache.deployment_cache_generation_seen(results[1])


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
        availability.redis_dependency.mark_down(exc)


async def _monitor() -> None:
    from realtime.gateway.limits import redis_client

    prober = availability.Prober()
    try:
        while True:
            started = time.monotonic()
            # The beat first and beside the probes: a hung database must not delay the leases.
            await asyncio.gather(_beat_once(redis_client()), prober.probe())
            await asyncio.sleep(max(0.05, BEAT_SECONDS - (time.monotonic() - started)))
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
