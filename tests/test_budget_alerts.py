"""Budget alert emails: owners and admins (not members) hear at 50, 80 and 100 % of a monthly budget,
once per threshold per month, whichever process refreshes the spend first."""
from __future__ import annotations

import pytest
from django.core import mail

from accounts.billing import alerts
from accounts.billing.budgets import budget_state_load
from accounts.billing.ledger import monthly_spend_add
from accounts.billing.usage import month_first, today
from accounts.models import Budget, BudgetAlert, EnvironmentKind, Membership, Role
from accounts.services import api_key_create
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)  # the email goes out after commit, on its own thread


@pytest.fixture(autouse=True)
def _locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_NAME = "Acme Gateway"
    alerts.budget_alerts_reset()
    mail.outbox = []
    yield
    alerts.budget_alerts_reset()


def refresh(project) -> list:
    """What a gateway process does every BILLING_SPEND_CACHE_SECONDS; then wait for the mail thread."""
    budget_state_load(project_id=project.pk)
    alerts._mail.submit(lambda: None).result(timeout=10)
    sent, mail.outbox = list(mail.outbox), []
    return sent


def spend(project, key, micros: int) -> None:
    monthly_spend_add(project_id=project.pk, key_id=key.key_id, month=month_first(today()), cost_micros=micros)


def test_each_threshold_is_announced_once_to_owners_and_admins(project, owner, member, dev_key):
    key, _raw = dev_key
    admin = make_user("admin@example.com")
    Membership.objects.create(user=admin, project=project, role=Role.ADMIN)
    Budget.objects.create(project=project, key_id="", monthly_limit_micros=1_000_000)

    spend(project, key, 400_000)
    assert refresh(project) == []

    spend(project, key, 150_000)  # 55 %
    [fifty] = refresh(project)
    assert sorted(fifty.to) == ["admin@example.com", "owner@example.com"]  # not the plain member
    assert fifty.subject == "[Acme Gateway] Acme Voice: 50% of the monthly budget used"
    assert "$0.55 spent of $1.00" in fifty.body and "/projects/acme-voice/usage/budgets/" in fifty.body

    assert refresh(project) == []  # the same threshold again: nothing
    alerts.budget_alerts_reset()  # another process, which never saw it: the database claim holds
    assert refresh(project) == []

    spend(project, key, 300_000)  # 85 %
    [eighty] = refresh(project)
    assert "80% of the monthly budget" in eighty.subject

    spend(project, key, 200_000)  # 105 %
    [hundred] = refresh(project)
    assert "100% of the monthly budget" in hundred.subject and "has used all of its budget" in hundred.body
    assert "New sessions are now refused" in hundred.body
    assert refresh(project) == []
    assert sorted(BudgetAlert.objects.filter(project=project).values_list("threshold", flat=True)) == [50, 80, 100]


def test_a_key_budget_passing_every_threshold_at_once_sends_one_email(project, owner):
    key, _raw = api_key_create(project=project, environment=project.environments.get(kind=EnvironmentKind.PRODUCTION),
                               name="checkout", created_by=owner)
    Budget.objects.create(project=project, key_id=key.key_id, monthly_limit_micros=100_000)
    spend(project, key, 250_000)
    [email] = refresh(project)
    assert "100%" in email.subject and "the key “checkout” of Acme Voice" in email.body
    # Every threshold is claimed, so none is announced later this month.
    assert sorted(BudgetAlert.objects.filter(key_id=key.key_id).values_list("threshold", flat=True)) == [50, 80, 100]
    assert refresh(project) == []


def test_no_budget_no_alert_and_no_query_for_alerts(project, owner, dev_key, django_assert_num_queries):
    key, _raw = dev_key
    spend(project, key, 10**9)
    with django_assert_num_queries(1):  # the budgets; no spend, no alerts
        budget_state_load(project_id=project.pk)
    assert BudgetAlert.objects.count() == 0
