"""Budget alert emails: owners and admins hear when a monthly budget (the project's or a key's) reaches
50, 80 and 100 %, once per threshold per month.

Checked where a process refreshes a project's spend (``budget_state_load``) against the state it just
read: no query there. A threshold this process has not seen announced goes, after commit, to a mail
thread of its own, which claims it with a BudgetAlert row (the unique constraint lets exactly one
process send it) and emails; a slow mail server never holds the database thread or the event loop.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from accounts.billing.money import money_format
from accounts.models import ApiKey, BudgetAlert, Membership, Project
from accounts.selectors import MANAGER_ROLES

logger = logging.getLogger(__name__)

THRESHOLDS = (50, 80, 100)
_mail = ThreadPoolExecutor(max_workers=1, thread_name_prefix="budget-alert-mail")
# (project_id, key_id, month, threshold) this process knows were sent: no query for them again.
_known: set[tuple] = set()
_known_lock = threading.Lock()


def _reached(*, spent: int, limit: int) -> list[int]:
    if spent <= 0:
        return []  # nothing spent: not worth an alert, even against a zero budget
    percent = 100 if limit == 0 else spent * 100 // limit
    return [t for t in THRESHOLDS if percent >= t]


def budget_alerts_send(*, project_id: int, state) -> None:
    """Announce every threshold ``state`` (a BudgetState) has reached that this process has not seen
    announced this month. No query here: the claim (a BudgetAlert row) and the email happen after
    commit on the mail thread."""
    budgets = []
    if state.project_limit is not None:
        budgets.append(("", state.project_limit, state.project_spent))
    budgets += [(key_id, limit, state.key_spent.get(key_id, 0)) for key_id, limit in state.key_limits.items()]
    candidates = []
    with _known_lock:
        for key_id, limit, spent in budgets:
            for threshold in _reached(spent=spent, limit=limit):
                marker = (project_id, key_id, state.month, threshold)
                if marker not in _known:
                    candidates.append((key_id, threshold, spent, limit))
                    _known.add(marker)
        if len(_known) > 100_000:
            _known.clear()
    if candidates:
        transaction.on_commit(lambda: _mail.submit(_claim_and_email, project_id, state.month, candidates))


def _claim_and_email(project_id: int, month, candidates: list[tuple]) -> None:
    """Runs on the mail thread (its own database connection, closed when done): claim each threshold;
    email the highest one claimed per budget (a jump past several thresholds is one email)."""
    from django.db import connection

    try:
        highest: dict[str, BudgetAlert] = {}
        for key_id, threshold, spent, limit in candidates:
            try:
                with transaction.atomic():
                    alert = BudgetAlert.objects.create(project_id=project_id, key_id=key_id, month=month,
                                                       threshold=threshold, spent_micros=spent, limit_micros=limit)
            except IntegrityError:
                continue  # another process (or an earlier refresh) announced it
            if key_id not in highest or highest[key_id].threshold < threshold:
                highest[key_id] = alert
        for alert in highest.values():
            _email(alert)
    except Exception:
        logger.exception("budget alerts for project %s could not be sent", project_id)
    finally:
        connection.close()


def _email(alert: BudgetAlert) -> None:
    project: Project = Project.objects.get(pk=alert.project_id)
    recipients = sorted(set(Membership.objects.filter(project=project, role__in=MANAGER_ROLES)
                            .values_list("user__email", flat=True)))
    if not recipients:
        return
    what = f"the project {project.name}"
    if alert.key_id:
        name = ApiKey.objects.filter(project=project, key_id=alert.key_id).values_list("name", flat=True).first()
        what = f"the key “{name or alert.key_id}” of {project.name}"
    verb = "has used all of" if alert.threshold >= 100 else f"has used {alert.threshold}% of"
    subject = f"[{settings.SITE_NAME}] {project.name}: {alert.threshold}% of the monthly budget used"
    body = (
        f"Hello from {settings.SITE_NAME}!\n\n"
        f"This month, {what} {verb} its budget: {money_format(alert.spent_micros)} spent of "
        f"{money_format(alert.limit_micros)}.\n"
        + ("New sessions are now refused and live ones are closed until the budget is raised or the month "
           "ends.\n" if alert.threshold >= 100 else "")
        + f"\nBudgets and usage: {settings.SITE_URL}/projects/{project.slug}/usage/budgets/\n\n"
        f"You get this email as an owner or admin of {project.name}. Each threshold (50, 80, 100%) is "
        "announced once a month.\n"
    )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)


def budget_alerts_reset() -> None:
    """Forget what this process knows was sent (tests)."""
    with _known_lock:
        _known.clear()
