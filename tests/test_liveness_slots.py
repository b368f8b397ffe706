"""Per-key slots tied to process heartbeats (realtime/gateway/limits.py, liveness.py), on real Redis."""
from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.test import override_settings

from realtime.gateway import limits, liveness
from realtime.gateway.buffer import process_id

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (the PostgreSQL phase)")

OTHER_PROCESS = "elsewhere:4242"


@pytest.fixture
async def redis():
    with override_settings(REDIS_URL=os.environ["REDIS_URL"], REDIS_PREFIX=f"{settings.REDIS_PREFIX}-liveness"):
        client = limits.redis_client()
        await client.delete(*(await client.keys(f"{settings.REDIS_PREFIX}:*")) or ["none"])
        yield client
        await client.delete(*(await client.keys(f"{settings.REDIS_PREFIX}:*")) or ["none"])
        liveness._slots.clear()
        liveness._slot_keys_renewed.clear()
        liveness._owners.clear()
        await client.aclose()


async def test_a_slot_counts_while_its_process_beats(redis):
    key = limits._slot_key("k1")
    await redis.set(liveness.beat_key_prefix() + OTHER_PROCESS, "1", px=3000)
    await redis.zadd(key, {f"{OTHER_PROCESS}|sess_a": 1})
    assert not await limits.session_slot_acquire(key_id="k1", session_id="sess_b", limit=1)

    await redis.delete(liveness.beat_key_prefix() + OTHER_PROCESS)  # that process died: its lease lapsed
    assert await limits.session_slot_acquire(key_id="k1", session_id="sess_b", limit=1)
    assert await redis.zrange(key, 0, -1) == [f"{process_id()}|sess_b"]  # the dead one's slot is gone


async def test_a_beat_after_a_lapse_puts_back_what_others_removed(redis):
    assert await limits.session_slot_acquire(key_id="k2", session_id="sess_c", limit=5)
    await liveness.beat(redis)
    key = limits._slot_key("k2")
    # An outage longer than the lease: the heartbeat lapsed and another process removed the slot.
    await redis.delete(liveness.beat_key_prefix() + process_id())
    await redis.zrem(key, f"{process_id()}|sess_c")
    await liveness.beat(redis)
    assert await redis.zrange(key, 0, -1) == [f"{process_id()}|sess_c"]
    assert await redis.ttl(key) > limits.SLOT_KEY_TTL_SECONDS - 10

    await limits.session_slot_release(key_id="k2", session_id="sess_c")
    await redis.delete(key)
    await redis.delete(liveness.beat_key_prefix() + process_id())
    await liveness.beat(redis)
    assert not await redis.exists(key)  # a released slot is not put back
