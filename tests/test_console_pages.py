"""The console page and the session usage JSON its meters read: members only, tenant-scoped, exact sums."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Deployment, EnvironmentKind, UsageRecord
from realtime.gateway.records import session_record_end, session_record_start

pytestmark = pytest.mark.unit


def _usage(key_row, session_id: str, metric: str, quantity: str, cost: int, seq: int) -> None:
    UsageRecord.objects.create(
        api_key=key_row, key_id=key_row.key_id, project=key_row.project, environment=key_row.environment,
        session_id=session_id, dialect="realtime", metric=metric, quantity=Decimal(quantity), cost_micros=cost,
        occurred_at=timezone.now(), idempotency_key=f"{session_id}:{seq}:{metric}",
    )


@pytest.fixture
def metered_session(project, dev_key):
    row, _ = dev_key
    deployment = Deployment.objects.get(environment=row.environment, is_default=True)
    record = session_record_start(session_id="console-abc", project_id=project.pk, api_key_pk=row.pk,
                                  key_id=row.key_id, deployment_id=deployment.pk, dialect="realtime")
    _usage(row, "console-abc", "audio_in_seconds", "1.250", 30, 1)
    _usage(row, "console-abc", "audio_in_seconds", "0.750", 20, 2)
    _usage(row, "console-abc", "text_out_tokens", "15", 5, 2)
    return record


def test_members_get_the_console_with_their_deployments_and_no_key(client, member, project):
    client.force_login(member)
    response = client.get(f"/projects/{project.slug}/console/")
    assert response.status_code == 200
    html = response.content.decode()
    config = json.loads(html.split('id="console-config" type="application/json">')[1].split("</script>")[0])
    defaults = Deployment.objects.filter(project=project, is_default=True)
    assert {d["key"] for d in config["deployments"]} == {d.deployment_key for d in defaults}
    assert {d["environment"] for d in config["deployments"]} == set(EnvironmentKind.values)
    assert config["tokenUrl"] == f"/projects/{project.slug}/console/token"
    assert "sb_dev_" not in html and "sb_prod_" not in html  # never an API key in the page
    assert 'aria-current="page">Console</a>' in html


def test_the_console_is_not_found_for_outsiders_and_asks_strangers_to_sign_in(client, outsider, project):
    assert client.get(f"/projects/{project.slug}/console/").status_code == 302
    client.force_login(outsider)
    assert client.get(f"/projects/{project.slug}/console/").status_code == 404


def test_session_usage_sums_the_ledger(client, member, project, metered_session):
    client.force_login(member)
    response = client.get(f"/projects/{project.slug}/sessions/console-abc/usage")
    assert response.status_code == 200
    body = response.json()
    assert body["metrics"] == {"audio_in_seconds": "2", "text_out_tokens": "15"}
    assert body["cost_micros"] == 55 and body["cost"] == "$0.000055"
    assert body["live"] is True and body["ended_at"] is None
    session_record_end(record_id=metered_session.pk, close_reason="client_closed")
    body = client.get(f"/projects/{project.slug}/sessions/console-abc/usage").json()
    assert body["live"] is False and body["close_reason"] == "client_closed"


def test_another_tenants_session_usage_is_not_found(client, outsider, other_project, project, metered_session):
    client.logout()
    unauthenticated = client.get(f"/projects/{project.slug}/sessions/console-abc/usage")
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]["code"] == "not_authenticated"
    client.force_login(outsider)
    # Not a member of the session's project, and their own project has no such session.
    assert client.get(f"/projects/{project.slug}/sessions/console-abc/usage").json()["error"]["code"] == "not_found"
    missing = client.get(f"/projects/{other_project.slug}/sessions/console-abc/usage")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "session_not_found"
