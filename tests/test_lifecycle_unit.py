"""Every rule of the session lifecycle (realtime/gateway/lifecycle.py), against all four dialects.

In-process: project.asgi served by an in-process uvicorn on loopback, real clients (websockets for
realtime, conversation and tasks; python-socketio's AsyncClient for rooms), a scripted realtime
upstream in the same process (tests.test_gateway_support.ScriptedUpstream). Each dialect's driver only
speaks its wire format; the rules and their expected codes are the same for all four.
"""
from __future__ import annotations

import asyncio
import json
import socket
import uuid
from urllib.parse import urlencode

import pytest
import pytest_asyncio
import socketio
import uvicorn
import websockets
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.billing.budgets import budget_cache
from accounts.billing.usage import month_first, today
from accounts.keys import key_cache
from accounts.models import ApiKey, Budget, EnvironmentKind, MonthlySpend
from accounts.services import api_key_create
from realtime.models import SessionRecord
from tests.test_gateway_support import ScriptedUpstream, make_custom_deployment

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True), pytest.mark.asyncio(loop_scope="module")]

TIMEOUT = 10
FRAME_LIMIT = 4000
RECHECK_SECONDS = 0.5
DIALECTS = ["realtime", "conversation", "tasks", "rooms"]


class Ended(Exception):
    """The connection ended: the last error code it was told, and its close code (None for rooms)."""

    def __init__(self, code: str | None, close_code: int | None):
        self.code, self.close_code = code, close_code
        super().__init__(f"{code} {close_code}")


class Refused(Exception):
    def __init__(self, code: str):
        self.code = code
        super().__init__(code)


# --- The server ---------------------------------------------------------------------------------------

@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server_url():
    from project.asgi import application

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # listening before the server runs: clients connect at once, no start-up wait
    server = uvicorn.Server(uvicorn.Config(application, ws="websockets-sansio", lifespan="off", log_level="warning"))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="lifecycle-test-server")
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await asyncio.wait_for(task, 15)


@pytest.fixture(autouse=True)
def fast_rules(settings):
    settings.REALTIME_KEY_RECHECK_SECONDS = RECHECK_SECONDS
    settings.REALTIME_MAX_FRAME_BYTES = FRAME_LIMIT
    settings.TASKS_MAX_FRAME_BYTES = FRAME_LIMIT
    settings.ROOMS_MAX_MESSAGE_BYTES = FRAME_LIMIT
    settings.REALTIME_ALLOWED_ORIGINS = ["*"]
    key_cache.clear()
    budget_cache.clear()
    yield
    key_cache.clear()
    budget_cache.clear()


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def settled(transactional_db):
    """Each test ends once every session it opened has been released (its record ended) and the
    in-process server's background writers (usage, timeline) have written what they hold, so nothing
    of it reaches the next test's database (the next test's flush would find rows it never made)."""
    from accounts.billing.writer import usage_report
    from realtime.gateway.lifecycle import lifecycles_released
    from realtime.gateway.records import records_flush
    from realtime.sessions.timeline import timeline_flush

    yield
    async with asyncio.timeout(TIMEOUT):
        await lifecycles_released()  # a session still opening has no record to wait for yet
        while True:
            await records_flush()  # what the server noted so far, written now
            if not await sync_to_async(SessionRecord.objects.filter(ended_at__isnull=True).exists)():
                break
            await asyncio.sleep(0.05)  # released in the server's own time
    await usage_report(None)  # whatever the usage writer took is written
    await timeline_flush(everything=True)  # and what its periodic flush took a moment ago


@pytest_asyncio.fixture(loop_scope="module")
async def upstream(project):
    async with ScriptedUpstream() as scripted:
        scripted.deployment = await make_custom_deployment(project, scripted.url)
        yield scripted


# --- One driver per dialect: the wire format only -------------------------------------------------------

