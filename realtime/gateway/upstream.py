"""Upstream clients: where each provider lives, how it authenticates, and how its failures read.

Every connection goes through realtime.lib.outbound. The agent's configuration (instructions, voice,
tools, model) is applied with one ``session.update`` before any client event is relayed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from django.conf import settings
from websockets.exceptions import InvalidHandshake, InvalidStatus

from accounts.models import Agent, Provider
from realtime.gateway.limits import CLOSE_UPSTREAM_CLOSED, CLOSE_UPSTREAM_UNAVAILABLE, GatewayError
from realtime.lib import outbound

OPENAI_URL = "wss://api.openai.com/v1/realtime"
INWORLD_URL = "wss://api.inworld.ai/api/v1/realtime/session"
LOCAL_AGENT_PATH = "/agents/local/v1/realtime"


@dataclass(frozen=True)
class UpstreamTarget:
    url: str
    headers: dict[str, str] = field(repr=False, default_factory=dict)  # carry credentials: never logged
    # The built-in local agent (or the operator's LOCAL_AGENT_URL): exempt from the outbound
    # destination policy. Only upstream_target sets it, never from a tenant's URL.
    trusted: bool = False


class UpstreamFailed(Exception):
    def __init__(self, error: GatewayError):
        self.error = error
        super().__init__(error.message)


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _local_agent_base(server: tuple | list | None) -> str:
    if settings.LOCAL_AGENT_URL:
        return settings.LOCAL_AGENT_URL
    # Unset: the same server that accepted the client (every Switchboard process serves the agent).
    host, port = (server or ("127.0.0.1", 8000))[:2]
    if host in ("0.0.0.0", "", None):
        host = "127.0.0.1"
    elif ":" in str(host):
        host = "[::1]" if host == "::" else f"[{host}]"
    return f"ws://{host}:{port}{LOCAL_AGENT_PATH}"


def _fill(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def upstream_target(*, agent: Agent, credential: str, session_id: str, server=None) -> UpstreamTarget:
    """The URL and headers for this agent's provider."""
    if agent.provider == Provider.OPENAI:
        url = _with_query(agent.url or OPENAI_URL, {"model": agent.model or "gpt-realtime"})
        return UpstreamTarget(url, {"Authorization": f"Bearer {credential}"})
    if agent.provider == Provider.INWORLD:
        url = _with_query(agent.url or INWORLD_URL, {"key": session_id, "protocol": "realtime"})
        # Inworld's keys are issued already base64-encoded: sent as they are.
        return UpstreamTarget(url, {"Authorization": f"Basic {credential}"})
    if agent.provider == Provider.CUSTOM:
        values = {"credential": credential, "session_id": session_id, "model": agent.model}
        url = _fill(agent.url, {k: quote(v, safe="") for k, v in values.items()})
        headers = {str(name): _fill(str(value), values) for name, value in (agent.header_template or {}).items()}
        return UpstreamTarget(url, headers)
    return UpstreamTarget(_local_agent_base(server), {"Authorization": f"Bearer {settings.LOCAL_AGENT_SECRET}"},
                          trusted=True)


def agent_session_config(*, agent: Agent, overrides: dict | None = None) -> dict | None:
    """The ``session`` of the session.update that applies the agent's configuration (None: nothing to
    apply). ``overrides`` (a token's session config) win over the agent's."""
    session: dict = {}
    if agent.instructions:
        session["instructions"] = agent.instructions
    if agent.voice:
        session["audio"] = {"output": {"voice": agent.voice}}
    if agent.tools:
        session["tools"] = agent.tools
    if agent.model and agent.provider in (Provider.INWORLD, Provider.CUSTOM):
        session["model"] = agent.model
    for name, value in (overrides or {}).items():
        if name == "audio" and isinstance(value, dict) and isinstance(session.get("audio"), dict):
            merged = {**session["audio"]}
            for part, settings_part in value.items():
                if isinstance(settings_part, dict) and isinstance(merged.get(part), dict):
                    merged[part] = {**merged[part], **settings_part}
                else:
                    merged[part] = settings_part
            session["audio"] = merged
        else:
            session[name] = value
    if not session:
        return None
    return {"type": "realtime", **session}


async def upstream_connect(*, target: UpstreamTarget, max_frame_bytes: int):
    """Open the upstream WebSocket or raise UpstreamFailed with a stable code."""
    try:
        return await outbound.websocket_connect(target.url, headers=target.headers, max_size=max_frame_bytes * 4,
                                                trusted=target.trusted)
    except InvalidStatus as exc:
        status = exc.response.status_code
        code = "upstream_auth_failed" if status in (401, 403) else "upstream_rejected"
        raise UpstreamFailed(GatewayError(
            code, f"The upstream refused the connection (HTTP {status}).", CLOSE_UPSTREAM_UNAVAILABLE, "server_error"
        )) from None
    except (OSError, TimeoutError, InvalidHandshake):
        # One code and message for every way of not reaching it (refused by the outbound policy, no
        # such host, connection refused, timeout, TLS): the answer says nothing about the network.
        raise UpstreamFailed(GatewayError(
            "upstream_unavailable", "The upstream could not be reached.",
            CLOSE_UPSTREAM_UNAVAILABLE, "server_error",
        )) from None


def upstream_closed_error(*, code: int | None, reason: str) -> GatewayError:
    detail = f" (close code {code}{': ' + reason if reason else ''})" if code is not None else ""
    return GatewayError(
        "upstream_closed", f"The upstream closed the session{detail}.", CLOSE_UPSTREAM_CLOSED, "server_error"
    )


def session_update_event(session: dict) -> str:
    return json.dumps({"type": "session.update", "event_id": "sb_agent_config", "session": session})
