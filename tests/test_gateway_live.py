"""The realtime gateway end to end: real daphne processes, real WebSocket clients, a real upstream."""
from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from accounts.models import EnvironmentKind
from tests.test_gateway_support import (
    ScriptedUpstream,
    basic,
    bearer,
    connect,
    expect_refusal,
    make_custom_deployment,
    recv_json,
    recv_until,
    session_url,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("auth", [basic, bearer], ids=["basic", "bearer"])
async def test_api_key_session_relays_every_event_unchanged_and_in_order(server_factory, project, dev_key, auth):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_EVENT_BURST": "1000"})
        async with await connect(session_url(server, f"order-{auth.__name__}"), auth(raw)) as ws:
            created = await recv_json(ws)
            assert created["type"] == "session.created"
            up = await upstream.next_connection()
            # The upstream got the agent's credential from the header template, and the session id: the
            # gateway's own, unique per session (a client's key is reusable and tenant-scoped).
            assert up.headers["Authorization"] == "Bearer upstream-secret-123"
            session_id = up.headers["X-Session"]
            assert session_id.startswith("sess_") and f"order-{auth.__name__}" not in session_id
            assert f"session={session_id}" in up.path

            # Client to upstream: 200 events, byte for byte and in order (odd spacing kept as sent).
            sent = [f'{{"type": "conversation.item.create",  "event_id": "c{i}", "item": {{"type": "message", '
                    f'"role": "user", "content": [{{"type": "input_text", "text": "n{i}"}}]}}}}' for i in range(200)]
            for text in sent:
                await ws.send(text)
            received_back = []
            async with asyncio.timeout(20):
                while len(received_back) < 400:
                    received_back.append(json.loads(await ws.recv()))
            assert up.received == sent
            # Upstream to client: the answers arrive in the order the upstream sent them.
            texts = [e["item"]["content"][0]["text"] for e in received_back]
            assert texts == [f"n{i}" for i in range(200) for _ in (0, 1)]
            assert [e["type"] for e in received_back[:2]] == ["conversation.item.added", "conversation.item.done"]


async def test_agent_configuration_is_applied_before_client_events(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url, instructions="Be brief.", voice="Clive")
        server = server_factory()
        async with await connect(session_url(server, "cfg-1"), bearer(raw)) as ws:
            assert (await recv_json(ws))["type"] == "session.created"
            up = await upstream.next_connection()
            first = await up.next_received()
            assert first["type"] == "session.update"
            assert first["session"]["instructions"] == "Be brief."
            assert first["session"]["audio"]["output"]["voice"] == "Clive"
            await ws.send(json.dumps({"type": "session.update", "session": {"instructions": "Mine."}}))
            # The client sees the answer to its own update only, not the gateway's.
            updated = await recv_json(ws)
            assert updated["type"] == "session.updated"
            assert updated["session"]["instructions"] == "Mine."


async def test_openai_style_endpoint_reaches_a_named_deployment_of_the_keys_environment(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        deployment = await make_custom_deployment(project, upstream.url, default=False)
        staging = await make_custom_deployment(project, upstream.url, kind=EnvironmentKind.STAGING, default=False,
                                               name="Staging agent")
        server = server_factory()
        url = f"{server.ws_url}/v1/realtime?deployment={deployment.deployment_key}"
        async with await connect(url, bearer(raw)) as ws:
            assert (await recv_json(ws))["type"] == "session.created"
            await upstream.next_connection()
        # A development key cannot reach a staging deployment: it does not exist for this key.
        url = f"{server.ws_url}/v1/realtime?deployment={staging.deployment_key}"
        async with await connect(url, bearer(raw)) as ws:
            error, code = await expect_refusal(ws)
        assert (error["code"], code) == ("deployment_not_found", 4404)


@pytest.mark.parametrize(
    "headers, code",
    [({}, "missing_credentials"), (bearer("sb_dev_notakey"), "malformed_key"),
     (basic("sb_dev_" + "A" * 38), "bad_checksum")],
    ids=["none", "malformed", "checksum"],
)
async def test_bad_credentials_are_refused_with_a_reason(server_factory, project, headers, code):
    server = server_factory()
    async with await connect(session_url(server, "bad-1"), headers) as ws:
        error, close_code = await expect_refusal(ws)
    assert (error["code"], error["type"], close_code) == (code, "authentication_error", 4401)


async def test_revoked_key_is_refused(server_factory, project, dev_key):
    from accounts.services import api_key_revoke

    row, raw = dev_key
    await sync_to_async(api_key_revoke)(api_key=row)
    server = server_factory()
    async with await connect(session_url(server, "rev-0"), bearer(raw)) as ws:
        error, close_code = await expect_refusal(ws)
    assert (error["code"], close_code) == ("revoked_key", 4401)


async def test_browser_origin_is_checked_and_server_clients_need_none(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"REALTIME_ALLOWED_ORIGINS": "https://app.example.com"})
        async with await connect(session_url(server, "o1"), bearer(raw), origin="https://evil.example.net") as ws:
            error, code = await expect_refusal(ws)
        assert (error["code"], code) == ("origin_not_allowed", 4403)
        async with await connect(session_url(server, "o2"), bearer(raw), origin="https://app.example.com") as ws:
            assert (await recv_json(ws))["type"] == "session.created"
        async with await connect(session_url(server, "o3"), bearer(raw)) as ws:
            assert (await recv_json(ws))["type"] == "session.created"


async def test_bad_input_is_answered_and_the_session_goes_on(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory()
        async with await connect(session_url(server, "bad-input"), bearer(raw)) as ws:
            await recv_json(ws)
            up = await upstream.next_connection()
            await ws.send("{not json")
            assert (await recv_json(ws))["error"]["code"] == "invalid_json"
            await ws.send(json.dumps({"type": "made.up", "event_id": "e7"}))
            error = (await recv_json(ws))["error"]
            assert (error["code"], error["event_id"], error["param"]) == ("unknown_event_type", "e7", "type")
            await ws.send(b"\x00\x01")
            assert (await recv_json(ws))["error"]["code"] == "binary_not_supported"
            await ws.send(json.dumps({"type": "response.create"}))
            done, _ = await recv_until(ws, "response.done")
            assert done["response"]["status"] == "completed"
            # Nothing refused reached the upstream.
            assert [json.loads(m)["type"] for m in up.received] == ["response.create"]


async def test_session_endpoint_requires_a_session_key(server_factory, project, dev_key):
    _, raw = dev_key
    server = server_factory()
    async with await connect(f"{server.ws_url}/api/v1/realtime/session?protocol=realtime", bearer(raw)) as ws:
        error, code = await expect_refusal(ws)
    assert (error["code"], code) == ("invalid_session_key", 4400)


async def test_upstream_killed_mid_session_gives_an_error_event_and_a_clean_close(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory()
        async with await connect(session_url(server, "kill-1"), bearer(raw)) as ws:
            await recv_json(ws)
            up = await upstream.next_connection()
            await up.ws.close(code=1011, reason="agent crashed")
            error, code = await expect_refusal(ws)
        assert (error["code"], error["type"], code) == ("upstream_closed", "server_error", 4503)
        assert "1011" in error["message"] and "agent crashed" in error["message"]


async def test_unreachable_upstream_is_reported(server_factory, project, dev_key):
    from tests.conftest import free_port

    _, raw = dev_key
    await make_custom_deployment(project, f"ws://127.0.0.1:{free_port()}/nothing-here")
    server = server_factory()
    async with await connect(session_url(server, "gone-1"), bearer(raw)) as ws:
        error, code = await expect_refusal(ws)
    assert (error["code"], code) == ("upstream_unavailable", 4502)


async def test_secrets_never_reach_the_server_log(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory(env={"LOG_LEVEL": "DEBUG"})
        async with await connect(session_url(server, "log-1"), bearer(raw)) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "response.create"}))
            await recv_until(ws, "response.done")
    log = server.log()
    assert raw not in log and "upstream-secret-123" not in log