class WsClient:
    def __init__(self, ws, dialect: str):
        self.ws, self.dialect = ws, dialect
        self.last_error: str | None = None
        self.last_error_event: dict = {}

    def _error_code(self, message: dict) -> str | None:
        if self.dialect == "realtime":
            return message["error"]["code"] if message.get("type") == "error" else None
        if self.dialect == "conversation":
            return message["error"]["code"] if "error" in message else None
        return message["errors"][0]["code"] if "errors" in message else None

    async def recv(self) -> dict:
        try:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
        except websockets.ConnectionClosed:
            raise Ended(self.last_error, self.ws.close_code) from None
        code = self._error_code(message)
        if code is not None:
            self.last_error, self.last_error_event = code, message
        return message

    async def next_error(self) -> str:
        while True:
            message = await self.recv()
            code = self._error_code(message)
            if code is not None:
                return code

    async def roundtrip(self) -> None:
        """One unit of ordinary traffic, answered."""
        if self.dialect == "realtime":
            await self.ws.send(json.dumps({"type": "response.create"}))
            while (await self.recv()).get("type") != "response.done":
                pass
        elif self.dialect == "conversation":
            await self.ws.send(json.dumps({"request": {"unstructured": {"text": "hi"}}, "userId": "u"}))
            while "messages" not in await self.recv():
                pass
        else:
            task_uuid = "6f1c2c0e-0000-4000-8000-000000000001"
            await self.ws.send(json.dumps({"taskType": "ping", "taskUUID": task_uuid}))
            while not (await self.recv()).get("data"):
                pass

    async def send_oversized(self) -> None:
        filler = "x" * (FRAME_LIMIT + 10)
        if self.dialect == "realtime":
            await self.ws.send(json.dumps({"type": "conversation.item.create", "pad": filler}))
        elif self.dialect == "conversation":
            await self.ws.send(json.dumps({"request": {"unstructured": {"text": filler}}}))
        else:
            await self.ws.send(json.dumps({"taskType": "ping", "pad": filler}))

    async def ended(self) -> Ended:
        while True:
            try:
                await self.recv()
            except Ended as ended:
                return ended

    async def close(self) -> None:
        await self.ws.close()


class RoomsClient:
    def __init__(self, client: socketio.AsyncClient, events: asyncio.Queue):
        self.client, self.events = client, events
        self.last_error: str | None = None
        self.last_error_event: dict = {}

    async def recv(self) -> tuple[str, object]:
        kind, data = await asyncio.wait_for(self.events.get(), TIMEOUT)
        if kind == "disconnect":
            raise Ended(self.last_error, None)
        if kind == "error":
            self.last_error, self.last_error_event = data["code"], data
        return kind, data

    async def next_error(self) -> str:
        while True:
            kind, data = await self.recv()
            if kind == "error":
                return data["code"]

    async def roundtrip(self) -> None:
        await self.client.emit("message", "hello")
        while (await self.recv()) != ("message", "hello"):
            pass

    async def send_oversized(self) -> None:
        await self.client.emit("message", "x" * (FRAME_LIMIT + 10))

    async def ended(self) -> Ended:
        while True:
            try:
                await self.recv()
            except Ended as ended:
                return ended

    async def close(self) -> None:
        await self.client.disconnect()


async def open_client(dialect: str, server_url: str, raw: str, upstream):
    """A connected client with its session started, or Refused(code)."""
    if dialect == "rooms":
        events: asyncio.Queue = asyncio.Queue()
        refused: asyncio.Future = asyncio.get_running_loop().create_future()
        client = socketio.AsyncClient(reconnection=False)
        client.on("message", lambda data: events.put_nowait(("message", data)))
        client.on("error", lambda data: events.put_nowait(("error", data)))
        client.on("disconnect", lambda *args: events.put_nowait(("disconnect", None)))
        client.on("connect_error", lambda data: refused.done() or refused.set_result(data))
        try:
            await client.connect(f"http://{server_url}", auth={"apiKey": raw}, transports=["websocket"],
                                 wait_timeout=TIMEOUT)
        except socketio.exceptions.ConnectionError:
            data = await asyncio.wait_for(refused, TIMEOUT)
            raise Refused(data["data"]["code"]) from None
        return RoomsClient(client, events)
    if dialect == "realtime":
        key = uuid.uuid4().hex  # a plain connect with a key in use would replace that session
        ws = await websockets.connect(f"ws://{server_url}/api/v1/realtime/session?key={key}&protocol=realtime",
                                      additional_headers={"Authorization": f"Bearer {raw}"}, open_timeout=TIMEOUT)
    elif dialect == "conversation":
        query = urlencode({"apiKey": raw, "deploymentKey": upstream.deployment.deployment_key,
                           "channelKey": "web-en-US"})
        ws = await websockets.connect(f"ws://{server_url}/v1/conversation?{query}", open_timeout=TIMEOUT)
    else:
        ws = await websockets.connect(f"ws://{server_url}/v1/", open_timeout=TIMEOUT)
        await ws.send(json.dumps({"newConnection": {"apiKey": raw}}))
    client = WsClient(ws, dialect)
    try:
        first = await client.recv()
    except Ended as ended:
        raise Refused(ended.code) from None
    if client._error_code(first) is not None:
        await client.ended()
        raise Refused(client.last_error)
    return client


def new_key(project, owner, name="lifecycle key"):
    env = project.environments.get(kind=EnvironmentKind.DEVELOPMENT)
    return api_key_create(project=project, environment=env, name=name, created_by=owner)


async def records(project, dialect: str) -> list[SessionRecord]:
    return await sync_to_async(list)(SessionRecord.objects.filter(project=project, dialect=dialect))


