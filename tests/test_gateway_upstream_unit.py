"""Where each provider's upstream lives and how the agent's configuration is applied."""
from __future__ import annotations

import json

import pytest
from django.test import override_settings

from accounts.models import Agent, Provider
from realtime.gateway.upstream import agent_session_config, session_update_event, upstream_target

pytestmark = pytest.mark.unit


def agent(**fields) -> Agent:
    return Agent(name="a", **fields)


def test_openai_uses_bearer_and_the_model_in_the_url():
    target = upstream_target(agent=agent(provider=Provider.OPENAI, model="gpt-realtime"), credential="sk-x",
                             session_id="s1")
    assert target.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert target.headers == {"Authorization": "Bearer sk-x"}


def test_inworld_uses_basic_and_the_session_key():
    target = upstream_target(agent=agent(provider=Provider.INWORLD), credential="aW53b3JsZA==", session_id="abc")
    assert target.url == "wss://api.inworld.ai/api/v1/realtime/session?key=abc&protocol=realtime"
    assert target.headers == {"Authorization": "Basic aW53b3JsZA=="}


def test_custom_fills_the_url_and_header_templates():
    target = upstream_target(
        agent=agent(provider=Provider.CUSTOM, url="wss://up.example/rt?sid={session_id}", model="m",
                    header_template={"X-Key": "Token {credential}", "X-Model": "{model}"}),
        credential="c&d", session_id="s 1",
    )
    assert target.url == "wss://up.example/rt?sid=s%201"
    assert target.headers == {"X-Key": "Token c&d", "X-Model": "m"}


@override_settings(LOCAL_AGENT_URL=None, LOCAL_AGENT_SECRET="internal")
def test_the_local_agent_is_the_server_that_accepted_the_client():
    target = upstream_target(agent=agent(provider=Provider.LOCAL), credential="", session_id="s",
                             server=("0.0.0.0", 8123))
    assert target.url == "ws://127.0.0.1:8123/agents/local/v1/realtime"
    assert target.headers == {"Authorization": "Bearer internal"}


@override_settings(LOCAL_AGENT_URL="ws://agent.internal:9000/agents/local/v1/realtime")
def test_the_local_agent_url_setting_wins():
    target = upstream_target(agent=agent(provider=Provider.LOCAL), credential="", session_id="s", server=("h", 1))
    assert target.url == "ws://agent.internal:9000/agents/local/v1/realtime"


def test_agent_configuration_becomes_one_session_update_and_a_token_can_refine_it():
    configured = agent(provider=Provider.LOCAL, instructions="Be brief.", voice="Clive",
                       tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}])
    session = agent_session_config(agent=configured, overrides={"audio": {"output": {"speed": 1.2}}})
    assert session == {"type": "realtime", "instructions": "Be brief.",
                       "audio": {"output": {"voice": "Clive", "speed": 1.2}},
                       "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]}
    assert json.loads(session_update_event(session))["type"] == "session.update"
    assert agent_session_config(agent=agent(provider=Provider.LOCAL, model="local-echo")) is None
