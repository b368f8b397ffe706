"""Operations endpoints in front of the whole ASGI application, answered without Django's thread:

- ``GET /healthz``: liveness. 200 whenever the event loop runs; touches no dependency.
- ``GET /readyz``: readiness. 200 when PostgreSQL and Redis answer this process's probes and it is
  not draining, else 503 (a JSON body says which). Balancers route on it (deploy/haproxy.cfg).
- ``GET /metrics``: Prometheus text (realtime.gateway.metrics). Only to a loopback client that came
  through no proxy (no X-Forwarded-For), or with ``Authorization: Bearer <METRICS_TOKEN>``; else 404.

The wrapper also starts, on the first request, the process's monitor (heartbeat, lease renewal and
dependency probes: realtime.gateway.liveness) and the SIGTERM drain (realtime.gateway.drain), and adds
the Engine.IO session header balancers use for Socket.IO affinity (realtime.gateway.affinity).
"""
from __future__ import annotations

import hmac

import orjson
from django.conf import settings

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


async def _respond(send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"cache-control", b"no-store"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _metrics_allowed(scope) -> bool:
    headers = dict(scope.get("headers") or ())
    token = settings.METRICS_TOKEN
    if token:
        given = headers.get(b"authorization", b"").decode("latin-1")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    client = (scope.get("client") or ("", 0))[0]
    return client in LOOPBACK and b"x-forwarded-for" not in headers and b"forwarded" not in headers


async def _drain_request_body(receive) -> None:
    message = {"more_body": True}
    while message.get("more_body"):
        message = await receive()
        if message["type"] != "http.request":
            return


def operations_application(app):
    """Wrap ``app`` (project.asgi's application) with the operations endpoints."""
    from realtime.gateway import affinity, availability, drain, liveness, metrics

    async def application(scope, receive, send):
        kind = scope["type"]
        if kind in ("http", "websocket") and drain.install():  # in a server process (not a test's)
            liveness.ensure_started()
        if kind == "http":
            path = scope["path"]
            if path == "/healthz":
                await _drain_request_body(receive)
                return await _respond(send, 200, b'{"status":"ok"}')
            if path == "/readyz":
                await _drain_request_body(receive)
                ok, detail = availability.ready()
                return await _respond(send, 200 if ok else 503,
                                      orjson.dumps({"status": "ready" if ok else "unavailable", **detail}))
            if path == "/metrics":
                await _drain_request_body(receive)
                if not _metrics_allowed(scope):
                    return await _respond(send, 404, b'{"detail":"Not found."}')
                body, content_type = metrics.render()
                return await _respond(send, 200, body, content_type.encode())
            if path.startswith("/socket.io/"):
                return await app(scope, receive, affinity.engineio_sid_header(scope, send))
        return await app(scope, receive, send)

    return application
