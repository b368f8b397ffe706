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

        async def forget():
            await client.delete(*(await client.keys(f"{settings.REDIS_PREFIX}:*")) or ["none"])
            liveness._slots.clear()
            liveness._slot_keys_renewed.clear()
            liveness._owners.clear()

        await forget()
        yield client
        await forget()
        await client.aclose()


async def other_process_holds(redis, key_id: str, *sessions: str) -> None:
    index = limits.slot_index_key(key_id)
    await redis.sadd(f"{index}:{OTHER_PROCESS}", *sessions)
    await redis.sadd(index, OTHER_PROCESS)


async def test_the_cap_counts_every_live_process_and_not_a_dead_ones(redis):
    await redis.set(liveness.beat_key_prefix() + OTHER_PROCESS, "1", px=3000)
    await other_process_holds(redis, "k1", "sess_a", "sess_b")
    assert await limits.session_slot_acquire(key_id="k1", session_id="sess_c", limit=3)
    assert not await limits.session_slot_acquire(key_id="k1", session_id="sess_d", limit=3)
    assert await limits.session_slot_acquire(key_id="k1", session_id="sess_c", limit=3)  # its own: kept

    await redis.delete(liveness.beat_key_prefix() + OTHER_PROCESS)  # that process died: its heartbeat lapsed
    assert await limits.session_slot_acquire(key_id="k1", session_id="sess_d", limit=3)
    index = limits.slot_index_key("k1")
    assert await redis.smembers(index) == {process_id()}  # the dead one's slots are gone
    assert await redis.smembers(limits.slot_set_key("k1")) == {"sess_c", "sess_d"}

    await limits.session_slot_release(key_id="k1", session_id="sess_c")
    assert await redis.smembers(limits.slot_set_key("k1")) == {"sess_d"}


async def test_a_beat_after_a_lapse_puts_back_what_others_removed(redis):
    assert await limits.session_slot_acquire(key_id="k2", session_id="sess_c", limit=5)
    await liveness.beat(redis)
    index, own = limits.slot_index_key("k2"), limits.slot_set_key("k2")
    # An outage longer than the lease: the heartbeat lapsed and another process's acquire deleted the slots.
    await redis.delete(liveness.beat_key_prefix() + process_id(), own)
    await redis.srem(index, process_id())
    await liveness.beat(redis)
    assert await redis.smembers(own) == {"sess_c"}
    assert await redis.smembers(index) == {process_id()}
    assert await redis.ttl(own) > limits.SLOT_KEY_TTL_SECONDS - 10

    await limits.session_slot_release(key_id="k2", session_id="sess_c")
    await redis.delete(liveness.beat_key_prefix() + process_id())
    await liveness.beat(redis)
    assert not await redis.exists(own)  # a released slot is not put back