async def until_record(project, dialect: str) -> SessionRecord:
    async with asyncio.timeout(TIMEOUT):
        while not (written := await records(project, dialect)):
            await asyncio.sleep(0.05)  # written by the server's record writer within its flush interval
        return written[0]


async def until_ended_record(project, dialect: str) -> SessionRecord:
    async with asyncio.timeout(TIMEOUT):
        while True:
            ended = [r for r in await records(project, dialect) if r.ended_at is not None]
            if ended:
                return ended[0]
            await asyncio.sleep(0.05)  # written after the close, in the server's own time


# --- The rules --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_session_is_recorded_while_live_and_ended_with_its_reason(
        dialect, server_url, upstream, project, dev_key):
    _, raw = dev_key
    client = await open_client(dialect, server_url, raw, upstream)
    await client.roundtrip()
    live = await until_record(project, dialect)
    assert live.ended_at is None and live.key_id == dev_key[0].key_id
    assert len(await records(project, dialect)) == 1
    await client.close()
    ended = await until_ended_record(project, dialect)
    assert ended.close_reason == "client_closed"


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_oversized_frame_is_refused_and_the_connection_stays(
        dialect, server_url, upstream, project, dev_key):
    _, raw = dev_key
    client = await open_client(dialect, server_url, raw, upstream)
    await client.send_oversized()
    assert await client.next_error() == ("message_too_large" if dialect == "rooms" else "frame_too_large")
    await client.roundtrip()
    await client.close()


@pytest.mark.parametrize("dialect", ["realtime", "conversation", "tasks"])  # rooms: Engine.IO parses its frames
async def test_binary_and_malformed_frames_are_refused_with_their_codes_and_the_connection_stays(
        dialect, server_url, upstream, project, dev_key):
    _, raw = dev_key
    client = await open_client(dialect, server_url, raw, upstream)
    await client.ws.send(b'{"type": "response.create"}')
    assert await client.next_error() == "binary_not_supported"
    await client.ws.send('{"type": ')
    assert await client.next_error() == "invalid_json"
    await client.roundtrip()
    await client.close()


OWN_FRAME_LIMIT = {"realtime": "REALTIME_MAX_FRAME_BYTES", "conversation": "REALTIME_MAX_FRAME_BYTES",
                   "tasks": "TASKS_MAX_FRAME_BYTES", "rooms": "ROOMS_MAX_MESSAGE_BYTES"}


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_oversized_frame_error_quotes_the_limit_the_dialect_applies(
        dialect, server_url, upstream, project, dev_key, settings):
    _, raw = dev_key
    for name in set(OWN_FRAME_LIMIT.values()) - {OWN_FRAME_LIMIT[dialect]}:  # the other dialects' limits differ
        setattr(settings, name, FRAME_LIMIT * 10)
    client = await open_client(dialect, server_url, raw, upstream)
    await client.send_oversized()
    await client.next_error()
    told = json.dumps(client.last_error_event)
    assert f"the limit is {FRAME_LIMIT}." in told, told
    await client.close()


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_per_key_cap_holds(dialect, server_url, upstream, project, owner, dev_key, settings):
    settings.REALTIME_MAX_SESSIONS_PER_KEY = 1
    _, raw = dev_key
    first = await open_client(dialect, server_url, raw, upstream)
    with pytest.raises(Refused) as refused:
        await open_client(dialect, server_url, raw, upstream)
    assert refused.value.code == "too_many_sessions"
    # The cap is the key's: another key of the project still connects.
    _, other_raw = await sync_to_async(new_key)(project, owner, "second key")
    other = await open_client(dialect, server_url, other_raw, upstream)
    await other.close()
    await first.close()


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_idle_session_is_closed(dialect, server_url, upstream, project, dev_key, settings):
    settings.REALTIME_IDLE_TIMEOUT_SECONDS = 1
    _, raw = dev_key
    client = await open_client(dialect, server_url, raw, upstream)
    ended = await client.ended()
    assert ended.code == "idle_timeout"
    assert ended.close_code in (None, 4408)
    assert (await until_ended_record(project, dialect)).close_reason == "idle_timeout"


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_opens_arriving_together_on_a_cold_process_read_the_key_and_the_deployment_once(
        dialect, server_url, upstream, dev_key, monkeypatch):
    """A restarted process meets its clients' reconnects with empty caches: the opens share one key
    look-up and one deployment load, rather than each queueing its own on the database thread."""
    import accounts.keys
    import realtime.gateway.session as gateway_session
    from realtime.agents.deployment_cache import deployment_cache_clear

    loads = {"key": 0, "deployment": 0}

    def counted(name, load):
        def counting(**kwargs):
            loads[name] += 1
            return load(**kwargs)
        return counting

    monkeypatch.setattr(accounts.keys, "api_key_verify", counted("key", accounts.keys.api_key_verify))
    monkeypatch.setattr(gateway_session, "_deployment_load", counted("deployment", gateway_session._deployment_load))
    key_cache.clear()
    deployment_cache_clear()
    _, raw = dev_key
    clients = await asyncio.gather(*(open_client(dialect, server_url, raw, upstream) for _ in range(8)))
    try:
        for client in clients:
            await client.roundtrip()
        assert loads["key"] == 1
        assert loads["deployment"] == (1 if dialect in ("realtime", "conversation") else 0)  # tasks and rooms resolve none on connecting
    finally:
        await asyncio.gather(*(client.close() for client in clients))


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_session_is_closed_at_its_maximum_duration(dialect, server_url, upstream, project, dev_key, settings):
    settings.REALTIME_MAX_SESSION_SECONDS = 1
    _, raw = dev_key
    client = await open_client(dialect, server_url, raw, upstream)
    ended = await client.ended()
    assert ended.code == "session_duration_exceeded"
    assert ended.close_code in (None, 4420)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_revoked_key_is_closed_within_the_recheck_period_without_any_notice(
        dialect, server_url, upstream, project, dev_key):
    row, raw = dev_key
    client = await open_client(dialect, server_url, raw, upstream)
    await client.roundtrip()
    # Straight in the database: no notice is sent, only the periodic re-check can find it.
    await sync_to_async(ApiKey.objects.filter(pk=row.pk).update)(revoked_at=timezone.now())
    loop = asyncio.get_running_loop()
    started = loop.time()
    ended = await client.ended()
    assert ended.code == "key_revoked"
    assert ended.close_code in (None, 4401)
    assert loop.time() - started < RECHECK_SECONDS * 2 + 1


