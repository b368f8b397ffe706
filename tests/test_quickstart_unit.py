"""The quickstart snippets (accounts.quickstart): filled in with the server, deployment and key they
are given, valid code in their language, and the console's settings carried into them."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from accounts.quickstart import KEY_PLACEHOLDER, QuickstartConfig, session_from_console, snippets_for

pytestmark = pytest.mark.unit

KEY = "sb_dev_" + "a" * 38


def test_every_snippet_is_filled_in_and_is_valid_code(tmp_path):
    config = QuickstartConfig(base_url="https://voice.example.com", deployment_key="dep_123", api_key=KEY)
    snippets = {s.slug: s for s in snippets_for(config)}
    assert list(snippets) == ["python", "curl-token", "browser", "node-ws", "socketio"]
    compile(snippets["python"].code, "quickstart.py", "exec")
    assert 'websocket_base_url="wss://voice.example.com/v1"' in snippets["python"].code
    assert '"deployment": \'dep_123\'' in snippets["python"].code and KEY in snippets["python"].code
    assert "wss://voice.example.com/api/v1/realtime/session?key=" in snippets["node-ws"].code
    assert "https://voice.example.com/api/v1/tokens" in snippets["curl-token"].code
    assert "wss://voice.example.com/v1/realtime?deployment=dep_123" in snippets["browser"].code
    assert KEY not in snippets["browser"].code  # a browser holds a token, never the key
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the JavaScript snippets are checked with it")
    for slug in ("browser", "node-ws", "socketio"):
        path = tmp_path / f"{slug}.mjs"
        path.write_text(snippets[slug].code)
        check = subprocess.run([node, "--check", str(path)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (slug, check.stderr)


def test_without_a_key_the_placeholder_is_shown():
    for snippet in snippets_for(QuickstartConfig(base_url="http://127.0.0.1:8000")):
        assert "sb_dev_" not in snippet.code
        if snippet.slug != "browser":
            assert KEY_PLACEHOLDER in snippet.code, snippet.slug


def test_the_console_settings_become_the_session():
    session = session_from_console(instructions="Be brief.", voice="marin", turn_detection="server_vad",
                                   silence_duration_ms="700", output="text",
                                   tools='[{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]')
    assert session == {
        "instructions": "Be brief.", "output_modalities": ["text"],
        "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 700}},
                  "output": {"voice": "marin"}},
        "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
    }
    assert session_from_console(turn_detection="none", tools="not json", output="video") == {
        "audio": {"input": {"turn_detection": None}}}
    code = snippets_for(QuickstartConfig(base_url="http://h", session=session))[0].code
    compile(code, "console.py", "exec")
    assert "'Be brief.'".replace("'", '"') in code and '"output_modalities": [\n' in code
