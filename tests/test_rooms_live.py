"""The rooms dialect (seed 003) with the Socket.IO JavaScript client (socket.io-client from npm, run by
node: tests/node/rooms_seed003.mjs) against two real daphne processes sharing Redis."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from accounts.models import EnvironmentKind, UsageRecord
from accounts.services import api_key_create, api_key_revoke

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parent.parent
SCRIPT = BASE_DIR / "tests" / "node" / "rooms_seed003.mjs"


def run_plan(plan: dict, timeout: float = 60) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the seed 003 client needs Node.js")
    if not (BASE_DIR / "node_modules" / "socket.io-client" / "package.json").exists():
        pytest.fail("the npm package 'socket.io-client' is missing: run `make install` (it runs `npm ci`)")
    result = subprocess.run([node, str(SCRIPT)], cwd=BASE_DIR, env={**os.environ, "ROOMS_PLAN": json.dumps(plan)},
                            capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 and lines and lines[-1].get("done"), f"{result.stdout}\n{result.stderr}"
    return lines[-1]["report"]


def key_for(project, kind, name, owner):
    return api_key_create(project=project, environment=project.environments.get(kind=kind), name=name,
                          created_by=owner)


def rooms_usage(key) -> float:
    return float(sum(r.quantity for r in UsageRecord.objects.filter(api_key=key, dialect="rooms", metric="messages")))


def test_broadcasts_reach_the_project_environment_room_across_two_processes(
        server_factory, project, owner, dev_key, other_key):
    first, second = server_factory(), server_factory()
    a1_row, a1 = dev_key
    a2_row, a2 = key_for(project, EnvironmentKind.DEVELOPMENT, "second dev key", owner)
    _, staging = key_for(project, EnvironmentKind.STAGING, "staging key", owner)
    b_row, b = other_key
    plan = {
        "scenario": "broadcast",
        "clients": [
            {"name": "a1", "url": first.http_url, "apiKey": a1},
            {"name": "a2", "url": second.http_url, "apiKey": a2},
            {"name": "c", "url": first.http_url, "apiKey": staging},  # same project, another environment
            {"name": "b", "url": second.http_url, "apiKey": b},  # another project
        ],
        "senders": ["a1", "a2"], "receivers": ["a1", "a2"], "isolated": ["b", "c"],
    }
    report = run_plan(plan)
    assert report["connected"] == {"a1": True, "a2": True, "c": True, "b": True}
    for name in ("a1", "a2"):
        assert sorted(report[name]["received"]) == ["hello from a1", "hello from a2"], report
    assert report["c"]["received"] == ["echo c"], report
    assert report["b"]["received"] == ["echo b"], report
    assert all(not report[name]["errors"] for name in ("a1", "a2", "b", "c"))

    # One message each, in the ledger per key (written when each connection closed).
    deadline = time.monotonic() + 15
    while [rooms_usage(a1_row), rooms_usage(a2_row), rooms_usage(b_row)] != [1, 1, 1]:
        assert time.monotonic() < deadline, "rooms usage did not reach the ledger"
        time.sleep(0.1)  # written by the server processes on disconnect; no event reaches the test
    for server in (first, second):
        assert a1 not in server.log() and a2 not in server.log()


def test_a_bad_missing_or_revoked_key_gets_connect_error_with_its_reason(server_factory, project, owner, dev_key):
    server = server_factory()
    _, raw = dev_key
    revoked_row, revoked = key_for(project, EnvironmentKind.DEVELOPMENT, "to revoke", owner)
    api_key_revoke(api_key=revoked_row)
    mistyped = raw[:10] + ("a" if raw[10] != "a" else "b") + raw[11:]
    plan = {"scenario": "connect", "clients": [
        {"name": "missing", "url": server.http_url, "apiKey": None},
        {"name": "mistyped", "url": server.http_url, "apiKey": mistyped},
        {"name": "revoked", "url": server.http_url, "apiKey": revoked},
        {"name": "good", "url": server.http_url, "apiKey": raw},
    ]}
    node = shutil.which("node")
    result = subprocess.run([node, str(SCRIPT)], cwd=BASE_DIR, env={**os.environ, "ROOMS_PLAN": json.dumps(plan)},
                            capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines and lines[-1].get("done"), f"{result.stdout}\n{result.stderr}"
    assert lines[-1]["report"]["connected"] == {"missing": False, "mistyped": False, "revoked": False, "good": True}
    errors = {line["name"]: line for line in lines if line.get("event") == "connect_error"}
    assert errors["missing"]["data"] == {"code": "missing_api_key"} and "apiKey" in errors["missing"]["message"]
    assert errors["mistyped"]["data"] == {"code": "bad_checksum"} and "checksum" in errors["mistyped"]["message"]
    assert errors["revoked"]["data"] == {"code": "revoked_key"} and "revoked" in errors["revoked"]["message"]


def test_oversized_messages_and_bursts_get_error_events_and_are_not_broadcast(server_factory, dev_key):
    server = server_factory(env={"ROOMS_MESSAGE_BURST": "5", "ROOMS_MESSAGES_PER_SECOND": "0.1"})
    row, raw = dev_key
    report = run_plan({"scenario": "limits", "oversize": 64 * 1024 + 1, "burst": 12,
                       "clients": [{"name": "me", "url": server.http_url, "apiKey": raw}]})
    errors = report["me"]["errors"]
    assert errors[0]["code"] == "message_too_large" and "65536" in errors[0]["message"]
    assert [e["code"] for e in errors[1:]] == ["rate_limited"] * 7
    assert report["me"]["received"] == [f"m{n}" for n in range(5)]
    deadline = time.monotonic() + 15
    while rooms_usage(row) != 5:
        assert time.monotonic() < deadline, "rooms usage did not reach the ledger"
        time.sleep(0.1)  # written by the server process on disconnect; no event reaches the test


def test_a_key_revoked_while_connected_is_told_and_disconnected(server_factory, project, owner):
    server = server_factory(env={"REALTIME_KEY_RECHECK_SECONDS": "0.5"})
    row, raw = key_for(project, EnvironmentKind.DEVELOPMENT, "revoked while connected", owner)
    plan = {"scenario": "revoke", "clients": [{"name": "me", "url": server.http_url, "apiKey": raw}]}
    node = subprocess.Popen([shutil.which("node"), str(SCRIPT)], cwd=BASE_DIR, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "ROOMS_PLAN": json.dumps(plan)})
    try:
        assert json.loads(node.stdout.readline()) == {"name": "me", "event": "connect"}
        api_key_revoke(api_key=row)
        rest = [json.loads(line) for line in node.stdout.read().splitlines() if line.startswith("{")]
        assert node.wait(timeout=30) == 0, rest
    finally:
        if node.poll() is None:
            node.kill()
    events = [(line.get("event"), (line.get("error") or {}).get("code")) for line in rest if "event" in line]
    assert events[:2] == [("error", "key_revoked"), ("disconnect", None)], rest
    assert rest[1]["reason"] == "io server disconnect", rest
