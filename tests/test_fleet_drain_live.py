"""SIGTERM drains a gateway process: every client is told why (an ``error`` event
``server_shutting_down`` saying whether it can resume elsewhere, then close 1012), all the audio it
relayed reaches the ledger (0 s lost), every session record is closed, and the process exits within
its grace period. The other process keeps serving, and the balancer stops sending new sessions to
the draining one."""
import asyncio
import base64
import json
import time
from decimal import Decimal

import pytest
import websockets

from tests.support.streams import OPEN_TIMEOUT, open_session

pytestmark = [pytest.mark.live, pytest.mark.timeout(240), pytest.mark.xdist_group("long-waits")]

SESSIONS = 6
CHUNKS = 25  # 100 ms of PCM16 24 kHz each: 2.5 s of audio per session
CHUNK = base64.b64encode(b"\x00\x01" * 2400).decode()
GRACE_SECONDS = 10


async def stream_audio(ws) -> None:
    """Send CHUNKS appends and wait for the echo of each: the gateway relayed (and metered) them all."""
    for number in range(CHUNKS):
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "event_id": f"a{number}", "audio": CHUNK}))
    echoed = 0
    async with asyncio.timeout(OPEN_TIMEOUT):
        while echoed < CHUNKS:
            if json.loads(await ws.recv()).get("type") == "input_audio_buffer.append":
                echoed += 1


async def told(ws) -> tuple[list[dict], int | None]:
    errors = []
    try:
        async with asyncio.timeout(GRACE_SECONDS + 5):
            async for raw in ws:
                event = json.loads(raw)
                if event.get("type") == "error":
                    errors.append(event["error"])
    except websockets.ConnectionClosed:
        pass
    return errors, ws.close_code


async def tasks_told(ws) -> tuple[list[dict], int | None]:
    errors = []
    try:
        async with asyncio.timeout(GRACE_SECONDS + 5):
            async for raw in ws:
                errors.extend(json.loads(raw).get("errors", []))
    except websockets.ConnectionClosed:
        pass
    return errors, ws.close_code


async def conversation_told(ws) -> tuple[list[dict], int | None]:
    errors = []
    try:
        async with asyncio.timeout(GRACE_SECONDS + 5):
            async for raw in ws:
                event = json.loads(raw)
                if "error" in event:
                    errors.append(event["error"])
    except websockets.ConnectionClosed:
        pass
    return errors, ws.close_code


async def test_sigterm_drains_tells_clients_and_loses_no_usage(cluster_factory):
    fleet = cluster_factory(gateways=2, env={"DRAIN_GRACE_SECONDS": str(GRACE_SECONDS)})
    key = fleet.create_key()
    fleet.custom_deployment(fleet.echo_upstream().ws_url)
    draining, other = fleet.gateways
    sessions = [await open_session(draining.ws_url, key) for _ in range(SESSIONS)]
    assert all(first["type"] == "session.created" for _, first in sessions)
    await asyncio.gather(*(stream_audio(ws) for ws, _ in sessions))
    # A tasks-dialect client (seed 001) on the same process.
    tasks_ws = await websockets.connect(f"{draining.ws_url}/v1/", open_timeout=OPEN_TIMEOUT)
    await tasks_ws.send(json.dumps({"newConnection": {"apiKey": key}}))
    assert "newConnectionSessionUUID" in json.loads(await asyncio.wait_for(tasks_ws.recv(), OPEN_TIMEOUT))
    # And a conversation-dialect client (seed 002).
    deployment_key = fleet.postgres.sql("select deployment_key from accounts_deployment where name = 'Echo dep'")[0][0]
    conversation_ws = await websockets.connect(
        f"{draining.ws_url}/v1/conversation?apiKey={key}&deploymentKey={deployment_key}&channelKey=web-en-US",
        open_timeout=OPEN_TIMEOUT)
    assert "conversationId" in json.loads(await asyncio.wait_for(conversation_ws.recv(), OPEN_TIMEOUT))

    started = time.monotonic()
    draining.signal(15)
    tasks_outcome = asyncio.create_task(tasks_told(tasks_ws))
    conversation_outcome = asyncio.create_task(conversation_told(conversation_ws))
    outcomes = await asyncio.gather(*(told(ws) for ws, _ in sessions))
    for errors, close_code in outcomes:
        assert close_code == 1012, outcomes
        assert [error["code"] for error in errors] == ["server_shutting_down"], errors
        assert "cannot be resumed elsewhere" in errors[0]["message"]
    tasks_errors, tasks_close = await tasks_outcome
    assert tasks_close == 1012 and [error["code"] for error in tasks_errors] == ["server_shutting_down"]
    assert "connectionSessionUUID" in tasks_errors[0]["message"]
    conversation_errors, conversation_close = await conversation_outcome
    assert conversation_close == 1012 and [e["code"] for e in conversation_errors] == ["server_shutting_down"]
    assert "can be resumed elsewhere" in conversation_errors[0]["message"]
    exit_code = await asyncio.to_thread(draining.process.wait, GRACE_SECONDS + 10)
    assert time.monotonic() - started < GRACE_SECONDS + 5
    assert exit_code in (0, -15), exit_code

    # Every record closed with the reason; every relayed second of audio in the ledger.
    records = fleet.postgres.sql("select session_id, dialect, ended_at is not null, close_reason "
                                 "from realtime_sessionrecord")
    # Every dialect's connection is a recorded session (the tasks connection too), ended with the reason.
    assert sorted(dialect for _, dialect, _, _ in records) == ["conversation"] + ["realtime"] * SESSIONS + ["tasks"]
    assert all(ended and reason == "server_shutting_down" for _, _, ended, reason in records), [r for r in records if r[3] != "server_shutting_down"]
    session_ids = [session_id for session_id, dialect, _, _ in records if dialect == "realtime"]
    ledger = fleet.postgres.sql(
        "select session_id, sum(quantity) from accounts_usagerecord where metric = 'audio_in_seconds' "
        "and session_id = any(%s) group by session_id", (session_ids,))
    assert dict(ledger) == {session_id: Decimal("2.500") for session_id in session_ids}

    # The fleet still serves, through the balancer, on the other process.
    ws, first = await open_session(fleet.entry.ws_url, key)
    assert first["type"] == "session.created", first
    await ws.close()
    assert "Traceback" not in draining.log()
    assert other.running
