"""Resume (explicit: ``resume=1``): a dropped client's upstream session is kept for the resume window,
its events buffered and replayed in order after ``session.resumed``; other tenants hear what an unknown
key hears (session_not_resumable), as does everyone once the window has passed."""
from __future__ import annotations

import asyncio
import json

import pytest

from tests.test_gateway_support import (
    ScriptedUpstream,
    bearer,
    connect,
    expect_refusal,
    make_custom_deployment,
    recv_json,
    recv_until,
    session_url,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def drop(ws, server, path="/api/v1/realtime/session") -> None:
    """Cut the client's connection without a closing handshake (a network drop), then wait until the
    server process has noticed: daphne logs the disconnect, and there is no other signal outside it."""
    before = server.log().count(f'"WSDISCONNECT {path}"')
    ws.transport.abort()
    async with asyncio.timeout(10):
        while server.log().count(f'"WSDISCONNECT {path}"') <= before:
            await asyncio.sleep(0.05)  # polling another process's log: no event to await


async def test_resume_within_the_window_replays_missed_events_in_order(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory()
        ws = await connect(session_url(server, "resume-1"), bearer(raw))
        assert (await recv_json(ws))["type"] == "session.created"
        up = await upstream.next_connection()
        await drop(ws, server)
        missed = [{"type": "response.output_text.delta", "delta": f"m{n}"} for n in range(20)]
        for event in missed:
            await up.emit(event)
        async with await connect(session_url(server, "resume-1", resume=1), bearer(raw)) as again:
            resumed = await recv_json(again)
            assert resumed["type"] == "session.resumed"
            assert resumed["session"]["replayed_events"] == len(missed)
            replayed = [await recv_json(again) for _ in missed]
            assert replayed == missed
            # ...and the same upstream session goes on.
            await again.send(json.dumps({"type": "response.create"}))
            done, _ = await recv_until(again, "response.done")
            assert done["response"]["status"] == "completed"
        assert len(upstream.connections) == 1
        assert [json.loads(m)["type"] for m in up.received] == ["response.create"]


async def test_another_project_cannot_resume_a_session(server_factory, project, dev_key, other_key):
    _, raw = dev_key
    _, other_raw = other_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory()
        ws = await connect(session_url(server, "resume-theirs"), bearer(raw))
        await recv_json(ws)
        await drop(ws, server)
        async with await connect(session_url(server, "resume-theirs", resume=1), bearer(other_raw)) as thief:
            error, code = await expect_refusal(thief)
        # The same answer as for a key never used: nothing tells that another tenant uses this id.
        assert (error["code"], code) == ("session_not_resumable", 4410)
        # The owner still can.
        async with await connect(session_url(server, "resume-theirs", resume=1), bearer(raw)) as again:
            assert (await recv_json(again))["type"] == "session.resumed"
            await again.send(json.dumps({"type": "response.create"}))
            await recv_until(again, "response.done")


async def test_after_the_window_the_answer_is_session_not_resumable(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_RESUME_SECONDS": "1"})
        ws = await connect(session_url(server, "resume-late"), bearer(raw))
        await recv_json(ws)
        up = await upstream.next_connection()
        await drop(ws, server)
        # The gateway lets go of the upstream when the window closes.
        await asyncio.wait_for(up.ws.wait_closed(), 10)
        async with await connect(session_url(server, "resume-late", resume=1), bearer(raw)) as again:
            error, code = await expect_refusal(again)
        assert (error["code"], code) == ("session_not_resumable", 4410)


async def test_an_overflowing_resume_buffer_ends_the_session(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_BUFFER_MAX_EVENTS": "3"})
        ws = await connect(session_url(server, "resume-full"), bearer(raw))
        await recv_json(ws)
        up = await upstream.next_connection()
        await drop(ws, server)
        for n in range(5):
            await up.emit({"type": "response.output_text.delta", "delta": f"m{n}"})
        await asyncio.wait_for(up.ws.wait_closed(), 10)
        async with await connect(session_url(server, "resume-full", resume=1), bearer(raw)) as again:
            error, code = await expect_refusal(again)
        assert (error["code"], code) == ("session_not_resumable", 4410)


async def test_any_process_knows_where_a_session_lives(server_factory, project, dev_key, other_key):
    _, raw = dev_key
    _, other_raw = other_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        first, second = server_factory(), server_factory()
        ws = await connect(session_url(first, "resume-where"), bearer(raw))
        await recv_json(ws)
        await drop(ws, first)
        async with await connect(session_url(second, "resume-where", resume=1), bearer(raw)) as elsewhere:
            error, code = await expect_refusal(elsewhere)
        assert (error["code"], code) == ("session_elsewhere", 4421)
        assert str(first.process.pid) in error["message"]
        async with await connect(session_url(second, "resume-where", resume=1), bearer(other_raw)) as thief:
            error, code = await expect_refusal(thief)
        assert (error["code"], code) == ("session_not_resumable", 4410)
        async with await connect(session_url(first, "resume-where", resume=1), bearer(raw)) as again:
            assert (await recv_json(again))["type"] == "session.resumed"
            await again.send(json.dumps({"type": "response.create"}))
            await recv_until(again, "response.done")


async def test_a_second_connection_takes_the_session_over(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory()
        async with await connect(session_url(server, "takeover"), bearer(raw)) as old:
            await recv_json(old)
            async with await connect(session_url(server, "takeover", resume=1), bearer(raw)) as new:
                error, code = await expect_refusal(old)
                assert (error["code"], code) == ("session_replaced", 4409)
                assert (await recv_json(new))["type"] == "session.resumed"
                await new.send(json.dumps({"type": "response.create"}))
                await recv_until(new, "response.done")
