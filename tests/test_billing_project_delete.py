"""Deleting a project keeps its billing history: the ledger rows and the monthly spend stay, its owners
can still read its statements, and a session live at the deletion is closed with its final usage
written to the ledger."""
from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from accounts.billing.money import money_format
from accounts.billing.usage import today
from accounts.models import Membership, MonthlySpend, Role, UsageRecord
from accounts.services import project_delete
from realtime.models import SessionRecord
from tests.test_billing_support import ledger_row
from tests.test_gateway_support import (
    ScriptedUpstream,
    bearer,
    connect,
    make_custom_deployment,
    recv_json,
    recv_until,
    session_url,
    until,
)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _owner_membership(project, owner) -> Membership:
    return Membership.objects.get(project=project, user=owner, role=Role.OWNER)


@pytest.mark.unit
@pytest.mark.django_db
def test_the_ledger_and_statements_outlive_the_project_for_its_owner_only(project, owner, member, outsider,
                                                                          dev_key):
    row, _raw = dev_key
    # Four rows worth 14,113 micro-units, as in the report.
    for metric, quantity, price in [("audio_in_seconds", "3.5", 1001), ("audio_out_seconds", "2.25", 3999),
                                    ("text_in_tokens", 120, 5), ("messages", 1, 1013)]:
        ledger_row(row, metric, quantity, unit_price=price)
    total = sum(UsageRecord.objects.filter(project=project).values_list("cost_micros", flat=True))
    assert total == 3503 + 8997 + 600 + 1013 == 14113
    month = f"{today():%Y-%m}"

    project_delete(by=_owner_membership(project, owner))

    assert sum(UsageRecord.objects.filter(project=project).values_list("cost_micros", flat=True)) == total
    assert UsageRecord.objects.filter(project=project).count() == 4
    assert sum(MonthlySpend.objects.filter(project=project).values_list("cost_micros", flat=True)) == total
    # Gone from the portal for everyone...
    assert _client(owner).get(f"/projects/{project.slug}/usage/").status_code == 404
    assert project.name not in _client(member).get("/projects/").content.decode()
    # ...but its owner finds its statements.
    listing = _client(owner).get("/projects/").content.decode()
    assert "/projects/deleted/" in listing
    deleted = _client(owner).get("/projects/deleted/").content.decode()
    url = f"/projects/deleted/{project.pk}/statements/{month}/"
    assert project.name in deleted and url in deleted
    statement = _client(owner).get(url)
    assert statement.status_code == 200
    html = statement.content.decode()
    assert f'id="statement-total">{money_format(total, exact=True)}<' in html and row.name in html
    # Not for a member, nor anyone else.
    assert _client(member).get(url).status_code == 404
    assert _client(outsider).get(url).status_code == 404
    assert _client(member).get("/projects/deleted/").content.decode().count(project.name) == 0


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_a_session_live_at_deletion_is_closed_and_its_final_usage_written(server_factory, project, owner,
                                                                                dev_key):
    row, raw = dev_key
    async with ScriptedUpstream() as upstream:
        await make_custom_deployment(project, upstream.url)
        # A long flush interval: what the session sends is written at its end, not before.
        server = server_factory(env={"REALTIME_METER_FLUSH_SECONDS": "5", "REALTIME_KEY_RECHECK_SECONDS": "1"})
        async with await connect(session_url(server, "deleted"), bearer(raw)) as ws:
            await recv_until(ws, "session.created")
            up = await upstream.next_connection()
            session_id = up.headers["X-Session"]
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(bytes(72000)).decode()}))  # 1.5 s
            await up.next_received()
            await sync_to_async(project_delete)(by=await sync_to_async(_owner_membership)(project, owner))
            error = await recv_json(ws)
            while error.get("type") != "error":
                error = await recv_json(ws)
            assert error["error"]["code"] == "key_revoked", error

        def written():
            audio = UsageRecord.objects.filter(session_id=session_id, metric="audio_in_seconds")
            ended = SessionRecord.objects.filter(session_id=session_id, ended_at__isnull=False).exists()
            return ended and sum(audio.values_list("quantity", flat=True)) == Decimal("1.500")

        assert await until(written)
    month = f"{today():%Y-%m}"
    html = await sync_to_async(lambda: _client(owner).get(
        f"/projects/deleted/{project.pk}/statements/{month}/").content.decode())()
    assert "Audio in" in html and "1.5 s" in html
