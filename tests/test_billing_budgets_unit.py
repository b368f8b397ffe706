"""Monthly budgets: when a budget counts as spent, what the spend check costs (cached; a few rows of
monthly spend, never a sum over the ledger), who may change budgets, and the gateway side that refuses new
sessions and warns, then closes, live ones."""
from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.billing import budgets
from accounts.billing.budgets import budget_overview, budget_set, budget_state_get, budget_state_peek
from accounts.billing.usage import day_start, month_first, today
from accounts.exceptions import InvalidInput, NotAllowed
from accounts.services import api_key_rotate
from tests.test_billing_support import ledger_row

pytestmark = pytest.mark.unit


def _membership(project, user):
    return project.memberships.select_related("project").get(user=user)


@pytest.mark.django_db
def test_a_budget_is_spent_at_its_limit_for_the_key_or_the_whole_project(project, owner, dev_key,
                                                                          django_capture_on_commit_callbacks):
    row, _ = dev_key
    by = _membership(project, owner)
    budget_set(by=by, key_id=row.key_id, monthly_limit_micros=1000)
    budget_set(by=by, key_id=None, monthly_limit_micros=5000)
    ledger_row(row, "messages", 9, unit_price=111)  # 999
    assert budget_state_get(project_id=project.pk).exceeded(row.key_id) is None
    budgets.budget_cache.clear()
    ledger_row(row, "messages", 1, unit_price=1)  # 1000: at the key's limit
    state = budget_state_get(project_id=project.pk)
    assert state.exceeded(row.key_id) == "key"
    assert state.exceeded("key_someotherkey") is None  # the project still has 4000 left
    with django_capture_on_commit_callbacks(execute=True):
        budget_set(by=by, key_id=None, monthly_limit_micros=1000)
    assert budget_state_get(project_id=project.pk).exceeded("key_someotherkey") == "project"


@pytest.mark.django_db
def test_last_months_usage_does_not_count(project, owner, dev_key):
    row, _ = dev_key
    budget_set(by=_membership(project, owner), key_id=None, monthly_limit_micros=100)
    ledger_row(row, "messages", 1, unit_price=500, occurred_at=day_start(month_first(today())) - dt.timedelta(seconds=1))
    state = budget_state_get(project_id=project.pk)
    assert state.project_spent == 0 and state.exceeded(row.key_id) is None


@pytest.mark.django_db
def test_the_spend_check_is_cached_and_a_project_without_budgets_never_reads_its_spend(project, owner, dev_key,
                                                                                     monkeypatch, settings):
    row, _ = dev_key
    ledger_row(row, "messages", 3, unit_price=100)
    with CaptureQueriesContext(connection) as queries:
        state = budget_state_get(project_id=project.pk)
    assert len(queries) == 1 and "monthlyspend" not in queries[0]["sql"].lower()  # only the budgets
    assert state.exceeded(row.key_id) is None

    budget_set(by=_membership(project, owner), key_id=row.key_id, monthly_limit_micros=300)
    budgets.budget_cache.clear()
    with CaptureQueriesContext(connection) as queries:
        assert budget_state_get(project_id=project.pk).exceeded(row.key_id) == "key"
    # The budgets and the month's spend per key: never a sum over the ledger.
    assert len(queries) == 2 and not any("usagerecord" in q["sql"].lower() for q in queries)
    with CaptureQueriesContext(connection) as queries:
        assert budget_state_peek(project_id=project.pk).key_spent == {row.key_id: 300}
        budget_state_get(project_id=project.pk)
    assert len(queries) == 0  # fresh: no query at all

    # Older than BILLING_SPEND_CACHE_SECONDS: read again.
    now = budgets.time.monotonic()
    monkeypatch.setattr(budgets.time, "monotonic", lambda: now + settings.BILLING_SPEND_CACHE_SECONDS + 0.01)
    assert budget_state_peek(project_id=project.pk) is None


@pytest.mark.django_db
def test_a_key_budget_follows_the_key_through_rotation(project, owner, dev_key):
    old, _ = dev_key
    budget_set(by=_membership(project, owner), key_id=old.key_id, monthly_limit_micros=1000)
    new, _raw = api_key_rotate(api_key=old, grace=dt.timedelta(hours=1), created_by=owner)
    ledger_row(old, "messages", 6, unit_price=100)
    ledger_row(new, "messages", 4, unit_price=100)
    assert new.key_id == old.key_id
    assert budget_state_get(project_id=project.pk).exceeded(new.key_id) == "key"
    overview = budget_overview(project=project)
    assert [(line.name, line.limit_micros, line.spent_micros) for line in overview.keys] == [("dev key", 1000, 1000)]


