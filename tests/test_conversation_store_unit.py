"""Conversation storage: a key reaches only its own project's, environment's and deployment's
conversations; each exchange is stored at once; resume replays the latest turns, oldest first."""
from __future__ import annotations

import pytest

from accounts.models import EnvironmentKind
from realtime.dialects.conversation_store import (
    ConversationNotFound,
    conversation_exchange_record,
    conversation_history,
    conversation_open,
)
from realtime.gateway.auth import ConnectionAuth

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def auth_of(key) -> ConnectionAuth:
    return ConnectionAuth(pk=str(key.pk), key_id=key.key_id, project_id=key.project_id, project_slug="",
                          environment_id=key.environment_id, environment="development", via="api_key")


def default_deployment(project, kind=EnvironmentKind.DEVELOPMENT):
    return project.deployments.get(environment__kind=kind, is_default=True)


def test_a_conversation_is_reachable_only_through_its_own_deployment_and_project(project, dev_key, other_key):
    auth = auth_of(dev_key[0])
    deployment = default_deployment(project)
    conversation, resumed = conversation_open(auth=auth, deployment_key=deployment.deployment_key,
                                              channel_key="web", language="en-US", conversation_id=None)
    assert not resumed
    again, resumed = conversation_open(auth=auth, deployment_key=deployment.deployment_key, channel_key="web",
                                       language="en-US", conversation_id=conversation.conversation_id)
    assert resumed and again.pk == conversation.pk

    other = auth_of(other_key[0])
    other_deployment = default_deployment(other_key[0].project)
    with pytest.raises(ConversationNotFound) as refused:
        conversation_open(auth=other, deployment_key=other_deployment.deployment_key, channel_key="web",
                          language="en-US", conversation_id=conversation.conversation_id)
    assert refused.value.what == "conversation"
    with pytest.raises(ConversationNotFound) as refused:  # a deployment of another environment
        conversation_open(auth=auth, deployment_key=default_deployment(project, EnvironmentKind.STAGING).deployment_key,
                          channel_key="web", language="en-US", conversation_id=None)
    assert refused.value.what == "deployment"


def test_history_is_the_latest_turns_oldest_first(project, dev_key, settings):
    settings.CONVERSATION_HISTORY_TURNS = 3
    auth = auth_of(dev_key[0])
    conversation, _ = conversation_open(auth=auth, deployment_key=default_deployment(project).deployment_key,
                                        channel_key="web", language="en-US", conversation_id=None)
    replies = conversation_exchange_record(conversation_pk=conversation.pk, user_text="one", user_id="u",
                                           replies=["1a", "1b"])
    assert [turn.text for turn in replies] == ["1a", "1b"] and replies[0].message_id != replies[1].message_id
    conversation_exchange_record(conversation_pk=conversation.pk, user_text="two", user_id="u", replies=[])
    assert conversation_history(conversation_pk=conversation.pk) == [
        ("assistant", "1a"), ("assistant", "1b"), ("user", "two")]
