"""The session inspector opens a session of each dialect, produced by real clients against a real
server: realtime (the Node ``ws`` quickstart snippet), rooms (the ``socket.io-client`` snippet), tasks
and conversation (raw WebSocket clients). Owner and member see each; an outsider gets a 404. The
timeline never holds audio."""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import websockets
from django.test import Client

from accounts.models import EnvironmentKind, UsageRecord
from accounts.quickstart import QuickstartConfig, node_ws_snippet, socketio_snippet
from realtime.models import SessionEvent, SessionRecord
from tests.test_tasks_support import new_connection, run_task, task_uuid

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parent.parent
TIMEOUT = 60


def run_node(code: str, tmp_path: Path, api_key: str) -> str:
    """Run a snippet as a user would save and run it (node resolving the project's node_modules)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the Node.js snippets need it")
    (tmp_path / "node_modules").is_symlink() or (tmp_path / "node_modules").symlink_to(BASE_DIR / "node_modules")
    script = tmp_path / f"snippet-{time.monotonic_ns()}.mjs"
    script.write_text(code)
    result = subprocess.run([node, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
                            env={**os.environ, "SWITCHBOARD_API_KEY": api_key})
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def wait_for(what, check, timeout: float = 20):
    """Poll the database for what the server process writes in the background (usage, timeline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)  # the server is a child process: there is no event to await
    pytest.fail(f"{what} did not appear within {timeout} s")


async def tasks_session(server, raw_key: str) -> None:
    async with websockets.connect(f"{server.ws_url}/v1/", open_timeout=30, max_size=None) as ws:
        await new_connection(ws, raw_key)
        spoken = await run_task(ws, {"taskType": "text2speech", "taskUUID": task_uuid(), "text": "hello inspector",
                                     "voice": "sage", "sampleRate": 16000})
        assert spoken.get("audioBase64Data"), spoken


async def conversation_session(server, raw_key: str, deployment_key: str) -> None:
    url = (f"{server.ws_url}/v1/conversation?apiKey={raw_key}&deploymentKey={deployment_key}"
           "&channelKey=web-en-US")
    async with websockets.connect(url, open_timeout=30) as ws:
        json.loads(await asyncio.wait_for(ws.recv(), 30))
        await ws.send(json.dumps({"request": {"unstructured": {"text": "Book a flight"}},
                                  "userId": "0da722ad-cb3f-4938-a447-82ee53733362"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert reply["messages"][0]["text"] == "I heard you. You said: Book a flight.", reply


def page_for(user, project, session_id: str):
    client = Client()
    client.force_login(user)
    return client.get(f"/projects/{project.slug}/sessions/{session_id}/")


def test_inspector_shows_a_session_of_every_dialect(server_factory, project, owner, member, outsider, other_project,
                                                    dev_key, tmp_path):
    row, raw = dev_key
    server = server_factory()
    deployment = project.deployments.get(environment__kind=EnvironmentKind.DEVELOPMENT, is_default=True)
    config = QuickstartConfig(base_url=server.http_url, deployment_key=deployment.deployment_key)

    # realtime: the Node ws quickstart snippet, one text turn.
    out = run_node(node_ws_snippet(config), tmp_path, raw)
    assert "turn complete: completed" in out, out
    # rooms: the socket.io-client snippet; the sender hears its own broadcast.
    out = run_node(socketio_snippet(config), tmp_path, raw)
    assert "room message: Hello, room!" in out, out
    asyncio.run(tasks_session(server, raw))
    asyncio.run(conversation_session(server, raw, deployment.deployment_key))

    realtime_id = wait_for("the realtime session's end", lambda: SessionRecord.objects.filter(
        project=project, dialect="realtime", ended_at__isnull=False).values_list("session_id", flat=True).first())
    conversation_id = wait_for("the conversation session's end", lambda: SessionRecord.objects.filter(
        project=project, dialect="conversation", ended_at__isnull=False).values_list("session_id", flat=True).first())
    # Every dialect's session has a record; its usage and timeline go under the record's id.
    rooms_id = wait_for("the rooms session's end", lambda: SessionRecord.objects.filter(
        project=project, dialect="rooms", ended_at__isnull=False).values_list("session_id", flat=True).first())
    tasks_id = wait_for("the tasks session's end", lambda: SessionRecord.objects.filter(
        project=project, dialect="tasks", ended_at__isnull=False).values_list("session_id", flat=True).first())
    wait_for("the rooms usage", lambda: UsageRecord.objects.filter(project=project, session_id=rooms_id).exists())
    for session_id, last_type in ((realtime_id, "response.done"), (conversation_id, "response.done"),
                                  (rooms_id, "message"), (tasks_id, "task.text2speech")):
        wait_for(f"the timeline of {session_id}", lambda: SessionEvent.objects.filter(
            project=project, session_id=session_id, type=last_type).exists())

    realtime = page_for(owner, project, realtime_id)
    assert realtime.status_code == 200
    text = realtime.content.decode()
    assert "session.update" in text and "response.done" in text
    assert "<strong>user:</strong> Hello!" in text and "<strong>assistant:</strong>" in text
    turns = realtime.context["session"].turns
    assert len(turns) == 1 and turns[0].latency_ms is not None and turns[0].status == "completed"
    assert realtime.context["session"].close_reason == "client_closed"
    assert "text_in_tokens" in text or "session_seconds" in text  # usage of the session

    conversation = page_for(owner, project, conversation_id)
    assert conversation.status_code == 200
    assert ("assistant", "I heard you. You said: Book a flight.") in conversation.context["session"].transcript
    assert ("user", "Book a flight") in conversation.context["session"].transcript

    rooms = page_for(owner, project, rooms_id)
    assert rooms.status_code == 200 and "Hello, room!" in rooms.content.decode()
    assert rooms.context["session"].dialect == "rooms"
    assert rooms.context["session"].record is not None and rooms.context["session"].close_reason == "client_closed"

    tasks = page_for(owner, project, tasks_id)
    body = tasks.content.decode()
    assert tasks.status_code == 200 and "task.text2speech" in body and "hello inspector" in body
    assert tasks.context["session"].metrics.get("tasks:text2speech") == 1
    assert tasks.context["session"].record is not None and tasks.context["session"].close_reason == "client_closed"
    assert "characters elided" in body  # the result's base64 audio is not stored

    # No audio payload anywhere in any timeline: audio events keep only their size.
    for event in SessionEvent.objects.filter(project=project):
        assert len(json.dumps(event.data)) < 5000, (event.type, len(json.dumps(event.data)))
        if event.type in ("input_audio_buffer.append", "response.output_audio.delta"):
            assert set(event.data) == {"audio_bytes"}

    for session_id in (realtime_id, conversation_id, rooms_id, tasks_id):
        assert page_for(member, project, session_id).status_code == 200
        assert page_for(outsider, project, session_id).status_code == 404
        # The outsider's own project does not reach it either.
        assert page_for(outsider, other_project, session_id).status_code == 404
    assert page_for(owner, project, "sess_never_existed").status_code == 404

    listing = Client()
    listing.force_login(owner)
    sessions_page = listing.get(f"/projects/{project.slug}/sessions/").content.decode()
    # Each session is listed once (its record), and opens from the Sessions tab.
    listed = re.findall(rf'href="/projects/{re.escape(project.slug)}/sessions/([^"/]+)/"', sessions_page)
    assert sorted(listed) == sorted((realtime_id, conversation_id, rooms_id, tasks_id)), listed
    assert set(SessionEvent.objects.filter(project=project).values_list("session_id", flat=True)) == set(listed)