def _spend(project, key_id: str, *, limit: int, spent: int) -> None:
    Budget.objects.update_or_create(project=project, key_id=key_id, defaults={"monthly_limit_micros": limit})
    MonthlySpend.objects.update_or_create(project=project, key_id=key_id, month=month_first(today()),
                                          defaults={"cost_micros": spent})


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_spent_budget_refuses_new_sessions_and_closes_live_ones(
        dialect, server_url, upstream, project, dev_key, settings):
    settings.BILLING_SPEND_CACHE_SECONDS = 0.2
    settings.REALTIME_BUDGET_GRACE_SECONDS = 0.3
    row, raw = dev_key
    client = await open_client(dialect, server_url, raw, upstream)
    await sync_to_async(_spend)(project, row.key_id, limit=1000, spent=2000)
    assert await client.next_error() == "budget_exceeded"  # the warning: the connection stays a moment
    ended = await client.ended()
    assert ended.code == "budget_exceeded"
    assert ended.close_code in (None, 4402)
    with pytest.raises(Refused) as refused:
        await open_client(dialect, server_url, raw, upstream)
    assert refused.value.code == "budget_exceeded"


# --- Seed 001 at least once, on uvicorn (the production server) --------------------------------------------

async def test_a_tasks_result_sent_into_a_silent_network_reaches_the_resumed_client(server_url, project, dev_key):
    """The live test (tests/test_tasks_delivery_live.py) runs daphne; this one uvicorn's sans-I/O
    WebSocket protocol, whose pings the gateway reaches differently (realtime.gateway.outbox.PongProbe)."""
    from tests.test_tasks_delivery_live import FreezingProxy, set_task_upstream
    from tests.test_tasks_support import TaskUpstream, new_connection, recv_json

    _, raw = dev_key
    async with TaskUpstream() as tasks_upstream:
        await set_task_upstream(project, tasks_upstream.url)
        async with FreezingProxy(int(server_url.rsplit(":", 1)[1])) as proxy:
            ws = await websockets.connect(proxy.url, open_timeout=TIMEOUT, ping_interval=None)
            session_uuid = (await new_connection(ws, raw))["newConnectionSessionUUID"]["connectionSessionUUID"]
            task = {"taskType": "text2img", "taskUUID": str(uuid.uuid4()), "positivePrompt": "during"}
            await ws.send(json.dumps([task]))
            await tasks_upstream.next_task()
            proxy.frozen = True
            tasks_upstream.release(task["taskUUID"])
            await asyncio.wait_for(proxy.lost_from_server.wait(), TIMEOUT)
            async with websockets.connect(f"ws://{server_url}/v1/", open_timeout=TIMEOUT) as again:
                await new_connection(again, raw, session_uuid)
                message = await recv_json(again)
                assert message["data"][0]["taskUUID"] == task["taskUUID"]
            ws.transport.abort()
