"""The tasks dialect (seed 001) against real daphne processes sharing PostgreSQL and Redis: a raw
WebSocket client following the seed step by step, the built-in task types, model-backed types with
and without a task upstream, and the 2-minute redelivery buffer across a killed process."""
from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import uuid
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import redis.asyncio
from asgiref.sync import sync_to_async
from PIL import Image

from accounts.models import ApiKey, EnvironmentKind, UsageRecord
from accounts.services import api_key_create, api_key_revoke
from tests.test_tasks_support import (
    TaskUpstream,
    b64,
    connect,
    expect_closed_with_error,
    new_connection,
    png_bytes,
    prompt_of,
    recv_json,
    run_task,
    task_uuid,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _set_task_upstream(project, url: str) -> None:
    deployment = project.deployments.get(environment__kind=EnvironmentKind.DEVELOPMENT, is_default=True)
    deployment.task_upstream_url = url
    deployment.save(update_fields=["task_upstream_url"])


set_task_upstream = sync_to_async(_set_task_upstream)


@sync_to_async
def usage(key: ApiKey) -> dict[str, float]:
    totals: dict[str, float] = {}
    for row in UsageRecord.objects.filter(api_key=key, dialect="tasks"):
        totals[row.metric] = totals.get(row.metric, 0) + float(row.quantity)
    return totals


async def wait_for_disconnect(server, path="/v1/") -> None:
    """daphne logs the disconnect; outside the process there is no other signal to await."""
    async with asyncio.timeout(15):
        while f'"WSDISCONNECT {path}"' not in server.log():
            await asyncio.sleep(0.05)


async def test_seed_001_step_by_step_with_every_built_in_task(server_factory, dev_key):
    row, raw = dev_key
    server = server_factory()
    async with await connect(server) as ws:
        # Step 1: the first message authenticates; the answer names the session.
        answer = await new_connection(ws, raw)
        session_uuid = answer["newConnectionSessionUUID"]["connectionSessionUUID"]
        assert uuid.UUID(session_uuid).version == 4

        # imageUpload: stored, with an id and a URL that serves the very bytes.
        original = png_bytes(40, 30)
        upload = await run_task(ws, {"taskType": "imageUpload", "taskUUID": task_uuid(),
                                     "image": "data:image/png;base64," + b64(original)})
        assert upload["taskType"] == "imageUpload" and (upload["width"], upload["height"]) == (40, 30)
        async with httpx.AsyncClient() as http:
            fetched = await http.get(upload["imageURL"])
        assert fetched.status_code == 200 and fetched.content == original
        assert fetched.headers["content-type"] == "image/png"

        # upscale x2 of the uploaded image (by its id), and x4 of base64 input, as JPEG.
        twice = await run_task(ws, {"taskType": "upscale", "taskUUID": task_uuid(), "inputImage": upload["imageUUID"],
                                    "upscaleFactor": 2})
        async with httpx.AsyncClient() as http:
            image = Image.open(io.BytesIO((await http.get(twice["imageURL"])).content))
        assert image.size == (80, 60) and image.format == "PNG"
        four = await run_task(ws, {"taskType": "upscale", "taskUUID": task_uuid(), "inputImage": b64(original),
                                   "upscaleFactor": 4, "outputFormat": "JPG", "outputType": "base64Data"})
        image = Image.open(io.BytesIO(__import__("base64").b64decode(four["imageBase64Data"])))
        assert image.size == (160, 120) and image.format == "JPEG"

        # text2speech, then speech2text of what it said.
        spoken = await run_task(ws, {"taskType": "text2speech", "taskUUID": task_uuid(),
                                     "text": "what is the weather in paris", "voice": "sage", "sampleRate": 16000})
        with wave.open(io.BytesIO(__import__("base64").b64decode(spoken["audioBase64Data"]))) as wav:
            assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (16000, 2, 1)
            assert wav.getnframes() / 16000 > 1.0
        heard = await run_task(ws, {"taskType": "speech2text", "taskUUID": task_uuid(),
                                    "audio": spoken["audioBase64Data"]})
        assert "weather" in heard["text"] and "paris" in heard["text"], heard

        # A model-backed type with no task upstream configured: an error naming what is missing.
        missing = await run_task(ws, {"taskType": "text2img", "taskUUID": task_uuid(), "positivePrompt": "a cat"})
        assert missing["code"] == "task_upstream_not_configured"
        assert "task_upstream_url" in missing["message"] and missing["taskType"] == "text2img"

        # Bad tasks: each error carries the taskUUID and a code; the connection stays usable.
        unknown = await run_task(ws, {"taskType": "teleport", "taskUUID": task_uuid()})
        assert unknown["code"] == "unknown_task_type"
        bad_image = await run_task(ws, {"taskType": "imageUpload", "taskUUID": task_uuid(), "image": b64(b"not an image")})
        assert (bad_image["code"], bad_image["parameter"]) == ("invalid_image", "image")
        bad_factor = await run_task(ws, {"taskType": "upscale", "taskUUID": task_uuid(), "inputImage": upload["imageUUID"],
                                         "upscaleFactor": 3})
        assert (bad_factor["code"], bad_factor["parameter"]) == ("invalid_parameter", "upscaleFactor")
        await ws.send(json.dumps({"taskType": "imageUpload", "taskUUID": "not-a-uuid"}))
        assert (await recv_json(ws))["errors"][0]["code"] == "invalid_task_uuid"
        await ws.send("{not json")
        assert (await recv_json(ws))["errors"][0]["code"] == "invalid_json"

        # An array of tasks: one response each.
        batch = [{"taskType": "ping", "taskUUID": task_uuid()} for _ in range(3)]
        await ws.send(json.dumps(batch))
        got = {(await recv_json(ws))["data"][0]["taskUUID"] for _ in batch}
        assert got == {task["taskUUID"] for task in batch}

    # Usage per task type in the ledger, for this key, written before each result was sent; failed tasks
    # and pings (heartbeats) are not billed.
    assert await usage(row) == {"tasks:imageUpload": 1, "tasks:upscale": 2, "tasks:text2speech": 1,
                                "tasks:speech2text": 1}
    assert raw not in server.log()


async def test_first_message_rules_and_refusals(server_factory, project, owner, dev_key, other_key):
    _, raw = dev_key
    _, other_raw = other_key
    server = server_factory(env={"TASKS_AUTH_TIMEOUT_SECONDS": "1"})
    async with await connect(server) as ws:
        await ws.send(json.dumps({"taskType": "ping", "taskUUID": task_uuid()}))
        error, code = await expect_closed_with_error(ws)
    assert (error["code"], code) == ("authentication_required", 4401)

    async with await connect(server) as ws:
        error, code = await expect_closed_with_error(ws)  # says nothing at all
    assert (error["code"], code) == ("authentication_timeout", 4408)

    mistyped = raw[:10] + ("a" if raw[10] != "a" else "b") + raw[11:]
    async with await connect(server) as ws:
        await ws.send(json.dumps({"newConnection": {"apiKey": mistyped}}))
        error, code = await expect_closed_with_error(ws)
    assert (error["code"], code) == ("bad_checksum", 4401)

    async with await connect(server) as ws:
        await ws.send(json.dumps({"newConnection": {"apiKey": raw, "connectionSessionUUID": str(uuid.uuid4())}}))
        error, code = await expect_closed_with_error(ws)
    assert (error["code"], code) == ("session_expired", 4410)

    # A session belongs to its key: another project's key hears what an unknown id hears (ids reveal
    # nothing across tenants); another key of the project is refused.
    async with await connect(server) as ws:
        session_uuid = (await new_connection(ws, raw))["newConnectionSessionUUID"]["connectionSessionUUID"]
    env = await sync_to_async(project.environments.get)(kind=EnvironmentKind.DEVELOPMENT)
    _, sibling_raw = await sync_to_async(api_key_create)(project=project, environment=env, name="sibling",
                                                         created_by=owner)
    for foreign, expected in ((other_raw, ("session_expired", 4410)), (sibling_raw, ("session_forbidden", 4403))):
        async with await connect(server) as ws:
            await ws.send(json.dumps({"newConnection": {"apiKey": foreign, "connectionSessionUUID": session_uuid}}))
            error, code = await expect_closed_with_error(ws)
        assert (error["code"], code) == expected


async def test_results_wait_in_redis_and_reach_a_second_process_after_the_first_is_killed(
        server_factory, project, dev_key, other_key):
    row, raw = dev_key
    async with TaskUpstream() as upstream:
        await set_task_upstream(project, upstream.url)
        first, second = server_factory(), server_factory()
        ws = await connect(first)
        session_uuid = (await new_connection(ws, raw))["newConnectionSessionUUID"]["connectionSessionUUID"]
        tasks = [{"taskType": "text2img", "taskUUID": task_uuid(), "positivePrompt": f"picture {n}"} for n in range(3)]
        await ws.send(json.dumps(tasks))
        arrived = {(await upstream.next_task())["taskUUID"] for _ in tasks}
        assert arrived == {task["taskUUID"] for task in tasks}

        # The client goes away before any result exists.
        await ws.close()
        await wait_for_disconnect(first)

        # Results come back one by one; each is written to Redis by the first process.
        store = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
        outbox = f"{os.environ.get('REDIS_PREFIX', 'switchboard')}:tasks:outbox:{session_uuid}"
        try:
            for count, task in enumerate(tasks, start=1):
                upstream.release(task["taskUUID"])
                async with asyncio.timeout(15):
                    while await store.llen(outbox) < count:
                        await asyncio.sleep(0.05)  # another process's write; no event reaches the test
        finally:
            await store.aclose()

        first.kill()

        async with await connect(second) as again:
            answer = await new_connection(again, raw, session_uuid)
            assert answer == {"newConnectionSessionUUID": {"connectionSessionUUID": session_uuid}}
            delivered = [(await recv_json(again))["data"][0] for _ in tasks]
            assert [item["taskUUID"] for item in delivered] == [task["taskUUID"] for task in tasks]
            assert [prompt_of(item) for item in delivered] == ["picture 0", "picture 1", "picture 2"]
            assert all(item["taskType"] == "text2img" and ".png?" in item["imageURL"] for item in delivered)
            # The resumed session goes on working on the second process.
            pong = await run_task(again, {"taskType": "ping", "taskUUID": task_uuid()})
            assert pong["pong"] is True

        # Delivered once: a later resume finds nothing left to deliver.
        async with await connect(second) as third:
            await new_connection(third, raw, session_uuid)
            pong = await run_task(third, {"taskType": "ping", "taskUUID": task_uuid()})
            assert pong["pong"] is True

    # The first process billed its three tasks before it died.
    assert (await usage(row)).get("tasks:text2img") == 3


async def test_a_result_finished_while_the_client_is_on_another_process_is_pushed_there(
        server_factory, project, dev_key):
    _, raw = dev_key
    async with TaskUpstream() as upstream:
        await set_task_upstream(project, upstream.url)
        first, second = server_factory(), server_factory()
        ws = await connect(first)
        session_uuid = (await new_connection(ws, raw))["newConnectionSessionUUID"]["connectionSessionUUID"]
        task = {"taskType": "img2img", "taskUUID": task_uuid(), "positivePrompt": "late"}
        await ws.send(json.dumps(task))
        await upstream.next_task()
        await ws.close()
        await wait_for_disconnect(first)
        async with await connect(second) as again:
            await new_connection(again, raw, session_uuid)
            upstream.release(task["taskUUID"])  # finishes in the first process, the client is on the second
            result = (await recv_json(again))["data"][0]
        assert (result["taskUUID"], prompt_of(result)) == (task["taskUUID"], "late")


class _HttpTaskUpstream(BaseHTTPRequestHandler):
    """An HTTP task service: text2img succeeds, image2text is refused, inpainting fails with HTTP 500."""

    def do_POST(self):
        (task,) = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append(task)
        if task["taskType"] == "inpainting":
            status, body = 500, {"oops": True}
        elif task["taskType"] == "image2text":
            status, body = 400, {"errors": [{"code": "unsupportedModel", "message": "no such model",
                                             "taskUUID": task["taskUUID"]}]}
        else:
            status, body = 200, {"data": [{"taskType": task["taskType"], "taskUUID": task["taskUUID"],
                                           "imageURL": "https://images.example/cat.png",
                                           "secret": "an internal service's data"}]}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


async def test_model_backed_tasks_over_an_http_task_upstream(server_factory, project, dev_key):
    row, raw = dev_key
    http_upstream = ThreadingHTTPServer(("127.0.0.1", 0), _HttpTaskUpstream)
    http_upstream.received = []
    thread = threading.Thread(target=http_upstream.serve_forever, name="http-task-upstream", daemon=True)
    thread.start()
    try:
        await set_task_upstream(project, f"http://127.0.0.1:{http_upstream.server_address[1]}/run")
        server = server_factory()
        async with await connect(server) as ws:
            await new_connection(ws, raw)
            made = await run_task(ws, {"taskType": "text2img", "taskUUID": task_uuid(), "positivePrompt": "a cat",
                                       "model": "civitai:1@1", "width": 512, "height": 512})
            assert made["imageURL"] == "https://images.example/cat.png" and made["taskType"] == "text2img"
            assert "secret" not in made  # only the documented result fields come back
            refused = await run_task(ws, {"taskType": "image2text", "taskUUID": task_uuid(), "inputImage": "x"})
            assert refused["code"] == "task_upstream_error" and "no such model" in refused["message"]
            failed = await run_task(ws, {"taskType": "inpainting", "taskUUID": task_uuid()})
            assert failed["code"] == "task_upstream_failed" and "500" in failed["message"]
        # The task reached the upstream as sent (its parameters untouched).
        assert http_upstream.received[0]["positivePrompt"] == "a cat" and http_upstream.received[0]["width"] == 512
    finally:
        http_upstream.shutdown()
        thread.join()
    # Billed before the result was sent; refused and failed tasks are not billed.
    assert await usage(row) == {"tasks:text2img": 1}


async def test_revoking_the_key_ends_its_task_connections(server_factory, dev_key):
    row, raw = dev_key
    server = server_factory()
    async with await connect(server) as ws:
        await new_connection(ws, raw)
        assert (await run_task(ws, {"taskType": "ping", "taskUUID": task_uuid()}))["pong"] is True
        await sync_to_async(api_key_revoke)(api_key=row)
        error, code = await expect_closed_with_error(ws)
    assert (error["code"], code) == ("key_revoked", 4401)
