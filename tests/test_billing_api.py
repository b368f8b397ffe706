"""GET /api/v1/usage and /api/v1/projects/<slug>/budgets: grouped usage for portal sessions and API
keys (a key sees its own project and environment only), JSON 400s with codes, budgets set through the
API, and both in the OpenAPI schema."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import yaml
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Budget, EnvironmentKind
from accounts.services import api_key_create
from tests.test_billing_support import ledger_row

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def usage(project, owner, dev_key):
    dev, dev_raw = dev_key
    prod, prod_raw = api_key_create(project=project, environment=project.environments.get(
        kind=EnvironmentKind.PRODUCTION), name="prod server", created_by=owner)
    now = timezone.now()
    yesterday = now - dt.timedelta(days=1)
    ledger_row(dev, "audio_in_seconds", "1.250", unit_price=1000, occurred_at=yesterday)
    ledger_row(dev, "audio_in_seconds", "0.750", unit_price=1000, occurred_at=now)
    ledger_row(dev, "text_in_tokens", 40, unit_price=5, occurred_at=now)
    ledger_row(prod, "messages", 3, unit_price=100, occurred_at=now)
    return {"dev": dev, "dev_raw": dev_raw, "prod": prod, "prod_raw": prod_raw,
            "from": yesterday.date().isoformat(), "to": now.date().isoformat()}


def _session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _key(raw) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def _get(client, **params):
    return client.get("/api/v1/usage", params)


def test_a_member_gets_usage_grouped_by_day_key_environment_and_metric(project, member, usage):
    client = _session(member)
    base = {"project": project.slug, "from": usage["from"], "to": usage["to"]}
    by_day = _get(client, **base, group_by="day").json()
    assert (by_day["currency"], by_day["environment"], by_day["total_cost_micros"]) == ("USD", None, 2500)
    assert by_day["results"] == [
        {"date": usage["from"], "usage": {"audio_in_seconds": "1.25"}, "cost_micros": 1250, "cost": "$0.00125"},
        {"date": usage["to"], "usage": {"audio_in_seconds": "0.75", "text_in_tokens": "40", "messages": "3"},
         "cost_micros": 1250, "cost": "$0.00125"},
    ]
    by_key = {row["key_id"]: row for row in _get(client, **base, group_by="key").json()["results"]}
    assert by_key[usage["dev"].key_id] == {
        "key_id": usage["dev"].key_id, "key_name": "dev key", "environment": "development",
        "usage": {"audio_in_seconds": "2", "text_in_tokens": "40"}, "cost_micros": 2200, "cost": "$0.0022"}
    assert by_key[usage["prod"].key_id]["cost_micros"] == 300
    by_env = _get(client, **base, group_by="environment").json()["results"]
    assert [(row["environment"], row["cost_micros"]) for row in by_env] == [("development", 2200), ("production", 300)]
    by_metric = _get(client, **base, group_by="metric").json()["results"]
    assert [(row["metric"], row["usage"][row["metric"]], row["cost_micros"]) for row in by_metric] == [
        ("audio_in_seconds", "2", 2000), ("text_in_tokens", "40", 200), ("messages", "3", 300)]
    only_prod = _get(client, **base, group_by="metric", environment="production").json()
    assert [row["metric"] for row in only_prod["results"]] == ["messages"] and only_prod["environment"] == "production"


def test_the_default_range_is_this_month_and_grouping_is_by_day(project, member, usage):
    body = _get(_session(member), project=project.slug).json()
    first = timezone.now().date().replace(day=1)
    assert (body["from"], body["to"], body["group_by"]) == (first.isoformat(), usage["to"], "day")
    assert all(row["date"] >= first.isoformat() for row in body["results"])


def test_an_api_key_sees_only_its_own_project_and_environment(project, usage, other_project):
    client = _key(usage["prod_raw"])
    body = _get(client, group_by="metric", **{"from": usage["from"], "to": usage["to"]}).json()
    assert body["project"] == project.slug and body["environment"] == "production"
    assert [row["metric"] for row in body["results"]] == ["messages"]  # nothing of the development key
    assert _get(client, project=project.slug).status_code == 200
    assert _get(client, project=other_project.slug).status_code == 404
    refused = _get(client, environment="development")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "environment_forbidden"


def test_another_tenants_project_is_a_404(project, usage, outsider, other_key):
    response = _get(_session(outsider), project=project.slug)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert _get(_key(other_key[1]), project=project.slug).status_code == 404
    # A key of another project, asking for its own: none of this project's usage.
    assert _get(_key(other_key[1])).json()["results"] == []


@pytest.mark.parametrize("params, code", [
    ({"from": "2026-02-30"}, "invalid_date"), ({"to": "tomorrow"}, "invalid_date"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "invalid_range"), ({"from": "2024-01-01", "to": "2025-06-01"},
                                                                     "range_too_long"),
    ({"group_by": "hour"}, "invalid_group_by"), ({"environment": "qa"}, "unknown_environment"),
])
def test_bad_parameters_are_a_json_400_with_a_code(project, member, params, code):
    response = _get(_session(member), project=project.slug, **params)
    assert response.status_code == 400 and response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_a_portal_session_must_name_the_project(member, project):
    response = _get(_session(member))
    assert response.status_code == 400 and response.json()["error"]["code"] == "project_required"


def test_an_anonymous_caller_is_refused(project):
    assert APIClient().get("/api/v1/usage", {"project": project.slug}).status_code in (401, 403)


def test_budgets_through_the_api(project, owner, member, usage):
    url = f"/api/v1/projects/{project.slug}/budgets"
    owner_client = _session(owner)
    body = owner_client.put(url, {"monthly_limit_micros": 5_000_000}, format="json").json()
    assert body["project"]["monthly_limit_micros"] == 5_000_000 and body["currency"] == "USD"
    dev = usage["dev"]
    body = owner_client.put(url, {"key_id": dev.key_id, "monthly_limit_micros": 1000}, format="json").json()
    line = next(line for line in body["keys"] if line["key_id"] == dev.key_id)
    month_spend = sum(r.cost_micros for r in dev.usage_records.filter(occurred_at__gte=timezone.now().replace(
        day=1, hour=0, minute=0, second=0, microsecond=0)))
    assert (line["monthly_limit_micros"], line["spent_micros"], line["exceeded"]) == (1000, month_spend,
                                                                                       month_spend >= 1000)
    assert _session(member).get(url).json()["project"]["monthly_limit_micros"] == 5_000_000
    refused = _session(member).put(url, {"monthly_limit_micros": 1}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    unknown = owner_client.put(url, {"key_id": "key_nope", "monthly_limit_micros": 1}, format="json")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_key"
    negative = owner_client.put(url, {"monthly_limit_micros": -5}, format="json")
    assert negative.status_code == 400 and negative.json()["error"]["code"] == "invalid"
    keyed = _key(usage["dev_raw"]).get(url)
    assert keyed.status_code == 403 and keyed.json()["error"]["code"] == "session_required"
    owner_client.put(url, {"monthly_limit_micros": None}, format="json")
    assert list(Budget.objects.values_list("key_id", flat=True)) == [dev.key_id]


def test_usage_and_budgets_are_in_the_openapi_schema(member):
    schema = yaml.safe_load(_session(member).get("/api/schema/").content)
    usage = schema["paths"]["/api/v1/usage"]["get"]
    assert {p["name"] for p in usage["parameters"]} == {"from", "to", "group_by", "project", "environment"}
    group_by = next(p for p in usage["parameters"] if p["name"] == "group_by")
    assert set(group_by["schema"]["enum"]) == {"day", "key", "environment", "metric"}
    assert set(usage["responses"]) >= {"200", "400", "403", "404"}
    assert {"get", "put"} <= set(schema["paths"]["/api/v1/projects/{slug}/budgets"])


def test_usage_quantities_are_exact_decimals(project, member, dev_key):
    ledger_row(dev_key[0], "session_seconds", Decimal("0.001"))
    ledger_row(dev_key[0], "session_seconds", Decimal("1234567.999"))
    body = _get(_session(member), project=project.slug, group_by="metric").json()
    assert body["results"][0]["usage"] == {"session_seconds": "1234568"}
