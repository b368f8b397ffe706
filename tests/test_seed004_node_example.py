"""Seed 004's Node.js example, changed only in URL and key, runs against a real Switchboard server.

The script is tests/node/seed004_example.mjs (the seed's code with its URL and key taken from the
environment). It connects with ``Authorization: Basic <key>`` to
``/api/v1/realtime/session?key=<session-id>&protocol=realtime``; the project's default deployment is
the built-in local agent, which answers the seed's "Hello!" with text and audio.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parent.parent
SCRIPT = BASE_DIR / "tests" / "node" / "seed004_example.mjs"


def node_example(*, url: str, key: str, session_id: str, timeout: float = 120) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the seed 004 example needs Node.js (apt-get install nodejs npm)")
    if not (BASE_DIR / "node_modules" / "ws" / "package.json").exists():
        pytest.fail("the npm package 'ws' is missing: run `make install` (it runs `npm ci`)")
    env = {
        **os.environ,
        "SWITCHBOARD_URL": url,
        "SWITCHBOARD_API_KEY": key,
        "SWITCHBOARD_SESSION_ID": session_id,
    }
    return subprocess.run([node, str(SCRIPT)], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=timeout)


def test_seed_004_node_example_completes_a_turn_through_switchboard(server_factory, dev_key):
    _row, raw_key = dev_key
    server = server_factory()

    result = node_example(url=server.ws_url, key=raw_key, session_id=f"node-{uuid.uuid4().hex[:12]}")

    output = result.stdout
    diagnostics = f"stdout:\n{output}\nstderr:\n{result.stderr}\nserver log:\n{server.log()[-4000:]}"
    assert result.returncode == 0, diagnostics
    lines = output.splitlines()
    assert lines[0] == "WebSocket connected", diagnostics
    created = [line for line in lines if line.startswith("Session created: ")]
    assert len(created) == 1 and created[0] != "Session created: undefined", diagnostics
    assert "Session updated" in lines, diagnostics
    # The seed asks for ['text', 'audio']: the reply's text arrives as deltas (output text, or the
    # transcript of the spoken reply) and its audio reaches the seed's playAudio.
    deltas = [line.split(" delta: ", 1)[1] for line in lines
              if line.startswith(("Text delta: ", "Audio transcript delta: "))]
    assert "Hello" in "".join(deltas), f"the reply's text deltas do not answer 'Hello!'\n{diagnostics}"
    assert "Response complete, status: completed" in lines, diagnostics
    # The events arrive in the seed's order: created, updated, deltas, then done.
    first_delta = next(i for i, line in enumerate(lines) if " delta: " in line)
    order = [lines.index(created[0]), lines.index("Session updated"), first_delta,
             lines.index("Response complete, status: completed")]
    assert order == sorted(order), diagnostics
    closed = [line for line in lines if line.startswith("Closed: ")]
    assert closed and int(closed[-1].rsplit(" ", 1)[1]) > 0, f"no audio reached playAudio\n{diagnostics}"
    assert "Error:" not in result.stderr, diagnostics
    assert raw_key not in server.log(), "the API key reached the server log"


def test_seed_004_node_example_with_a_mistyped_key_is_told_why(server_factory, dev_key):
    _row, raw_key = dev_key
    server = server_factory()
    mistyped = raw_key[:10] + ("a" if raw_key[10] != "a" else "b") + raw_key[11:]

    result = node_example(url=server.ws_url, key=mistyped, session_id=f"node-{uuid.uuid4().hex[:12]}", timeout=60)

    assert result.returncode == 0, result.stderr
    assert "Session created" not in result.stdout, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and errors[0].split()[-1] == "bad_checksum", result.stderr
    assert "Closed: 4401 " in result.stdout, result.stdout
