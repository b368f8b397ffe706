"""The operations endpoints (project/health.py) and the Socket.IO affinity header, called as ASGI
applications; the outage bookkeeping that keeps logs to one line per outage."""
import logging

import orjson
import pytest

from project import health
from realtime.gateway import affinity, availability

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _no_process_machinery(monkeypatch):
    # The monitor task and the SIGTERM handler belong to a server process, not to pytest's.
    from realtime.gateway import drain, liveness

    monkeypatch.setattr(liveness, "ensure_started", lambda: None)
    monkeypatch.setattr(drain, "install", lambda: False)
    for dependency in availability.DEPENDENCIES:
        monkeypatch.setattr(dependency, "down_since", None)
    monkeypatch.setitem(availability._state, "draining", False)


async def call(app, path: str, *, client=("127.0.0.1", 5000), headers=(), query=b""):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path, "query_string": query, "client": client,
               "headers": list(headers)}, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


async def inner(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'0{"sid":"abc123","upgrades":["websocket"]}'})


app = health.operations_application(inner)


async def test_healthz_is_200_even_during_an_outage():
    availability.redis_dependency.mark_down("test")
    status, _, body = await call(app, "/healthz")
    assert (status, orjson.loads(body)) == (200, {"status": "ok"})


async def test_readyz_is_503_naming_the_dependency_down_or_the_drain():
    assert (await call(app, "/readyz"))[0] == 200
    availability.database_dependency.mark_down("test")
    status, _, body = await call(app, "/readyz")
    assert status == 503 and orjson.loads(body)["database"] == "down"
    availability.database_dependency.mark_up()
    availability.drain_begin()
    status, _, body = await call(app, "/readyz")
    assert status == 503 and orjson.loads(body)["draining"] == "yes"


async def test_metrics_only_to_direct_loopback_clients_or_the_token(settings):
    settings.METRICS_TOKEN = ""
    status, headers, body = await call(app, "/metrics")
    assert status == 200 and b"switchboard_sessions_live" in body
    assert (await call(app, "/metrics", client=("203.0.113.9", 4000)))[0] == 404
    assert (await call(app, "/metrics", headers=[(b"x-forwarded-for", b"203.0.113.9")]))[0] == 404
    settings.METRICS_TOKEN = "s3cret-token"
    assert (await call(app, "/metrics"))[0] == 404
    assert (await call(app, "/metrics", client=("203.0.113.9", 4000),
                       headers=[(b"authorization", b"Bearer s3cret-token")]))[0] == 200
    assert (await call(app, "/metrics", headers=[(b"authorization", b"Bearer wrong")]))[0] == 404


async def test_an_opening_engineio_response_names_its_session_for_the_balancer():
    _, headers, _ = await call(app, "/socket.io/", query=b"EIO=4&transport=polling")
    assert headers[affinity.HEADER] == b"abc123"
    _, headers, _ = await call(app, "/socket.io/", query=b"EIO=4&transport=polling&sid=abc123")
    assert affinity.HEADER not in headers


def test_one_log_line_per_outage_not_per_failure(caplog):
    import redis.exceptions

    caplog.set_level(logging.INFO, logger="realtime.gateway.availability")
    dependency = availability.Dependency("redis")
    for _ in range(50):
        dependency.mark_down(redis.exceptions.ConnectionError("refused"))
    dependency.mark_up()
    dependency.mark_down("a stale pooled connection right after the recovery")  # the same outage's tail
    dependency.mark_up()
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "unavailable" in m]) == 1, messages
    assert len([m for m in messages if "available again" in m]) == 1, messages


def test_outage_errors_are_recognised_and_bugs_are_not():
    import redis.exceptions
    from django.db import OperationalError

    assert availability.outage_of(redis.exceptions.ConnectionError("x")) is availability.redis_dependency
    try:
        try:
            raise OperationalError("server closed the connection")
        except OperationalError as inner_error:
            raise RuntimeError("wrapped") from inner_error
    except RuntimeError as exc:
        assert availability.outage_of(exc) is availability.database_dependency
    assert availability.outage_of(KeyError("bug")) is None
    assert availability.admission_failure(KeyError("bug")) is None
    assert availability.admission_failure(redis.exceptions.TimeoutError("x")) is availability.SERVICE_UNAVAILABLE


async def test_a_room_message_the_bus_lost_is_reported_as_not_published():
    from realtime.dialects.rooms_bus import RoomsRedisManager, broadcast_begin, broadcast_published
    from tests.support.cluster import free_port

    manager = RoomsRedisManager(f"redis://127.0.0.1:{free_port()}/0", channel="sb-test")  # nothing listens
    broadcast_begin()
    assert await manager._publish({"method": "emit", "event": "message"}) is None
    assert broadcast_published() is False
    assert not availability.redis_dependency.up  # one outage noted, not an error line per message
