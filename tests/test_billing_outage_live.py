"""Nothing billed is lost when PostgreSQL goes away, and nothing is counted twice when it returns.

Each test runs its server processes on a PostgreSQL cluster of its own (the fault-test harness's
PostgresCluster, tests/support/cluster.py: initdb on a free loopback port, never the shared server),
stops that cluster while sessions end, and starts it again:
- sessions that end during the outage are in the ledger exactly once the database is back;
- a process killed with usage still in its spool leaves it to the next process on the same spool
  directory, which writes it exactly once, even when the same spool is replayed again.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.support.cluster import BASE_DIR, PostgresCluster
from tests.test_gateway_support import ScriptedUpstream, bearer, connect, recv_until, session_url

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

FLUSH = "0.5"
CHUNK = base64.b64encode(bytes(4800)).decode()  # 0.1 s of PCM16 24 kHz
CHUNK_SECONDS = Decimal("0.1")
PRICE = 1001  # micro-units per second of audio in

SETUP = """
from accounts.models import EnvironmentKind, Price, User
from accounts.services import api_key_create, project_create
from tests.test_gateway_support import _make_custom_deployment
owner = User.objects.create_user(email="owner@example.com", password="x" * 20)
project = project_create(name="Outage", owner=owner)
Price.objects.update_or_create(metric="audio_in_seconds", project=None, defaults={{"unit_price_micros": {price}}})
_make_custom_deployment(project, {url!r})
row, raw = api_key_create(project=project, environment=project.environments.get(kind=EnvironmentKind.DEVELOPMENT),
                          name="outage", created_by=owner)
emit({{"raw": raw, "key_id": row.key_id}})
"""


def _django_env(cluster: PostgresCluster) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DATABASE_URL": cluster.url()}
    env.pop("TEST_DATABASE_NAME", None)
    return env


def django(cluster: PostgresCluster, code: str) -> dict:
    """Run ``code`` against the private cluster in a child process; what it ``emit``s."""
    prelude = ("import django, json\ndjango.setup()\n"
               "def emit(obj):\n    print('RESULT ' + json.dumps(obj))\n")
    done = subprocess.run([sys.executable, "-c", prelude + code], cwd=BASE_DIR, env=_django_env(cluster),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = PostgresCluster(tmp_path_factory.mktemp("postgres"))
    try:
        cluster.initialize(_django_env(cluster))
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        cluster.cleanup()


@pytest.fixture
def spool_dir():
    path = Path(tempfile.mkdtemp(prefix="sb-spool-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ledger(cluster: PostgresCluster, key_id: str) -> dict:
    """Audio billed for the key, its row count and distinct idempotency keys, and the month's spend."""
    with psycopg.connect(cluster.url(), connect_timeout=5) as db:
        quantity, cost, rows, keys = db.execute(
            "SELECT COALESCE(SUM(quantity), 0), COALESCE(SUM(cost_micros), 0), COUNT(*), "
            "COUNT(DISTINCT idempotency_key) FROM accounts_usagerecord WHERE key_id = %s AND metric = %s",
            (key_id, "audio_in_seconds")).fetchone()
        spend = db.execute("SELECT COALESCE(SUM(cost_micros), 0) FROM accounts_monthlyspend WHERE key_id = %s",
                           (key_id,)).fetchone()[0]
        all_cost = db.execute("SELECT COALESCE(SUM(cost_micros), 0) FROM accounts_usagerecord WHERE key_id = %s",
                              (key_id,)).fetchone()[0]
    return {"audio": Decimal(quantity), "audio_cost": int(cost), "rows": rows, "distinct": keys,
            "spend": int(spend), "cost": int(all_cost)}


