""""Test connection" on the agent form: open one upstream session the way the gateway would (same URL,
headers and outbound seam) and report the time to ``session.created`` or, in plain words, why not.
Bounded by AGENT_TEST_TIMEOUT_SECONDS from the first byte to the answer; the session is closed at once."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from accounts.models import Agent
from realtime.gateway import upstream
from realtime.lib import outbound


@dataclass(frozen=True)
class ConnectionTestResult:
    ok: bool
    code: str  # connected / auth_failed / rejected / unreachable / timeout / provider_error / closed / no_session
    message: str
    milliseconds: int | None = None

    def as_json(self) -> dict:
        return {"ok": self.ok, "code": self.code, "message": self.message, "milliseconds": self.milliseconds}


def _host(url: str) -> str:
    return urlsplit(url).netloc.rsplit("@", 1)[-1] or url


def _provider_error(event: dict) -> str:
    error = event.get("error")
    if not isinstance(error, dict):
        error = {}
    text = str(error.get("message") or error.get("code") or "no details")[:300]
    return f"The provider answered with an error: {text}"


async def _first_session_event(connection) -> dict:
    """The first event that says whether a session exists (skipping anything else the provider sends)."""
    while True:
        message = await connection.recv()
        try:
            event = json.loads(message)
        except (TypeError, ValueError):
            continue
        if isinstance(event, dict) and event.get("type") in ("session.created", "error"):
            return event


async def agent_connection_test(*, agent: Agent, credential: str, timeout: float, server=None) -> ConnectionTestResult:
    """Never raises for anything the provider does; the credential never appears in a message."""
    target = upstream.upstream_target(agent=agent, credential=credential, session_id="sb_connection_test",
                                      server=server)
    host = _host(target.url)
    started = time.monotonic()
    connection = None
    try:
        async with asyncio.timeout(timeout):
            connection = await outbound.websocket_connect(target.url, headers=target.headers, open_timeout=timeout,
                                                          trusted=target.trusted)
            event = await _first_session_event(connection)
    except TimeoutError:
        return ConnectionTestResult(False, "timeout", f"No answer from {host} within {timeout:g} seconds.")
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            return ConnectionTestResult(False, "auth_failed", f"{host} refused the credential (HTTP {status}). "
                                        "Check the API key, and that it is allowed to use this model.")
        return ConnectionTestResult(False, "rejected", f"{host} refused the connection (HTTP {status}). "
                                    "Check the URL and the model.")
    except ConnectionClosed as exc:
        rcvd = exc.rcvd
        detail = f" (close code {rcvd.code}{': ' + rcvd.reason if rcvd.reason else ''})" if rcvd else ""
        return ConnectionTestResult(False, "closed", f"{host} closed the connection before a session started{detail}.")
    except (OSError, InvalidHandshake) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return ConnectionTestResult(False, "unreachable", f"Could not connect to {host}: {reason}.")
    except Exception as exc:  # e.g. the outbound policy refusing the address: say so, plainly
        return ConnectionTestResult(False, "unreachable", f"Could not connect to {host}: {exc}.")
    finally:
        if connection is not None:
            try:
                async with asyncio.timeout(2):  # not wait_for: Python 3.11's can swallow a cancel (gh-86296)
                    await connection.close()
            except Exception:
                pass
    if event.get("type") == "error":
        return ConnectionTestResult(False, "provider_error", _provider_error(event))
    milliseconds = int((time.monotonic() - started) * 1000)
    return ConnectionTestResult(True, "connected", f"Connected: session.created in {milliseconds} ms.", milliseconds)
