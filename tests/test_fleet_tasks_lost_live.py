"""Tasks in flight on a gateway process that is SIGKILLed come back to the client as errors when it
resumes its session (connectionSessionUUID) on another process: a ``task_lost`` error per task, with
its taskUUID and taskType, never silence."""
import asyncio
import json
import uuid

import pytest
import websockets

from tests.support.cluster import free_port

pytestmark = [pytest.mark.live, pytest.mark.timeout(180), pytest.mark.xdist_group("long-waits")]


async def black_hole():
    """An HTTP task upstream that accepts and never answers: tasks sent to it stay in flight."""
    held = []

    async def swallow(reader, writer):
        held.append(writer)
        await reader.read()

    port = free_port()
    server = await asyncio.start_server(swallow, "127.0.0.1", port)
    return server, port


async def recv(ws, timeout=15):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def test_tasks_of_a_killed_process_come_back_as_errors_on_resume(cluster_factory):
    server, port = await black_hole()
    fleet = cluster_factory(gateways=2, haproxy=False)
    key = fleet.create_key()
    fleet.custom_deployment(fleet.echo_upstream().ws_url, task_upstream_url=f"http://127.0.0.1:{port}/tasks")
    first, second = fleet.gateways

    ws = await websockets.connect(f"{first.ws_url}/v1/", open_timeout=15)
    await ws.send(json.dumps({"newConnection": {"apiKey": key}}))
    session_uuid = (await recv(ws))["newConnectionSessionUUID"]["connectionSessionUUID"]
    tasks = [{"taskType": "text2img", "taskUUID": str(uuid.uuid4()), "positivePrompt": f"picture {n}"} for n in range(3)]
    await ws.send(json.dumps(tasks))
    async with asyncio.timeout(15):
        while not await _inflight_recorded(fleet, session_uuid, 3):
            await asyncio.sleep(0.1)

    first.kill()
    again = await websockets.connect(f"{second.ws_url}/v1/", open_timeout=15)
    await again.send(json.dumps({"newConnection": {"apiKey": key, "connectionSessionUUID": session_uuid}}))
    assert (await recv(again))["newConnectionSessionUUID"]["connectionSessionUUID"] == session_uuid
    errors = []
    async with asyncio.timeout(10):
        while len(errors) < len(tasks):
            errors.extend((await recv(again))["errors"])
    assert sorted(error["taskUUID"] for error in errors) == sorted(task["taskUUID"] for task in tasks)
    assert {(error["code"], error["taskType"]) for error in errors} == {("task_lost", "text2img")}
    # The session goes on working on the survivor.
    await again.send(json.dumps({"taskType": "ping", "taskUUID": str(uuid.uuid4())}))
    assert (await recv(again))["data"][0]["pong"] is True
    await again.close()
    server.close()


async def _inflight_recorded(fleet, session_uuid: str, count: int) -> bool:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(fleet.redis.url())
    try:
        return await client.hlen(f"{fleet.prefix}:tasks:inflight:{session_uuid}") >= count
    finally:
        await client.aclose()
