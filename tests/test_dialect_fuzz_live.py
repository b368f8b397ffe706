"""Property-based fuzzing (Hypothesis) of each dialect's message parsing, through the whole ASGI
application (project.asgi on a real server process, so it holds whatever the dialects' internals
become): every generated message gets a coded answer, and the session stays usable (a known-good
message sent after it is answered as usual). Bounded: a fixed number of examples per dialect, each
read with a timeout, so the module takes well under a minute."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_conversation_live import deployment_key

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

READ_TIMEOUT = 10
FUZZ = settings(max_examples=30, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Generous limits: the fuzz is about parsing, not about the rate limiter or the per-key cap.
ENV = {"REALTIME_EVENTS_PER_SECOND": "10000", "REALTIME_EVENT_BURST": "10000", "REALTIME_MAX_SESSIONS_PER_KEY": "1000",
       "ROOMS_MESSAGES_PER_SECOND": "10000", "ROOMS_MESSAGE_BURST": "10000"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
junk_text = st.text(max_size=80)  # mostly not JSON at all


def frames(objects) -> st.SearchStrategy[str]:
    """Text frames: objects shaped like the dialect's messages, any JSON at all, or no JSON."""
    return st.one_of(objects.map(json.dumps), json_values.map(json.dumps), junk_text)


def run(coroutine):
    asyncio.run(asyncio.wait_for(coroutine, 120))


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), READ_TIMEOUT)


class _Server:
    """The server's URL only: a falsifying example's report stays short (no process environment)."""

    def __init__(self, ws_url: str):
        self.ws_url = ws_url

    def __repr__(self):
        return f"<server {self.ws_url}>"


@pytest.fixture
def server(server_factory):
    return _Server(server_factory(env=ENV).ws_url)


# --- tasks (seed 001) --------------------------------------------------------------------------------

task_like = st.fixed_dictionaries(
    {"taskType": st.one_of(st.sampled_from(["ping", "upscale", "imageUpload", "speech2text", "text2img", "image2text",
                                             "imageUpscale"]), st.text(max_size=12), json_values)},
    optional={"taskUUID": st.one_of(st.uuids().map(str), st.text(max_size=40), json_values),
              "inputImage": st.one_of(st.text(max_size=40), json_values), "image": st.text(max_size=40),
              "audio": st.text(max_size=40), "upscaleFactor": json_values, "outputType": json_values,
              "deploymentKey": json_values, "newConnection": json_values},
)
task_frames = frames(st.one_of(task_like, st.lists(task_like, min_size=0, max_size=3)))


def coded_task_answer(message: dict) -> bool:
    items = message.get("data") or message.get("errors")
    if not isinstance(items, list) or not items:
        return False
    return all(isinstance(item, dict) and ("errors" not in message or isinstance(item.get("code"), str))
               for item in items)


@FUZZ
@given(sent=st.lists(task_frames, min_size=1, max_size=4))
def test_tasks_fuzz(server, dev_key, sent):
    async def session():
        async with websockets.connect(f"{server.ws_url}/v1/", max_size=None) as ws:
            await ws.send(json.dumps({"newConnection": {"apiKey": dev_key[1]}}))
            assert "newConnectionSessionUUID" in json.loads(await recv(ws))
            for frame in sent:
                await ws.send(frame)
                sentinel = str(uuid.uuid4())
                await ws.send(json.dumps({"taskType": "ping", "taskUUID": sentinel}))
                answered = pong = False
                while not (answered and pong):
                    message = json.loads(await recv(ws))
                    assert coded_task_answer(message), (frame, message)
                    if any(item.get("taskUUID") == sentinel and item.get("pong") for item in message.get("data", [])):
                        pong = True
                    else:
                        answered = True
    run(session())


# --- conversation (seed 002) -------------------------------------------------------------------------

conversation_like = st.fixed_dictionaries({}, optional={
    "request": st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "unstructured": st.one_of(json_values, st.fixed_dictionaries({}, optional={"text": st.one_of(st.text(max_size=60), json_values)})),
        "structured": json_values})),
    "userId": st.one_of(st.uuids().map(str), st.text(max_size=20), json_values),
})