async def ledger_until(cluster, key_id, predicate, timeout: float = 60) -> dict:
    """Poll another process's writes (no event reaches this one) until ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        state = await asyncio.to_thread(ledger, cluster, key_id)
        if predicate(state) or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.2)


def spooled(spool: Path) -> int:
    return sum(len(path.read_bytes().splitlines()) for path in spool.glob("usage-*.jsonl"))


async def spool_until(spool: Path, predicate, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while not predicate(count := spooled(spool)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return count


async def stream(ws, chunks: int) -> None:
    for _ in range(chunks):
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": CHUNK}))


def server_env(cluster, spool_dir) -> dict:
    return {"DATABASE_URL": cluster.url(), "BILLING_SPOOL_DIR": str(spool_dir), "REALTIME_METER_FLUSH_SECONDS": FLUSH,
            "REALTIME_KEY_RECHECK_SECONDS": "60", "API_KEY_CACHE_SECONDS": "300"}


async def test_sessions_ending_during_a_postgres_outage_are_billed_exactly_once_it_returns(
        server_factory, cluster, spool_dir):
    async with ScriptedUpstream() as upstream:
        made = await asyncio.to_thread(django, cluster, SETUP.format(price=PRICE, url=upstream.url))
        key_id = made["key_id"]
        server = server_factory(env=server_env(cluster, spool_dir))
        sessions = []
        for number in range(3):
            ws = await connect(session_url(server, f"outage{number}"), bearer(made["raw"]))
            await recv_until(ws, "session.created")
            sessions.append((ws, await upstream.next_connection()))
        for ws, _ in sessions:
            await stream(ws, 10)
        # Written while live, before the outage.
        before = await ledger_until(cluster, key_id, lambda s: s["audio"] > 0)
        assert before["audio"] > 0

        await asyncio.to_thread(cluster.stop)
        for ws, _ in sessions:
            await stream(ws, 7)
            await ws.close()
        sent = 3 * 17 * CHUNK_SECONDS
        # The sessions ended while the database was away: their usage waits in the spool, on disk.
        assert await spool_until(spool_dir, lambda n: n > 0) > 0

        await asyncio.to_thread(cluster.start)
        after = await ledger_until(cluster, key_id, lambda s: s["audio"] >= sent)
        assert after["audio"] == sent, after
        # The spool empties, and further intervals add nothing: each batch counted once.
        assert await spool_until(spool_dir, lambda n: n == 0) == 0
        await asyncio.sleep(3 * float(FLUSH))  # give a wrong second write the chance to happen
        final = await asyncio.to_thread(ledger, cluster, key_id)
        assert final["audio"] == sent and final["rows"] == final["distinct"]
        # Each session charged its exact cost rounded down, across the outage: 1.7 s x 1001 = 1701.7.
        assert final["audio_cost"] == 3 * int(17 * CHUNK_SECONDS * PRICE), final
        assert final["spend"] == final["cost"], final  # the monthly spend behind budgets agrees
        assert server.log().count("usage write failed") == 1  # one line per outage, not per attempt


async def test_a_restarted_process_writes_the_spool_it_left_exactly_once(server_factory, cluster, spool_dir):
    async with ScriptedUpstream() as upstream:
        made = await asyncio.to_thread(django, cluster, SETUP.format(price=PRICE, url=upstream.url).replace(
            "owner@example.com", "owner2@example.com").replace('name="Outage"', 'name="Restart"'))
        key_id = made["key_id"]
        first = server_factory(env=server_env(cluster, spool_dir))
        ws = await connect(session_url(first, "restart"), bearer(made["raw"]))
        await recv_until(ws, "session.created")
        await stream(ws, 5)
        await ledger_until(cluster, key_id, lambda s: s["audio"] > 0)
        await asyncio.to_thread(cluster.stop)
        await stream(ws, 8)
        await ws.close()
        sent = 13 * CHUNK_SECONDS
        assert await spool_until(spool_dir, lambda n: n > 0) > 0
        await asyncio.to_thread(first.kill)  # dies with its spool unwritten
        kept = next(spool_dir.glob("usage-*.jsonl")).read_bytes()

        await asyncio.to_thread(cluster.start)
        assert (await asyncio.to_thread(ledger, cluster, key_id))["audio"] < sent  # only the spool holds the rest

        second = server_factory(env=server_env(cluster, spool_dir))  # the restart: no session needed
        written = await ledger_until(cluster, key_id, lambda s: s["audio"] >= sent)
        assert written["audio"] == sent, written
        assert await spool_until(spool_dir, lambda n: n == 0) == 0
        # The same spool replayed once more (as if the process died after writing, before removing it):
        # still counted once.
        await asyncio.to_thread(second.stop)
        (spool_dir / "usage-replayed-again.jsonl").write_bytes(kept)
        server_factory(env=server_env(cluster, spool_dir))
        assert await spool_until(spool_dir, lambda n: n == 0) == 0
        final = await asyncio.to_thread(ledger, cluster, key_id)
        assert final["audio"] == sent and final["rows"] == final["distinct"], final
        assert final["audio_cost"] == int(sent * PRICE), final  # 1.3 s x 1001, rounded down once
        assert final["spend"] == final["cost"], final
