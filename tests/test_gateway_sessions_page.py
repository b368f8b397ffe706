"""The sessions page lists a project's live and recent sessions to its members only."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Deployment
from realtime.gateway.records import session_record_end, session_record_start
from realtime.models import SessionRecord

pytestmark = pytest.mark.unit


@pytest.fixture
def sessions(project, dev_key):
    row, _ = dev_key
    deployment = Deployment.objects.get(environment=row.environment, is_default=True)
    live = session_record_start(session_id="sess_live_one", project_id=project.pk, api_key_pk=row.pk,
                                key_id=row.key_id, deployment_id=deployment.pk, dialect="realtime")
    ended = session_record_start(session_id="sess_ended_one", project_id=project.pk, api_key_pk=row.pk,
                                 key_id=row.key_id, deployment_id=deployment.pk, dialect="realtime")
    SessionRecord.objects.filter(pk=ended.pk).update(started_at=timezone.now() - timedelta(seconds=95))
    session_record_end(record_id=ended.pk, close_reason="upstream_closed")
    return live, ended, deployment, row


def test_members_see_live_and_recent_sessions(client, member, sessions, project):
    live, ended, deployment, key = sessions
    client.force_login(member)
    response = client.get(f"/projects/{project.slug}/sessions/")
    assert response.status_code == 200
    html = response.content.decode()
    live_table, recent_table = html.split('id="live-sessions"')[1].split('id="recent-sessions"')
    assert "sess_live_one" in live_table and "sess_ended_one" not in live_table
    assert "sess_ended_one" in recent_table and "upstream_closed" in recent_table
    assert "95 s" in recent_table
    assert deployment.deployment_key in recent_table and key.masked in recent_table


def test_another_tenant_gets_a_404(client, outsider, other_project, sessions, project):
    client.force_login(outsider)
    assert client.get(f"/projects/{project.slug}/sessions/").status_code == 404


def test_ending_a_session_twice_keeps_the_first_reason(sessions):
    live, *_ = sessions
    session_record_end(record_id=live.pk, close_reason="client_closed")
    session_record_end(record_id=live.pk, close_reason="later")
    assert SessionRecord.objects.get(pk=live.pk).close_reason == "client_closed"


def test_a_session_left_open_by_a_dead_process_is_not_shown_as_live(client, member, sessions, project, settings):
    live, *_ = sessions
    SessionRecord.objects.filter(pk=live.pk).update(started_at=timezone.now() - timedelta(
        seconds=settings.REALTIME_MAX_SESSION_SECONDS + settings.REALTIME_RESUME_SECONDS + 60))
    client.force_login(member)
    html = client.get(f"/projects/{project.slug}/sessions/").content.decode()
    live_table, recent_table = html.split('id="live-sessions"')[1].split('id="recent-sessions"')
    assert "sess_live_one" not in live_table
    assert "sess_live_one" in recent_table and "lost" in recent_table
