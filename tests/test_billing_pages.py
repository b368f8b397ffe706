"""The usage pages of the portal: the dashboard's chart and tables, a key's page, the CSV export, the
monthly statement and budgets, each agreeing with the ledger; members read, owners and admins change
budgets; bad filters are explained."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from accounts.billing.money import money_format
from accounts.billing.usage import today
from accounts.models import Budget, EnvironmentKind, UsageRecord
from accounts.services import api_key_create
from tests.test_billing_support import ledger_row

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def traffic(project, owner, dev_key):
    """Two keys in two environments over three days, with known quantities and costs."""
    dev, _ = dev_key
    prod, _ = api_key_create(project=project, environment=project.environments.get(kind=EnvironmentKind.PRODUCTION),
                             name="prod server", created_by=owner)
    now = timezone.now()
    for days_ago in range(3):
        when = now - dt.timedelta(days=days_ago)
        ledger_row(dev, "audio_in_seconds", Decimal("12.345") * (days_ago + 1), unit_price=1000, occurred_at=when)
        ledger_row(dev, "text_out_tokens", 300, unit_price=20, occurred_at=when)
        ledger_row(prod, "tasks:upscale", days_ago + 1, unit_price=2000, occurred_at=when)
    ledger_row(prod, "messages", 7, unit_price=100, occurred_at=now)
    return {"dev": dev, "prod": prod, "start": (now - dt.timedelta(days=2)).date(), "end": now.date()}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _ledger_cost(project, **filters) -> int:
    return sum(UsageRecord.objects.filter(project=project, **filters).values_list("cost_micros", flat=True))


def test_the_dashboard_charts_cost_per_day_with_a_data_table_and_totals(project, member, traffic):
    page = _client(member).get(f"/projects/{project.slug}/usage/",
                               {"from": traffic["start"].isoformat(), "to": traffic["end"].isoformat(), "by": "key"})
    assert page.status_code == 200
    html = page.content.decode()
    total = _ledger_cost(project)
    assert total == 12345 * 6 + 6000 * 3 + 2000 * 6 + 700
    # The chart: one bar segment per key and day, each worth what the ledger says.
    bars = re.findall(r'<rect class="bar"[^>]*data-date="([\d-]+)" data-series="([^"]+)" data-value="(\d+)"', html)
    assert {(series, date) for date, series, _ in bars} == {
        (key.key_id, (traffic["end"] - dt.timedelta(days=n)).isoformat()) for key in (traffic["dev"], traffic["prod"])
        for n in range(3)}
    assert sum(int(value) for _, _, value in bars) == total
    today_bars = sum(int(v) for d, _, v in bars if d == traffic["end"].isoformat())
    assert today_bars == _ledger_cost(project, occurred_at__date=traffic["end"])
    assert 'role="img"' in html and "<title" in html
    # The data table beside it has a row per day and the same total.
    table = html[html.index('id="usage-table"'):]
    assert table.count("<tr data-date=") == 3
    assert f'<td class="num total">${total / 1e6:.2f}</td>' in table
    # Totals by metric, key and environment.
    assert re.search(r'data-metric="audio_in_seconds"><th scope="row">Audio in</th><td class="num">74.07 s</td>', html)
    assert 'data-metric="tasks:upscale"' in html and "6 tasks" in html
    assert f'data-key-id="{traffic["dev"].key_id}"' in html and "prod server" in html
    assert 'data-environment="production"' in html and 'data-environment="development"' in html


def test_the_chart_shows_a_metrics_quantity_and_filters_by_environment(project, owner, traffic):
    html = _client(owner).get(f"/projects/{project.slug}/usage/", {
        "from": traffic["start"].isoformat(), "to": traffic["end"].isoformat(), "show": "audio_in_seconds",
        "by": "environment", "environment": "development"}).content.decode()
    values = re.findall(r'data-series="development" data-value="(\d+)"', html)
    assert sorted(int(v) for v in values) == [12345, 24690, 37035]  # thousandths of a second
    assert "Audio in (seconds) per day" in html
    assert 'data-series="production"' not in html


def test_the_key_page_shows_that_keys_usage_by_metric(project, member, traffic):
    dev = traffic["dev"]
    page = _client(member).get(f"/projects/{project.slug}/usage/keys/{dev.key_id}/",
                               {"from": traffic["start"].isoformat(), "to": traffic["end"].isoformat()})
    assert page.status_code == 200
    html = page.content.decode()
    series = set(re.findall(r'data-series="([^"]+)"', html))
    assert series == {"audio_in_seconds", "text_out_tokens"}
    assert f'<p class="tile-value" id="range-cost">${_ledger_cost(project, key_id=dev.key_id) / 1e6:.2f}</p>' in html
    assert dev.masked in html and "tasks:upscale" not in html


def test_a_key_of_another_project_is_a_404_on_my_project(project, other_project, outsider, other_key, dev_key):
    client = _client(outsider)
    assert client.get(f"/projects/{other_project.slug}/usage/keys/{dev_key[0].key_id}/").status_code == 404
    assert client.get(f"/projects/{other_project.slug}/usage/keys/{other_key[0].key_id}/").status_code == 200


def test_the_csv_export_is_the_ledger_per_day_environment_key_and_metric(project, member, traffic):
    response = _client(member).get(f"/projects/{project.slug}/usage/export.csv",
                                   {"from": traffic["start"].isoformat(), "to": traffic["end"].isoformat()})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 3 * 3 + 1
    by_key_metric: dict[tuple, Decimal] = {}
    for row in rows:
        assert row["currency"] == "USD" and Decimal(row["cost"]) * 1_000_000 == int(row["cost_micros"])
        by_key_metric[(row["key_id"], row["metric"])] = by_key_metric.get((row["key_id"], row["metric"]), 0) + \
            Decimal(row["quantity"])
    ledger = {}
    for record in UsageRecord.objects.filter(project=project):
        ledger[(record.key_id, record.metric)] = ledger.get((record.key_id, record.metric), 0) + record.quantity
    assert by_key_metric == ledger
    assert sum(int(row["cost_micros"]) for row in rows) == _ledger_cost(project)
    assert {row["key_name"] for row in rows} == {"dev key", "prod server"}


def test_the_monthly_statement_has_a_line_per_key_and_metric_and_the_total(project, member, traffic):
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    html = _client(member).get(f"/projects/{project.slug}/usage/statements/{today():%Y-%m}/").content.decode()
    in_month = UsageRecord.objects.filter(project=project, occurred_at__gte=month_start)
    expected: dict[str, set] = {}
    for record in in_month:
        expected.setdefault(record.key_id, set()).add(record.metric)
    shown = {key_id: set(re.findall(r'<tr data-metric="([^"]+)">', body))
             for key_id, body in re.findall(r'<tbody data-key-id="([^"]+)">(.*?)</tbody>', html, flags=re.S)}
    assert shown == expected
    for key_id in expected:
        subtotal = sum(in_month.filter(key_id=key_id).values_list("cost_micros", flat=True))
        assert re.search(rf'<tr class="subtotal"><th scope="row">Subtotal [^<]+</th><td></td><td></td>'
                         rf'<td class="num">{re.escape(money_format(subtotal, exact=True))}</td>', html)
    total = sum(in_month.values_list("cost_micros", flat=True))
    assert f'id="statement-total">{money_format(total, exact=True)}<' in html
    assert "$0.00002 per token" in html and "$0.002 per task" in html and "$0.001 per second" in html
    assert "@media print" in (settings.BASE_DIR / "static/css/billing.css").read_text()


def test_statement_of_a_month_without_usage_and_a_malformed_month(project, member):
    client = _client(member)
    assert "No usage in January 2020" in client.get(f"/projects/{project.slug}/usage/statements/2020-01/").content.decode()
    assert client.get(f"/projects/{project.slug}/usage/statements/2020-13/").status_code == 404


@pytest.mark.parametrize("query, message", [
    ({"from": "yesterday"}, "from must be a date"), ({"from": "2026-02-10", "to": "2026-02-01"}, "must not be after"),
    ({"from": "2020-01-01", "to": "2026-01-01"}, "at most 366 days"), ({"show": "bogus"}, "Unknown measure"),
    ({"environment": "qa"}, "Unknown environment"),
])
def test_bad_filters_are_explained_and_the_page_still_renders(project, member, query, message):
    page = _client(member).get(f"/projects/{project.slug}/usage/", query)
    assert page.status_code == 400 and message in page.content.decode()


def test_a_bad_csv_range_is_a_400(project, member):
    assert _client(member).get(f"/projects/{project.slug}/usage/export.csv", {"to": "soon"}).status_code == 400


def test_owners_set_and_remove_budgets_and_members_only_read_them(project, owner, member, traffic):
    dev = traffic["dev"]
    url = f"/projects/{project.slug}/usage/budgets/"
    owner_client, member_client = _client(owner), _client(member)
    response = owner_client.post(url, {"key_id": "", "limit": "25.50"}, follow=True)
    assert "Monthly budget of the project set to $25.50." in response.content.decode()
    owner_client.post(url, {"key_id": dev.key_id, "limit": "0.0123"})
    assert dict(Budget.objects.values_list("key_id", "monthly_limit_micros")) == {"": 25_500_000, dev.key_id: 12_300}
    page = member_client.get(url).content.decode()
    assert "$25.50" in page and "Only the project's owners and admins can change budgets." in page
    assert 'name="limit"' not in page
    # The key's budget is spent (its usage this month is more than $0.0123).
    assert re.search(rf'data-budget="{dev.key_id}" class="over"', page)

    refused = member_client.post(url, {"key_id": "", "limit": "1"})
    assert refused.status_code == 403 and Budget.objects.get(key_id="").monthly_limit_micros == 25_500_000
    bad = owner_client.post(url, {"key_id": "", "limit": "lots"})
    assert bad.status_code == 400 and "Enter the limit as an amount in USD" in bad.content.decode()
    owner_client.post(url, {"key_id": "", "limit": "25.50", "remove": "1"})
    assert list(Budget.objects.values_list("key_id", flat=True)) == [dev.key_id]


def test_the_dashboard_shows_the_project_budget_in_use(project, owner, traffic):
    Budget.objects.create(project=project, key_id="", monthly_limit_micros=1_000_000)
    html = _client(owner).get(f"/projects/{project.slug}/usage/").content.decode()
    spent = _ledger_cost(project, occurred_at__gte=timezone.now().replace(day=1, hour=0, minute=0, second=0))
    assert f"{spent * 100 // 1_000_000}% of the $1.00 monthly budget" in html


def test_a_key_name_cannot_become_a_spreadsheet_formula_in_the_csv(project, owner, dev_key):
    row, _ = dev_key
    row.name = "=HYPERLINK(\"http://evil.example\")"
    row.save(update_fields=["name"])
    ledger_row(row, "messages", 1, unit_price=100)
    rows = list(csv.DictReader(io.StringIO(_client(owner).get(f"/projects/{project.slug}/usage/export.csv")
                                           .content.decode())))
    assert rows[0]["key_name"] == "'" + row.name
