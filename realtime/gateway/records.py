"""The record of gateway sessions (realtime.models.SessionRecord): written by the gateway core, read
by the sessions page and by resume (an ended session's id answers ``session_expired``)."""
from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from realtime.models import SessionRecord

CLOSE_REASON_MAX = 200


def session_record_start(
    *, session_id: str, project_id: int, api_key_pk: str, key_id: str, deployment_id: int | None, dialect: str
) -> SessionRecord:
    return SessionRecord.objects.create(
        session_id=session_id, project_id=project_id, api_key_id=api_key_pk, key_id=key_id,
        deployment_id=deployment_id, dialect=dialect,
    )


def session_record_end(*, record_id: int, close_reason: str) -> None:
    SessionRecord.objects.filter(pk=record_id, ended_at__isnull=True).update(
        ended_at=timezone.now(), close_reason=close_reason[:CLOSE_REASON_MAX]
    )


def session_record_project(*, session_id: str) -> int | None:
    """The project that used this session id before (None: never used)."""
    return SessionRecord.objects.filter(session_id=session_id).values_list("project_id", flat=True).first()


def session_records_for_project(*, project_id: int, limit: int = 100) -> QuerySet[SessionRecord]:
    """Live sessions first, then the most recent ended ones."""
    return (
        SessionRecord.objects.filter(project_id=project_id)
        .select_related("deployment", "api_key")
        .order_by("-started_at")[:limit]
    )
