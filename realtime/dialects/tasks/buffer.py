"""The tasks dialect's redelivery buffer and session registry (seed 001).

A task session (``connectionSessionUUID``) belongs to one API key (``key_id``, stable across rotation).
Its results pass through an outbox: appended when produced, taken by whichever connection is attached.
With REDIS_URL both live in Redis, so a result written by one process is delivered by another after
the first dies; without it, in this process. Entries older than TASKS_BUFFER_SECONDS are dropped, and
a session nobody touched for that long is forgotten (a reconnect then gets ``session_expired``).
"""
from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import dataclass

from django.conf import settings

from realtime.gateway.limits import redis_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSessionOwner:
    project_id: int
    key_id: str


def _session_key(session_uuid: str) -> str:
    return f"{settings.REDIS_PREFIX}:tasks:session:{session_uuid}"


def _outbox_key(session_uuid: str) -> str:
    return f"{settings.REDIS_PREFIX}:tasks:outbox:{session_uuid}"


# In-process fallback: session -> (owner, expires at); session -> deque of (stamp, text).
_local_sessions: dict[str, tuple[TaskSessionOwner, float]] = {}
_local_outboxes: dict[str, deque[tuple[float, str]]] = {}


def _local_expire(now: float) -> None:
    for session_uuid in [s for s, (_, until) in _local_sessions.items() if until < now]:
        del _local_sessions[session_uuid]
        _local_outboxes.pop(session_uuid, None)


async def task_session_register(*, session_uuid: str, project_id: int, key_id: str) -> None:
    ttl = settings.TASKS_BUFFER_SECONDS
    client = redis_client()
    if client is None:
        _local_sessions[session_uuid] = (TaskSessionOwner(project_id, key_id), time.time() + ttl)
        return
    await client.set(_session_key(session_uuid), json.dumps({"project_id": project_id, "key_id": key_id}), ex=ttl)


async def task_session_lookup(*, session_uuid: str) -> TaskSessionOwner | None:
    client = redis_client()
    if client is None:
        _local_expire(time.time())
        entry = _local_sessions.get(session_uuid)
        return entry[0] if entry else None
    raw = await client.get(_session_key(session_uuid))
    if raw is None:
        return None
    data = json.loads(raw)
    return TaskSessionOwner(project_id=int(data["project_id"]), key_id=data["key_id"])


async def task_session_touch(*, session_uuid: str) -> None:
    """Keep the session (and its undelivered results) for another TASKS_BUFFER_SECONDS."""
    ttl = settings.TASKS_BUFFER_SECONDS
    client = redis_client()
    if client is None:
        entry = _local_sessions.get(session_uuid)
        if entry is not None:
            _local_sessions[session_uuid] = (entry[0], time.time() + ttl)
        return
    async with client.pipeline(transaction=False) as pipe:
        pipe.expire(_session_key(session_uuid), ttl)
        pipe.expire(_outbox_key(session_uuid), ttl)
        await pipe.execute()


async def task_outbox_push(*, session_uuid: str, text: str) -> None:
    """Append one result. Beyond TASKS_BUFFER_MAX_MESSAGES the oldest results are dropped (logged)."""
    ttl, limit = settings.TASKS_BUFFER_SECONDS, settings.TASKS_BUFFER_MAX_MESSAGES
    now = time.time()
    client = redis_client()
    if client is None:
        box = _local_outboxes.setdefault(session_uuid, deque())
        box.append((now, text))
        while len(box) > limit:
            box.popleft()
            logger.warning("task session %s: redelivery buffer full, dropped its oldest result", session_uuid)
        return
    key = _outbox_key(session_uuid)
    async with client.pipeline(transaction=True) as pipe:
        pipe.rpush(key, json.dumps({"t": now, "m": text}))
        pipe.ltrim(key, -limit, -1)
        pipe.expire(key, ttl)
        pipe.expire(_session_key(session_uuid), ttl)
        length, *_ = await pipe.execute()
    if length > limit:
        logger.warning("task session %s: redelivery buffer full, dropped its oldest result", session_uuid)


async def task_outbox_take(*, session_uuid: str) -> list[str]:
    """Remove and return every result still within the buffer window, oldest first (atomically, so two
    connections never both deliver one result)."""
    oldest = time.time() - settings.TASKS_BUFFER_SECONDS
    client = redis_client()
    if client is None:
        box = _local_outboxes.pop(session_uuid, deque())
        return [text for stamp, text in box if stamp >= oldest]
    key = _outbox_key(session_uuid)
    async with client.pipeline(transaction=True) as pipe:
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        entries, _ = await pipe.execute()
    taken = []
    for raw in entries:
        entry = json.loads(raw)
        if entry["t"] >= oldest:
            taken.append(entry["m"])
    return taken


async def task_outbox_requeue(*, session_uuid: str, texts: list[str]) -> None:
    """Put results a connection could not confirm back at the FRONT of the outbox (they are older
    than anything buffered since), to be delivered again (at least once: taskUUID tells duplicates)."""
    if not texts:
        return
    ttl = settings.TASKS_BUFFER_SECONDS
    now = time.time()
    client = redis_client()
    if client is None:
        box = _local_outboxes.setdefault(session_uuid, deque())
        box.extendleft((now, text) for text in reversed(texts))
        return
    key = _outbox_key(session_uuid)
    async with client.pipeline(transaction=True) as pipe:
        pipe.lpush(key, *[json.dumps({"t": now, "m": text}) for text in reversed(texts)])
        pipe.expire(key, ttl)
        pipe.expire(_session_key(session_uuid), ttl)
        await pipe.execute()
