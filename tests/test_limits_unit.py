"""Limit building blocks: the token bucket, client frame admission and concurrent-session slots."""
from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from django.test import override_settings

from realtime.gateway import limits

pytestmark = pytest.mark.unit


def test_the_bucket_allows_its_burst_then_refuses():
    bucket = limits.TokenBucket(rate=0.001, burst=3)
    assert [bucket.allow() for _ in range(5)] == [True, True, True, False, False]


def test_the_bucket_refills_at_its_rate():
    bucket = limits.TokenBucket(rate=1000, burst=1)
    assert bucket.allow()
    bucket.stamp -= 0.01  # 10 ms later: 10 tokens' worth, capped at the burst of 1
    assert bucket.allow() and not bucket.allow()


@override_settings(REALTIME_MAX_FRAME_BYTES=1024, REALTIME_EVENTS_PER_SECOND=0.001, REALTIME_EVENT_BURST=2)
def test_the_gate_checks_size_in_bytes_then_rate():
    gate = limits.ClientGate()
    assert gate.check("é" * 600).code == "frame_too_large"  # 600 characters, 1200 bytes
    assert gate.check("a" * 1024) is None
    assert gate.check("{}") is None
    assert gate.check("{}").code == "rate_limited"


@override_settings(REDIS_URL=None)
async def test_session_slots_are_counted_per_key():
    assert await limits.session_slot_acquire(key_id="k1", session_id="a", limit=2)
    assert await limits.session_slot_acquire(key_id="k1", session_id="b", limit=2)
    assert not await limits.session_slot_acquire(key_id="k1", session_id="c", limit=2)
    assert await limits.session_slot_acquire(key_id="k1", session_id="a", limit=2)  # renewing its own
    assert await limits.session_slot_acquire(key_id="k2", session_id="c", limit=2)
    await limits.session_slot_release(key_id="k1", session_id="a")
    assert await limits.session_slot_acquire(key_id="k1", session_id="c", limit=2)
    for key_id, sid in [("k1", "b"), ("k1", "c"), ("k2", "c")]:
        await limits.session_slot_release(key_id=key_id, session_id=sid)


async def test_new_redis_connections_skip_the_package_metadata(monkeypatch):
    """redis-py would parse its own METADATA (importlib.metadata) for every connection it opens, about
    3 ms of the event loop each, and a fresh process's first connect storm opens a pool's worth."""
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (the PostgreSQL run has it)")
    from importlib import metadata

    from realtime.lib.redis_options import redis_options

    redis_options()  # resolved once per process, here before counting
    looked_up: list[str] = []
    version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: looked_up.append(name) or version(name))
    client = limits.redis_client()
    try:
        infos = await asyncio.gather(*(client.client_info() for _ in range(5)))  # several connections at once
    finally:
        await client.connection_pool.disconnect()
    assert looked_up == []
    assert len({info["id"] for info in infos}) > 1  # the pool did open new connections