@FUZZ
@given(sent=st.lists(frames(conversation_like), min_size=1, max_size=4))
def test_conversation_fuzz(server, project, dev_key, sent):
    async def session():
        key = await deployment_key(project)
        url = f"{server.ws_url}/v1/conversation?apiKey={dev_key[1]}&deploymentKey={key}&channelKey=web-en-US"
        async with websockets.connect(url) as ws:
            conversation_id = json.loads(await recv(ws))["conversationId"]
            for n, frame in enumerate(sent):
                await ws.send(frame)
                await ws.send(json.dumps({"request": {"unstructured": {"text": f"sentinel {n}"}},
                                          "userId": "0da722ad-cb3f-4938-a447-82ee53733362"}))
                answered = echoed = False
                while not (answered and echoed):
                    message = json.loads(await recv(ws))
                    assert message.get("conversationId") == conversation_id, (frame, message)
                    if "error" in message:
                        assert isinstance(message["error"].get("code"), str), (frame, message)
                        answered = True
                    else:
                        texts = [m["text"] for m in message["messages"]]
                        if any(f"sentinel {n}" in text for text in texts):
                            echoed = True
                        else:
                            answered = True
    run(session())


# --- realtime (seed 004) -----------------------------------------------------------------------------

realtime_like = st.fixed_dictionaries(
    # Not the types that start a whole spoken response (response.create, input_audio_buffer.commit) or
    # that are answered by silence when valid (input_audio_buffer.append): an answer must follow.
    {"type": st.one_of(st.sampled_from(["session.update", "conversation.item.create", "conversation.item.delete",
                                        "conversation.item.retrieve", "conversation.item.truncate",
                                        "input_audio_buffer.clear", "response.cancel", "bogus.event"]),
                       st.text(max_size=20), json_values)},
    optional={"event_id": json_values, "session": json_values, "item": json_values, "item_id": json_values,
              "audio": json_values},
)


@FUZZ
@given(sent=st.lists(frames(realtime_like), min_size=1, max_size=4))
def test_realtime_fuzz(server, dev_key, sent):
    async def session():
        async with websockets.connect(f"{server.ws_url}/v1/realtime", max_size=None,
                                      additional_headers={"Authorization": f"Bearer {dev_key[1]}"}) as ws:
            assert json.loads(await recv(ws))["type"] == "session.created"
            for n, frame in enumerate(sent):
                await ws.send(frame)
                await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"sentinel {n}"}]}}))
                answered = echoed = False
                while not (answered and echoed):
                    event = json.loads(await recv(ws))
                    assert isinstance(event.get("type"), str), (frame, event)
                    if event["type"] == "error":
                        assert isinstance(event["error"].get("code"), str), (frame, event)
                    if event["type"] == "conversation.item.added" and f"sentinel {n}" in json.dumps(event):
                        echoed = True
                    elif not echoed:
                        answered = True
    run(session())


# --- rooms (seed 003, Socket.IO spoken by hand over the Engine.IO WebSocket transport) ---------------

async def socketio_event(ws) -> tuple[str, list]:
    """The next Socket.IO event (name, arguments), answering Engine.IO pings on the way."""
    while True:
        packet = await recv(ws)
        if packet == "2":
            await ws.send("3")
        elif packet.startswith("42"):
            name, *args = json.loads(packet[2:])
            return name, args


@FUZZ
@given(sent=st.lists(st.lists(json_values, max_size=3), min_size=1, max_size=4))
def test_rooms_fuzz(server, dev_key, sent):
    """Every `message` emit, with any arguments (none, several, any JSON), is broadcast back or answered
    with a coded `error`; the connection stays and the next good message is broadcast."""
    async def session():
        async with websockets.connect(f"{server.ws_url}/socket.io/?EIO=4&transport=websocket") as ws:
            assert (await recv(ws)).startswith("0")
            await ws.send("40" + json.dumps({"apiKey": dev_key[1]}))
            assert (await recv(ws)).startswith("40")
            for n, args in enumerate(sent):
                await ws.send("42" + json.dumps(["message", *args]))
                await ws.send("42" + json.dumps(["message", f"sentinel {n}"]))
                answered = echoed = False
                while not (answered and echoed):
                    name, received = await socketio_event(ws)
                    if name == "error":
                        assert isinstance(received[0].get("code"), str), (args, received)
                        answered = True
                    elif name == "message" and received == [f"sentinel {n}"]:
                        echoed = True
                    else:
                        assert name == "message", (args, name, received)
                        answered = True
    run(session())
