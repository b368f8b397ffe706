"""The record of gateway sessions (realtime.models.SessionRecord): written by the gateway core, read
by the sessions page and the console. ``session_id`` is the gateway's own id (unique, as in the usage
ledger); ``client_key`` the client's id for it, which may name many sessions over time."""
from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from realtime.models import SessionRecord

CLOSE_REASON_MAX = 200


def session_record_start(
    *, session_id: str, client_key: str = "", project_id: int, api_key_pk: str, key_id: str,
    deployment_id: int | None, dialect: str,
) -> SessionRecord:
    return SessionRecord.objects.create(
        session_id=session_id, client_key=client_key, project_id=project_id, api_key_id=api_key_pk, key_id=key_id,
        deployment_id=deployment_id, dialect=dialect,
    )


def session_record_end(*, record_id: int, close_reason: str) -> None:
    SessionRecord.objects.filter(pk=record_id, ended_at__isnull=True).update(
        ended_at=timezone.now(), close_reason=close_reason[:CLOSE_REASON_MAX]
    )


def session_records_for_project(*, project_id: int, limit: int = 100) -> QuerySet[SessionRecord]:
    """Live sessions first, then the most recent ended ones."""
    return (
        SessionRecord.objects.filter(project_id=project_id)
        .select_related("deployment", "api_key")
        .order_by("-started_at")[:limit]
    )
