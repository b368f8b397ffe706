"""Session keys (seed 004 ``key``) are scoped to project and environment and reusable: a plain connect
always starts a fresh session; ``resume=1`` is refused, each with its code, for another key,
environment or deployment, after revocation and past a token's max_session_seconds."""
from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from accounts.models import EnvironmentKind
from accounts.services import api_key_create, api_key_revoke
from tests.test_gateway_support import (
    ScriptedUpstream,
    bearer,
    closed,
    connect,
    expect_refusal,
    make_custom_deployment,
    recv_json,
    recv_until,
    session_url,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _mint(key_pk, **kwargs) -> str:
    from realtime.gateway.tokens import token_mint

    return token_mint(api_key_pk=str(key_pk), **kwargs)[0]


mint = sync_to_async(_mint)


async def drop(ws, server, path="/api/v1/realtime/session") -> None:
    """Cut the connection without a closing handshake, then wait until daphne logged the disconnect."""
    before = server.log().count(f'"WSDISCONNECT {path}"')
    ws.transport.abort()
    async with asyncio.timeout(10):
        while server.log().count(f'"WSDISCONNECT {path}"') <= before:
            await asyncio.sleep(0.05)  # polling another process's log: no event to await


async def test_a_constant_key_starts_a_fresh_session_every_time(server_factory, project, dev_key):
    _, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory()
        for _ in range(3):
            ws = await connect(session_url(server, "your-session-id"), bearer(raw))
            assert (await recv_json(ws))["type"] == "session.created"
            await ws.send(json.dumps({"type": "response.create"}))
            await recv_until(ws, "response.done")
            await drop(ws, server)  # not even a goodbye: the next plain connect is still a new session
        assert len(upstream.connections) == 3


async def test_two_projects_use_the_same_key_without_noticing_each_other(
        server_factory, project, other_project, dev_key, other_key):
    _, raw = dev_key
    _, other_raw = other_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        await make_custom_deployment(other_project, upstream.url)
        server = server_factory()
        ours = await connect(session_url(server, "shared-id"), bearer(raw))
        theirs = await connect(session_url(server, "shared-id"), bearer(other_raw))
        assert (await recv_json(ours))["type"] == "session.created"
        assert (await recv_json(theirs))["type"] == "session.created"
        for ws in (ours, theirs):  # both live, neither replaced
            await ws.send(json.dumps({"type": "response.create"}))
            done, before = await recv_until(ws, "response.done")
            assert done["response"]["status"] == "completed"
            assert all(event["type"] != "error" for event in before)
        await drop(theirs, server)
        # Resuming reaches one's own session only.
        async with await connect(session_url(server, "shared-id", resume=1), bearer(other_raw)) as again:
            assert (await recv_json(again))["type"] == "session.resumed"
        await ours.close()


async def test_resume_refusals_each_have_their_code(server_factory, project, owner, dev_key):
    row, raw = dev_key
    async with ScriptedUpstream() as upstream:
        default = await make_custom_deployment(project, upstream.url)
        other = await make_custom_deployment(project, upstream.url, default=False, name="Other agent")
        env_dev = await sync_to_async(project.environments.get)(kind=EnvironmentKind.DEVELOPMENT)
        env_stg = await sync_to_async(project.environments.get)(kind=EnvironmentKind.STAGING)
        sibling, sibling_raw = await sync_to_async(api_key_create)(project=project, environment=env_dev,
                                                                   name="sibling", created_by=owner)
        _, staging_raw = await sync_to_async(api_key_create)(project=project, environment=env_stg,
                                                             name="staging", created_by=owner)
        server = server_factory()
        ws = await connect(session_url(server, "guarded"), bearer(raw))
        assert (await recv_json(ws))["type"] == "session.created"
        short = await mint(row.pk, max_session_seconds=1)
        later = await mint(row.pk)
        await drop(ws, server)

        async def refusal(credential: str, **query) -> tuple[str, int]:
            async with await connect(session_url(server, "guarded", resume=1, **query), bearer(credential)) as again:
                error, code = await expect_refusal(again)
            return error["code"], code

        assert await refusal(sibling_raw) == ("resume_key_mismatch", 4403)
        assert await refusal(staging_raw) == ("session_not_resumable", 4410)
        pinned = await mint(row.pk, deployment_key=other.deployment_key)
        assert await refusal(pinned) == ("resume_deployment_mismatch", 4403)
        assert await refusal(raw, deployment=other.deployment_key) == ("resume_deployment_mismatch", 4403)
        await asyncio.sleep(1.2)  # the token's limit counts from the session's start, a second ago
        assert await refusal(short) == ("session_duration_exceeded", 4420)
        # None of these disturbed the session: its own key resumes it.
        async with await connect(session_url(server, "guarded", resume=1, deployment=default.deployment_key),
                                 bearer(raw)) as again:
            assert (await recv_json(again))["type"] == "session.resumed"
            await again.send(json.dumps({"type": "response.create"}))
            await recv_until(again, "response.done")
            await sync_to_async(api_key_revoke)(api_key=row)
            error, code = await expect_refusal(again)  # the live session ends at once
            assert (error["code"], code) == ("key_revoked", 4401)
        # After revocation, nothing resumes: the key's tokens are refused, and the session is gone.
        assert await refusal(later) == ("token_key_revoked", 4401)


async def test_a_rotated_key_resumes_its_session(server_factory, project, dev_key):
    from datetime import timedelta

    from accounts.services import api_key_rotate

    row, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        server = server_factory()
        ws = await connect(session_url(server, "rotating"), bearer(raw))
        assert (await recv_json(ws))["type"] == "session.created"
        await drop(ws, server)
        _, new_raw = await sync_to_async(api_key_rotate)(api_key=row, grace=timedelta(hours=1), created_by=None)
        async with await connect(session_url(server, "rotating", resume=1), bearer(new_raw)) as again:
            assert (await recv_json(again))["type"] == "session.resumed"
            await again.send(json.dumps({"type": "response.create"}))
            await recv_until(again, "response.done")
            await again.close()
            assert await closed(again) == 1000
