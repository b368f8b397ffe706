"""Each gateway limit answers with its own code and loses nothing already accepted."""
from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from asgiref.sync import sync_to_async

from tests.test_gateway_support import (
    ScriptedUpstream,
    bearer,
    connect,
    expect_refusal,
    make_custom_deployment,
    recv_json,
    session_url,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def item(text: str) -> str:
    return json.dumps({"type": "conversation.item.create",
                       "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})


async def test_an_oversized_frame_is_refused_and_the_session_goes_on(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_MAX_FRAME_BYTES": "2048"})
        async with await connect(session_url(server, "frame"), bearer(raw)) as ws:
            await recv_json(ws)
            up = await upstream.next_connection()
            await ws.send(item("before"))
            await ws.send(item("x" * 3000))
            await ws.send(item("after"))
            events = []
            async with asyncio.timeout(15):
                while len(events) < 5:  # 2 x (added, done) from upstream + the gateway's error
                    events.append(await recv_json(ws))
            # The refusal is the gateway's own and may overtake the upstream's answers.
            assert [e["error"]["code"] for e in events if e["type"] == "error"] == ["frame_too_large"]
            added = [e["item"]["content"][0]["text"] for e in events if e["type"] == "conversation.item.added"]
            assert added == ["before", "after"]
            assert [json.loads(m)["item"]["content"][0]["text"] for m in up.received] == ["before", "after"]


async def test_events_beyond_the_rate_are_refused_not_relayed(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_EVENTS_PER_SECOND": "0.5", "REALTIME_EVENT_BURST": "3"})
        async with await connect(session_url(server, "rate"), bearer(raw)) as ws:
            await recv_json(ws)
            up = await upstream.next_connection()
            for n in range(5):
                await ws.send(item(f"n{n}"))
            events = []
            async with asyncio.timeout(15):
                while len(events) < 3 * 2 + 2:
                    events.append(await recv_json(ws))
            errors = [e["error"]["code"] for e in events if e["type"] == "error"]
            assert errors == ["rate_limited", "rate_limited"]
            assert [json.loads(m)["item"]["content"][0]["text"] for m in up.received] == ["n0", "n1", "n2"]


async def test_concurrent_sessions_per_key_hold_across_processes(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        env = {"REALTIME_MAX_SESSIONS_PER_KEY": "1"}
        first, second = server_factory(env=env), server_factory(env=env)
        async with await connect(session_url(first, "conc-1"), bearer(raw)) as ws:
            await recv_json(ws)
            async with await connect(session_url(second, "conc-2"), bearer(raw)) as refused:
                error, code = await expect_refusal(refused)
            assert (error["code"], code) == ("too_many_sessions", 4429)
            await ws.close()
        # The slot is free again once the first session ends (its close is processed asynchronously).
        async with asyncio.timeout(15):
            while True:
                async with await connect(session_url(second, "conc-3"), bearer(raw)) as ws:
                    event = await recv_json(ws)
                    if event["type"] == "session.created":
                        break
                    assert event["error"]["code"] == "too_many_sessions"


async def test_session_duration_and_a_tokens_lower_limit(server_factory, project, dev_key):
    from realtime.gateway.tokens import token_mint

    row, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_MAX_SESSION_SECONDS": "3"})
        token, _ = await sync_to_async(token_mint)(api_key_pk=str(row.pk), max_session_seconds=1)
        loop = asyncio.get_running_loop()
        async with await connect(session_url(server, "dur-jwt"), bearer(token)) as ws:
            started = loop.time()
            await recv_json(ws)
            error, code = await expect_refusal(ws)
            token_elapsed = loop.time() - started
        async with await connect(session_url(server, "dur-key"), bearer(raw)) as ws:
            started = loop.time()
            await recv_json(ws)
            error2, code2 = await expect_refusal(ws)
            key_elapsed = loop.time() - started
    assert (error["code"], code) == ("session_duration_exceeded", 4420)
    assert (error2["code"], code2) == ("session_duration_exceeded", 4420)
    assert token_elapsed < key_elapsed


async def test_an_idle_session_is_closed(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_IDLE_TIMEOUT_SECONDS": "2"})
        async with await connect(session_url(server, "idle"), bearer(raw)) as ws:
            await recv_json(ws)
            error, code = await expect_refusal(ws)
    assert (error["code"], code) == ("idle_timeout", 4408)


async def test_revoking_a_key_closes_its_live_sessions_within_seconds(server_factory, project, dev_key):
    from accounts.services import api_key_revoke

    row, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        # The periodic re-check is set far away: this is the channel-layer notice at work.
        server = server_factory(env={"REALTIME_KEY_RECHECK_SECONDS": "600"})
        async with await connect(session_url(server, "revoke-live"), bearer(raw)) as ws:
            await recv_json(ws)
            await sync_to_async(api_key_revoke)(api_key=row)
            error, code = await expect_refusal(ws, timeout=5)
    assert (error["code"], code) == ("key_revoked", 4401)


async def test_a_missed_revocation_notice_is_caught_by_the_periodic_recheck(server_factory, project, dev_key):
    from django.utils import timezone

    from accounts.models import ApiKey

    row, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_KEY_RECHECK_SECONDS": "1"})
        async with await connect(session_url(server, "revoke-quiet"), bearer(raw)) as ws:
            await recv_json(ws)
            # Revoked without any notice (as if the at-most-once channel layer lost it).
            await sync_to_async(ApiKey.objects.filter(pk=row.pk).update)(revoked_at=timezone.now())
            error, code = await expect_refusal(ws, timeout=5)
    assert (error["code"], code) == ("key_revoked", 4401)


async def test_a_client_outrunning_a_stalled_upstream_is_stopped_not_buffered(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_UPSTREAM_QUEUE_EVENTS": "4", "REALTIME_EVENT_BURST": "1000"})
        async with await connect(session_url(server, "stall"), bearer(raw)) as ws:
            await recv_json(ws)
            await upstream.next_connection()
            upstream.reading.clear()
            chunk = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 512 * 1024})
            refusal = asyncio.ensure_future(expect_refusal(ws, timeout=60))
            sent = 0
            # 512 KiB events until the gateway gives up (at most 100 = 50 MiB, far beyond any socket buffer).
            while not refusal.done() and sent < 100:
                try:
                    await ws.send(chunk)
                except websockets.ConnectionClosed:
                    break  # the gateway closed while this event was on its way
                sent += 1
                await asyncio.sleep(0)
            error, code = await refusal
    assert (error["code"], code) == ("client_too_fast", 4430)
    assert sent < 100
