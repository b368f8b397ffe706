"""Bad input is a 4xx, never a 500: deeply nested JSON on every JSON REST endpoint and the console
token endpoint, and dates at the end of the calendar on the usage API, dashboard, CSV and statement."""
from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import EnvironmentKind

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

NESTED = "[" * 100_000 + "]" * 100_000
NESTED_OBJECT = '{"a":' * 50_000 + "1" + "}" * 50_000
DEEP_BUT_PARSEABLE = '{"name": "x", "tools": ' + "[" * 900 + "]" * 900 + "}"


@pytest.fixture
def owner_client(owner) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    return client


def json_endpoints(project) -> list[tuple[str, str]]:
    deployment = project.deployments.get(environment__kind=EnvironmentKind.DEVELOPMENT, is_default=True)
    agent = deployment.agent
    base = f"/api/v1/projects/{project.slug}"
    return [
        ("post", "/api/v1/projects"), ("patch", base), ("post", f"{base}/members"), ("post", f"{base}/keys"),
        ("put", f"{base}/budgets"), ("post", "/api/v1/tokens"), ("post", f"{base}/agents"),
        ("patch", f"{base}/agents/{agent.pk}"), ("post", f"{base}/deployments"),
        ("patch", f"{base}/deployments/{deployment.pk}"), ("post", f"/projects/{project.slug}/console/token"),
    ]


@pytest.mark.parametrize("body", [NESTED, NESTED_OBJECT, DEEP_BUT_PARSEABLE], ids=["array", "object", "deep-900"])
def test_deeply_nested_json_is_a_400_on_every_json_endpoint(owner_client, project, dev_key, body):
    answers = {}
    for method, url in json_endpoints(project):
        response = getattr(owner_client, method)(url, data=body, content_type="application/json")
        answers[url, method] = response.status_code
        assert 400 <= response.status_code < 500, (method, url, response.status_code, response.content[:300])
        assert response["Content-Type"].startswith("application/json")
    # and with an API key instead of a session
    key_client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {dev_key[1]}")
    response = key_client.post("/api/v1/tokens", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] in ("malformed_json", "too_deep")


@pytest.mark.parametrize("bad", ["9999-12-31", "9999-12-30", "0001-01-01"])
def test_dates_at_the_ends_of_the_calendar_are_refused_on_every_usage_view(owner_client, project, dev_key, bad):
    base = f"/projects/{project.slug}/usage"
    for start, end in (("2026-01-01", bad), (bad, bad)):
        api = owner_client.get("/api/v1/usage", {"project": project.slug, "from": start, "to": end})
        assert api.status_code == 400 and api.json()["error"]["code"] == "invalid_date", api.content[:300]
        csv = owner_client.get(f"{base}/export.csv", {"from": start, "to": end})
        assert csv.status_code == 400 and b"must be a date" in csv.content
        # The dashboard and a key's page say so (and show this month instead).
        for page in (f"{base}/", f"{base}/keys/{dev_key[0].key_id}/"):
            response = owner_client.get(page, {"from": start, "to": end})
            assert response.status_code == 400 and b"must be a date between" in response.content, page


@pytest.mark.parametrize("month", ["9999-12", "0001-01", "10000-01"])
def test_a_statement_of_a_month_at_the_ends_of_the_calendar_is_a_404(owner_client, project, month):
    assert owner_client.get(f"/projects/{project.slug}/usage/statements/{month}/").status_code == 404
