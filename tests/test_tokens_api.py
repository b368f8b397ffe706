"""POST /api/v1/tokens (API keys only) and the portal console's token endpoint (session + CSRF)."""
import json
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from accounts.models import ApiKey, Deployment, EnvironmentKind
from accounts.services import api_key_revoke
from realtime.gateway.tokens import TokenRejected, public_key_cache, token_verify

pytestmark = pytest.mark.unit

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fresh_public_keys():
    public_key_cache.clear()
    yield
    public_key_cache.clear()


def _mint(client, raw_key, body=None, **headers):
    return client.post(
        "/api/v1/tokens", data=json.dumps(body or {}), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}", **headers,
    )


def _error_code(response) -> str:
    return response.json()["error"]["code"]


# --- POST /api/v1/tokens --------------------------------------------------------------------------

def test_an_api_key_mints_a_token_that_verifies(client, dev_key):
    row, raw = dev_key
    response = _mint(client, raw)
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    claims = token_verify(token=body["token"])
    assert claims.key_pk == str(row.pk)
    assert claims.project_slug == row.project.slug
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert timedelta(seconds=295) < expires_at - timezone.now() <= timedelta(seconds=300)


def test_basic_auth_works_too(client, dev_key):
    import base64

    _, raw = dev_key
    response = client.post("/api/v1/tokens", data="{}", content_type="application/json",
                           HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{raw}:".encode()).decode())
    assert response.status_code == 201


def test_options_are_carried_in_the_token(client, dev_key):
    row, raw = dev_key
    deployment = Deployment.objects.get(environment=row.environment, is_default=True)
    response = _mint(client, raw, {
        "ttl_seconds": 60, "deployment": deployment.deployment_key, "single_use": True,
        "max_session_seconds": 30, "session": {"instructions": "Be brief."},
    })
    assert response.status_code == 201
    claims = token_verify(token=response.json()["token"])
    assert claims.deployment_key == deployment.deployment_key
    assert claims.single_use and claims.max_session_seconds == 30
    assert claims.session == {"instructions": "Be brief."}
    assert claims.expires_at - timezone.now() <= timedelta(seconds=60)
    with pytest.raises(TokenRejected):
        token_verify(token=response.json()["token"])  # single use


@pytest.mark.parametrize("body, field", [
    ({"ttl_seconds": 0}, "ttl_seconds"),
    ({"ttl_seconds": 3601}, "ttl_seconds"),
    ({"ttl_seconds": "soon"}, "ttl_seconds"),
    ({"max_session_seconds": 0}, "max_session_seconds"),
    ({"max_session_seconds": -10}, "max_session_seconds"),
    ({"session": ["not", "an", "object"]}, "session"),
    ({"single_use": "perhaps"}, "single_use"),
])
def test_invalid_bodies_get_a_400_naming_the_field(client, dev_key, body, field):
    response = _mint(client, dev_key[1], body)
    assert response.status_code == 400
    assert _error_code(response) == "invalid"
    assert field in response.json()["error"]["fields"]


def test_malformed_json_is_a_400(client, dev_key):
    response = client.post("/api/v1/tokens", data="{nope", content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {dev_key[1]}")
    assert response.status_code == 400
    assert "error" in response.json()


def test_a_deployment_outside_the_keys_environment_is_404(client, dev_key, project, other_project):
    production = Deployment.objects.get(project=project, environment__kind=EnvironmentKind.PRODUCTION)
    foreign = Deployment.objects.filter(project=other_project).first()
    for key in (production.deployment_key, foreign.deployment_key, "dep_nonexistent"):
        response = _mint(client, dev_key[1], {"deployment": key})
        assert response.status_code == 404
        assert _error_code(response) == "deployment_not_found"


def test_no_credentials_is_401_and_a_bad_key_says_why(client, dev_key):
    assert client.post("/api/v1/tokens", data="{}", content_type="application/json").status_code == 401
    response = _mint(client, dev_key[1][:-1] + ("A" if dev_key[1][-1] != "A" else "B"))
    assert response.status_code == 401
    assert _error_code(response) == "bad_checksum"


def test_a_revoked_key_cannot_mint(client, dev_key):
    row, raw = dev_key
    api_key_revoke(api_key=row)
    response = _mint(client, raw)
    assert response.status_code == 401
    assert _error_code(response) == "revoked_key"


def test_a_portal_session_cannot_use_the_api_key_endpoint(dev_key, owner):
    client = Client()  # CSRF not enforced, so the refusal is the endpoint's own
    client.force_login(owner)
    response = client.post("/api/v1/tokens", data="{}", content_type="application/json")
    assert response.status_code == 403
    assert _error_code(response) == "api_key_required"


def test_the_endpoint_is_in_the_openapi_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/tokens"]["post"]
    assert "201" in operation["responses"]
    assert "requestBody" in operation


# --- Portal console token -------------------------------------------------------------------------

def _signed_in(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    assert client.login(email=user.email, password=PASSWORD)
    return client


def _csrf_token(client, project) -> str:
    client.get(f"/projects/{project.slug}/agents/")
    return client.cookies["csrftoken"].value


def _console_token(client, project, body, csrf=None):
    headers = {"HTTP_X_CSRFTOKEN": csrf} if csrf else {}
    return client.post(f"/projects/{project.slug}/console/token", data=json.dumps(body),
                       content_type="application/json", **headers)


@pytest.mark.parametrize("who", ["owner", "member"])
def test_members_get_a_console_token(request, project, who):
    client = _signed_in(request.getfixturevalue(who))
    csrf = _csrf_token(client, project)
    deployment = Deployment.objects.get(project=project, environment__kind=EnvironmentKind.STAGING)
    response = _console_token(client, project, {"environment": "staging", "deployment": deployment.deployment_key}, csrf)
    assert response.status_code == 200, response.content
    body = response.json()
    claims = token_verify(token=body["token"])
    assert (claims.project_slug, claims.environment, claims.deployment_key) == (
        project.slug, "staging", deployment.deployment_key)
    assert body["ws_url"].startswith("ws://") and "/v1/realtime" in body["ws_url"]
    console_key = ApiKey.objects.get(pk=claims.key_pk)
    assert console_key.name == "Console" and console_key.environment.kind == "staging"
    # The same internal key serves the next token; it is not multiplied per click.
    again = _console_token(client, project, {"environment": "staging"}, csrf)
    assert token_verify(token=again.json()["token"]).key_pk == str(console_key.pk)


def test_revoking_the_console_key_turns_the_console_off_until_re_enabled(project, owner, member):
    client = _signed_in(owner)
    csrf = _csrf_token(client, project)
    first = _console_token(client, project, {"environment": "development"}, csrf).json()["token"]
    console_key = ApiKey.objects.get(pk=token_verify(token=first).key_pk)
    assert console_key.last_used_at is not None  # each console use is recorded
    api_key_revoke(api_key=console_key)
    with pytest.raises(TokenRejected) as caught:
        token_verify(token=first)
    assert caught.value.reason == "token_key_revoked"

    # The revocation holds: the next Connect is refused, saying why, and no new key appears.
    refused = _console_token(client, project, {"environment": "development"}, csrf)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "console_key_revoked"
    assert "re-enable" in refused.json()["error"]["message"]
    assert ApiKey.objects.filter(project=project, name="Console").count() == 1
    # Other environments are not affected.
    assert _console_token(client, project, {"environment": "staging"}, csrf).status_code == 200

    # A member cannot turn it back on; an owner can, explicitly.
    member_client = _signed_in(member)
    member_csrf = _csrf_token(member_client, project)
    member_client.post(f"/projects/{project.slug}/console/enable",
                       {"environment": "development", "csrfmiddlewaretoken": member_csrf})
    assert _console_token(client, project, {"environment": "development"}, csrf).status_code == 409
    enabled = client.post(f"/projects/{project.slug}/console/enable",
                          {"environment": "development", "csrfmiddlewaretoken": csrf})
    assert enabled.status_code == 302
    second = _console_token(client, project, {"environment": "development"}, csrf).json()["token"]
    assert token_verify(token=second).key_pk != str(console_key.pk)


def test_console_token_needs_csrf(project, owner):
    client = _signed_in(owner)
    _csrf_token(client, project)
    response = _console_token(client, project, {"environment": "development"})
    assert response.status_code == 403
    assert not ApiKey.objects.filter(project=project, name="Console").exists()


def test_an_outsider_gets_404_and_no_token(project, other_project, outsider):
    client = _signed_in(outsider)
    csrf = _csrf_token(client, other_project)  # a valid CSRF token from the outsider's own project
    response = _console_token(client, project, {"environment": "development"}, csrf)
    assert response.status_code == 404
    assert "token" not in response.json()
    assert not ApiKey.objects.filter(project=project, name="Console").exists()


def test_anonymous_gets_401(project):
    client = Client()
    response = _console_token(client, project, {"environment": "development"})
    assert response.status_code == 401


@pytest.mark.parametrize("body, status, code", [
    ({"environment": "moon"}, 400, "invalid_environment"),
    ({"environment": "production", "deployment": "dep_nonexistent"}, 404, "deployment_not_found"),
])
def test_console_token_bad_input(project, owner, body, status, code):
    client = _signed_in(owner)
    csrf = _csrf_token(client, project)
    response = _console_token(client, project, body, csrf)
    assert response.status_code == status
    assert _error_code(response) == code


def test_console_token_cannot_reach_another_projects_deployment(project, other_project, owner):
    client = _signed_in(owner)
    csrf = _csrf_token(client, project)
    foreign = Deployment.objects.get(project=other_project, environment__kind="development")
    response = _console_token(client, project, {"environment": "development", "deployment": foreign.deployment_key}, csrf)
    assert response.status_code == 404
    assert _error_code(response) == "deployment_not_found"