@pytest.mark.django_db
def test_only_owners_and_admins_change_budgets_and_bad_limits_are_refused(project, owner, member, dev_key,
                                                                        django_capture_on_commit_callbacks):
    row, _ = dev_key
    with pytest.raises(NotAllowed):
        budget_set(by=_membership(project, member), key_id=None, monthly_limit_micros=1)
    by = _membership(project, owner)
    with pytest.raises(InvalidInput) as unknown:
        budget_set(by=by, key_id="key_notinthisproject", monthly_limit_micros=1)
    assert unknown.value.code == "unknown_key"
    for bad in (-1, 10**16, "12"):
        with pytest.raises(InvalidInput) as invalid:
            budget_set(by=by, key_id=None, monthly_limit_micros=bad)
        assert invalid.value.code == "invalid_limit"
    assert project.budgets.count() == 0

    assert budget_state_get(project_id=project.pk).project_limit is None  # cached in this process
    with django_capture_on_commit_callbacks(execute=True):
        budget_set(by=by, key_id=None, monthly_limit_micros=0)  # zero: nothing may be spent
    assert budget_state_get(project_id=project.pk).exceeded(row.key_id) == "project"  # the change is seen at once
    with django_capture_on_commit_callbacks(execute=True):
        budget_set(by=by, key_id=None, monthly_limit_micros=None)
    assert project.budgets.count() == 0 and budget_state_get(project_id=project.pk).project_limit is None


@pytest.mark.django_db
def test_operators_set_budgets_in_the_admin_for_keys_of_that_project_only(project, other_key, dev_key):
    from django.test import Client

    from accounts.models import Budget, User

    client = Client()
    client.force_login(User.objects.create_superuser(email="ops@example.com", password="operator passphrase 1"))
    refused = client.post("/admin/accounts/budget/add/", {"project": project.pk, "key_id": other_key[0].key_id,
                                                          "monthly_limit_micros": "5"})
    assert refused.status_code == 200 and "no key with that key id" in refused.content.decode()
    assert budget_state_get(project_id=project.pk).key_limits == {}  # cached in this process
    saved = client.post("/admin/accounts/budget/add/", {"project": project.pk, "key_id": dev_key[0].key_id,
                                                        "monthly_limit_micros": "5"})
    assert saved.status_code == 302 and Budget.objects.get().monthly_limit_micros == 5
    assert budget_state_get(project_id=project.pk).key_limits == {dev_key[0].key_id: 5}  # the admin refreshed it
    assert "$0.000005" in client.get("/admin/accounts/budget/").content.decode()


# --- The gateway side -------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_a_spent_budget_refuses_authentication_with_budget_exceeded(project, owner, dev_key):
    from realtime.gateway.auth import AuthFailed, api_key_authenticate

    row, raw = dev_key
    assert (await api_key_authenticate(raw=raw)).key_id == row.key_id
    await sync_to_async(budget_set)(by=await sync_to_async(_membership)(project, owner), key_id=row.key_id,
                                    monthly_limit_micros=0)
    budgets.budget_cache.clear()  # as another process would see it after BILLING_SPEND_CACHE_SECONDS
    with pytest.raises(AuthFailed) as refused:
        await api_key_authenticate(raw=raw)
    assert (refused.value.error.code, refused.value.error.close_code) == ("budget_exceeded", 4402)
    assert "this API key" in refused.value.error.message


@pytest.mark.django_db(transaction=True)
async def test_a_live_session_is_warned_then_closed_unless_the_budget_is_raised_in_time(project, owner, dev_key,
                                                                                        settings):
    from accounts.keys import api_key_verify
    from realtime.gateway.budgets import budget_watch

    settings.BILLING_SPEND_CACHE_SECONDS = 0.1
    settings.REALTIME_BUDGET_GRACE_SECONDS = 0.5
    row, raw = dev_key
    key = await sync_to_async(api_key_verify)(raw=raw)
    by = await sync_to_async(_membership)(project, owner)
    await sync_to_async(budget_set)(by=by, key_id=None, monthly_limit_micros=1000)

    async def watch():
        events: asyncio.Queue = asyncio.Queue()

        async def warn(error):
            events.put_nowait(("warn", error))

        async def close(error):
            events.put_nowait(("close", error))

        task = asyncio.create_task(budget_watch(auth=key, warn=warn, close=close), name="test-budget-watch")
        return task, events

    task, events = await watch()
    await sync_to_async(ledger_row)(row, "audio_in_seconds", Decimal("1.000"), unit_price=1000)  # 1000: spent
    kind, warning = await asyncio.wait_for(events.get(), 10)
    assert (kind, warning.code, warning.close_code) == ("warn", "budget_exceeded", None)
    assert "closed in 0.5 seconds" in warning.message
    kind, final = await asyncio.wait_for(events.get(), 10)
    assert (kind, final.code, final.close_code) == ("close", "budget_exceeded", 4402)
    await asyncio.wait_for(task, 5)  # the watch ends with the close

    # Raised during the grace period: the session stays.
    task, events = await watch()
    kind, _warning = await asyncio.wait_for(events.get(), 10)
    assert kind == "warn"
    await sync_to_async(budget_set)(by=by, key_id=None, monthly_limit_micros=5000)
    budgets.budget_cache.clear()
    await asyncio.sleep(settings.REALTIME_BUDGET_GRACE_SECONDS + 0.5)  # the grace period passes: no close
    assert events.empty() and not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
