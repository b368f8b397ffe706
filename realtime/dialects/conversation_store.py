"""Conversations of the conversation dialect (seed 002): opening (new or resumed, scoped to the key's
project, environment and deployment), their turns, and the history replayed to the agent on resume."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Deployment
from realtime.agents.selectors import deployment_resolve
from realtime.gateway.auth import ConnectionAuth
from realtime.models import Conversation, ConversationTurn


class ConversationNotFound(Exception):
    """No such deployment or conversation for this key (``what`` says which)."""

    def __init__(self, what: str):
        self.what = what
        super().__init__(what)


def conversation_open(*, auth: ConnectionAuth, deployment_key: str, channel_key: str, language: str,
                      conversation_id: uuid.UUID | None) -> tuple[Conversation, bool]:
    """(conversation, resumed). An unknown id, or one of another project, environment or deployment,
    raises ConversationNotFound: a key never reaches someone else's conversation."""
    try:
        deployment = deployment_resolve(project_id=auth.project_id, environment_id=auth.environment_id,
                                        deployment_key=deployment_key)
    except Deployment.DoesNotExist:
        raise ConversationNotFound("deployment") from None
    if conversation_id is not None:
        conversation = Conversation.objects.filter(
            conversation_id=conversation_id, project_id=auth.project_id, environment_id=auth.environment_id,
            deployment=deployment,
        ).first()
        if conversation is None:
            raise ConversationNotFound("conversation")
        return conversation, True
    conversation = Conversation.objects.create(
        conversation_id=uuid.uuid4(), project_id=auth.project_id, environment_id=auth.environment_id,
        deployment=deployment, api_key_id=auth.pk, channel_key=channel_key, language=language,
    )
    return conversation, False


def conversation_exchange_turns(*, conversation_pk: int, user_text: str, user_id: str,
                                replies: list[str]) -> list[ConversationTurn]:
    """One exchange (the user's turn, then the agent's replies) as unsaved turns with their
    ``message_id``s, so the answer can leave before the write (no database wait on the relay path)."""
    turns = [ConversationTurn(conversation_id=conversation_pk, role=ConversationTurn.Role.USER, text=user_text,
                              message_id=uuid.uuid4(), user_id=user_id)]
    turns += [ConversationTurn(conversation_id=conversation_pk, role=ConversationTurn.Role.ASSISTANT, text=text,
                               message_id=uuid.uuid4()) for text in replies]
    return turns


def conversation_turns_save(*, conversation_pk: int, turns: list[ConversationTurn]) -> None:
    """Store the turns of one or more exchanges, in order, in one transaction."""
    with transaction.atomic():
        ConversationTurn.objects.bulk_create(turns)
        Conversation.objects.filter(pk=conversation_pk).update(updated_at=timezone.now())


def conversation_exchange_record(*, conversation_pk: int, user_text: str, user_id: str,
                                 replies: list[str]) -> list[ConversationTurn]:
    """Store one exchange at once; returns the reply turns, whose ``message_id`` the client is given."""
    turns = conversation_exchange_turns(conversation_pk=conversation_pk, user_text=user_text, user_id=user_id,
                                        replies=replies)
    conversation_turns_save(conversation_pk=conversation_pk, turns=turns)
    return turns[1:]


def conversation_history(*, conversation_pk: int) -> list[tuple[str, str]]:
    """The latest CONVERSATION_HISTORY_TURNS turns as (role, text), oldest first."""
    limit = settings.CONVERSATION_HISTORY_TURNS
    if limit == 0:
        return []
    rows = ConversationTurn.objects.filter(conversation_id=conversation_pk).order_by("-id").values_list("role", "text")
    return list(reversed(rows[:limit]))
