"""Seed 004's Node.js example runs against a real Switchboard server and stops where its author meant.

The script is tests/node/seed004_example.mjs: the seed's code, changed only in its URL (and read its
key from INWORLD_API_KEY, as the seed does). ``node --require tests/node/seed004_play_audio.cjs``
supplies the ``playAudio`` the seed leaves to the app. The project's default deployment is the built-in
local agent, which answers the seed's "Hello!" with text and audio.

The example answers every ``conversation.item.done`` with ``response.create``. Its author meant one
reply to "Hello!": the reply's own item must not come back as ``conversation.item.done``, or each
reply would ask for the next one without end. The example never closes its socket; it ends when the
server closes an idle session (no client event for REALTIME_IDLE_TIMEOUT_SECONDS), which a client
still asking for responses never is.
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
PLAY_AUDIO = BASE_DIR / "tests" / "node" / "seed004_play_audio.cjs"
IDLE_SECONDS = 6  # long enough for the turn, short enough for three runs


def node_example(*, url: str, key: str, session_id: str | None, timeout: float = 90) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the seed 004 example needs Node.js (apt-get install nodejs npm)")
    if not (BASE_DIR / "node_modules" / "ws" / "package.json").exists():
        pytest.fail("the npm package 'ws' is missing: run `make install` (it runs `npm ci`)")
    env = {**os.environ, "SWITCHBOARD_URL": url, "INWORLD_API_KEY": key}
    env.pop("SWITCHBOARD_SESSION_ID", None)
    if session_id is not None:
        env["SWITCHBOARD_SESSION_ID"] = session_id
    # A run that does not end by itself fails here (subprocess.TimeoutExpired), and its process is killed.
    return subprocess.run([node, "--require", str(PLAY_AUDIO), str(SCRIPT)], cwd=BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_seed_004_node_example_runs_three_times_and_each_run_stops_after_one_reply(server_factory, dev_key):
    _row, raw_key = dev_key
    server = server_factory(env={"REALTIME_IDLE_TIMEOUT_SECONDS": str(IDLE_SECONDS)})

    for run in range(3):
        # session_id=None: the example's own constant 'your-session-id', every run (a plain connect
        # always starts a fresh session, so the seed's code works any number of times).
        result = node_example(url=server.ws_url, key=raw_key, session_id=None)

        output = result.stdout
        diagnostics = f"run {run}\nstdout:\n{output}\nstderr:\n{result.stderr}\nserver log:\n{server.log()[-4000:]}"
        assert result.returncode == 0, diagnostics
        lines = output.splitlines()
        assert lines[0] == "WebSocket connected", diagnostics
        created = [line for line in lines if line.startswith("Session created: ")]
        assert len(created) == 1 and created[0] != "Session created: undefined", diagnostics
        assert "Session updated" in lines, diagnostics
        # Exactly one reply: to the user's "Hello!", the one item the client added.
        assert lines.count("Conversation item done") == 1, diagnostics
        assert len([line for line in lines if line.startswith("Response created: ")]) == 1, diagnostics
        assert lines.count("Response complete, status: completed") == 1, diagnostics
        # The seed asks for ['text', 'audio']: the reply comes as output text, as a spoken transcript,
        # and as audio for the app's playAudio.
        text = "".join(line.split(": ", 1)[1] for line in lines if line.startswith("Text delta: "))
        transcript = "".join(line.split(": ", 1)[1] for line in lines if line.startswith("Audio transcript delta: "))
        assert "Hello" in text and "Hello" in transcript, diagnostics
        played = [line for line in lines if line.startswith("Exit: ")]
        assert len(played) == 1 and int(played[0].rsplit(" ", 1)[1]) > 0, f"no audio reached playAudio\n{diagnostics}"
        # In the seed's order: created, updated, the reply's deltas, then done.
        first_delta = next(i for i, line in enumerate(lines) if " delta: " in line)
        order = [lines.index(created[0]), lines.index("Session updated"), first_delta,
                 lines.index("Response complete, status: completed")]
        assert order == sorted(order), diagnostics
        # The only error is the server ending the idle session after the turn.
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert [line.rsplit(" ", 1)[1] for line in errors] == ["idle_timeout"], diagnostics
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
