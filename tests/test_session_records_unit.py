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


async def test_a_release_cancelled_again_while_it_waits_still_ends_the_record(dev_key):
    """A server may cancel a connection's task twice (a client gone, then the server's own shutdown).
    The second cancel lands while the release waits for a budget look to stop; the record must still end
    with the reason, and a drain waiting for every session to be released must not wait for good."""
    from realtime.gateway.auth import ConnectionAuth
    from realtime.gateway.lifecycle import SessionLifecycle, lifecycles_released

    row, _ = dev_key
    deployment = await Deployment.objects.aget(environment_id=row.environment_id, is_default=True)
    auth = ConnectionAuth(pk=str(row.pk), key_id=row.key_id, project_id=row.project_id, project_slug="p",
                          environment_id=row.environment_id, environment="development", via="api_key")
    lifecycle = SessionLifecycle(auth=auth, dialect="realtime", session_id="sess_cancelled_twice")
    await lifecycle.start(deployment_id=deployment.pk)

    stopping = asyncio.Event()
    let_go = asyncio.Event()

    async def budget_look() -> None:  # a look in a thread: the cancel waits for the thread's answer
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopping.set()
            await let_go.wait()
            raise

    lifecycle._work = asyncio.create_task(budget_look(), name="test-budget-look")
    await asyncio.sleep(0)
    release = asyncio.create_task(lifecycle.release(reason="client_closed"), name="test-release")
    await stopping.wait()  # the release is waiting for the look to stop
    release.cancel()  # the second cancel
    with pytest.raises(asyncio.CancelledError):
        await release
    let_go.set()

    async with asyncio.timeout(5):
        await lifecycles_released()
    await records_flush()
    record = await SessionRecord.objects.aget(session_id="sess_cancelled_twice")
    assert record.ended_at is not None and record.close_reason == "client_closed"
