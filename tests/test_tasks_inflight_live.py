"""In-flight task records (realtime/dialects/tasks/inflight.py) in the shared Redis expire: a record
left by a process that died must not stay forever."""
from __future__ import annotations

import uuid

import pytest
import redis.asyncio

from realtime.dialects.tasks import inflight

pytestmark = [pytest.mark.live]


async def test_an_in_flight_record_gets_a_ttl(settings):
    assert settings.REDIS_URL, "live tests run against Redis (REDIS_URL)"
    settings.TASKS_BUFFER_SECONDS = 120
    settings.TASKS_UPSTREAM_TIMEOUT_SECONDS = 120.0  # a float setting: Redis takes only whole seconds
    session_uuid = str(uuid.uuid4())
    key = f"{settings.REDIS_PREFIX}:tasks:inflight:{session_uuid}"
    client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    try:
        await inflight.task_inflight_add(session_uuid=session_uuid, task_uuid=str(uuid.uuid4()), task_type="upscale")
        assert 0 < await client.ttl(key) <= 240
    finally:
        await client.delete(key)
        await client.aclose()
