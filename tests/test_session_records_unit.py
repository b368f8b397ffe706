"""Session records written by the gateway core (realtime/gateway/records.py): opens that arrive
together are committed together and each open learns its own outcome; ends are noted and written."""
from __future__ import annotations

import asyncio

import pytest

from accounts.models import Deployment
from realtime.gateway.records import records_flush, session_record_close, session_record_open
from realtime.models import SessionRecord

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]


def fields(row, deployment, session_id: str, **changes) -> dict:
    return {"session_id": session_id, "project_id": row.project_id, "api_key_pk": row.pk, "key_id": row.key_id,
            "deployment_id": deployment.pk, "dialect": "realtime", **changes}


async def test_opens_arriving_together_each_get_their_own_outcome(dev_key):
    row, _ = dev_key
    deployment = await Deployment.objects.aget(environment_id=row.environment_id, is_default=True)
    good = [fields(row, deployment, f"sess_group_{n}") for n in range(20)]
    bad = fields(row, deployment, "sess_group_bad", api_key_pk="00000000-0000-0000-0000-000000000000")  # no such key
    outcomes = await asyncio.gather(*(session_record_open(**f) for f in [*good[:10], bad, *good[10:]]),
                                    return_exceptions=True)
    assert [o is None for o in outcomes] == [True] * 10 + [False] + [True] * 10
    names = {r async for r in SessionRecord.objects.filter(ended_at__isnull=True).values_list("session_id", flat=True)}
    assert names == {f["session_id"] for f in good}  # all the good ones, live; not the refused one


async def test_an_end_noted_after_the_open_is_written(dev_key):
    row, _ = dev_key
    deployment = await Deployment.objects.aget(environment_id=row.environment_id, is_default=True)
    await session_record_open(**fields(row, deployment, "sess_ends"))
    session_record_close(session_id="sess_ends", close_reason="client_closed")
    await records_flush()
    record = await SessionRecord.objects.aget(session_id="sess_ends")
    assert record.ended_at is not None and record.close_reason == "client_closed"
