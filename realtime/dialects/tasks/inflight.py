"""Tasks in flight, by session, so that the tasks of a process that died come back as errors.

A running task is recorded in Redis (``<prefix>:tasks:inflight:<session uuid>``: taskUUID -> the
process running it and the taskType) until its result is published. A connection of the session, in
any process, claims every entry whose process no longer beats (realtime.gateway.liveness) and sends
the client a ``task_lost`` error for it (seed 001's error shape, with taskUUID and taskType): the
client learns to send it again instead of waiting for a result that will never come. A claim is a
HDEL, so exactly one connection reports each lost task. Without Redis there is one process, whose
death ends every connection anyway.
"""
from __future__ import annotations

import json

from django.conf import settings

from realtime.gateway import liveness
from realtime.gateway.limits import redis_client

TASK_LOST_MESSAGE = "The gateway process running this task stopped before it finished; send the task again."


def _key(session_uuid: str) -> str:
    return f"{settings.REDIS_PREFIX}:tasks:inflight:{session_uuid}"


async def task_inflight_add(*, session_uuid: str, task_uuid: str, task_type: str) -> None:
    from realtime.gateway.buffer import process_id

    client = redis_client()
    if client is None:
        return
    key = _key(session_uuid)
    pipe = client.pipeline(transaction=False)
    pipe.hset(key, task_uuid, json.dumps({"process": process_id(), "taskType": task_type}))
    pipe.expire(key, int(settings.TASKS_BUFFER_SECONDS + settings.TASKS_UPSTREAM_TIMEOUT_SECONDS))  # whole seconds only
    await pipe.execute()


async def task_inflight_done(*, session_uuid: str, task_uuid: str) -> None:
    client = redis_client()
    if client is not None:
        await client.hdel(_key(session_uuid), task_uuid)


async def task_inflight_lost_claim(*, session_uuid: str) -> list[tuple[str, str]]:
    """(taskUUID, taskType) of each task of the session whose process is gone, claimed by the caller."""
    client = redis_client()
    if client is None:
        return []
    key = _key(session_uuid)
    entries = await client.hgetall(key)
    lost = []
    alive: dict[str, bool] = {}
    for task_uuid, raw in entries.items():
        entry = json.loads(raw)
        process = entry.get("process", "")
        if process not in alive:
            alive[process] = await liveness.owner_alive(process)
        if not alive[process] and await client.hdel(key, task_uuid):
            lost.append((task_uuid, str(entry.get("taskType", ""))))
    return lost
