"""Agents and deployments: validation rules, defaults, deployment resolution, tenant isolation in the
REST API and the portal pages, and the credential that is never shown back."""
import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from accounts.models import Agent, Deployment, EnvironmentKind, Membership, Provider, Role
from realtime.agents.selectors import agent_credential, deployment_resolve
from realtime.agents.services import (
    agent_create,
    agent_delete,
    agent_update,
    deployment_create,
    deployment_delete,
    deployment_set_default,
)

pytestmark = pytest.mark.unit

SECRET = "sk-upstream-SECRET-4f9c2d7e1a"
WEATHER_TOOL = {
    "type": "function", "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _errors(data, project) -> dict:
    with pytest.raises(ValidationError) as caught:
        agent_create(project=project, data=data)
    return caught.value.message_dict


# --- Agent rules ----------------------------------------------------------------------------------

def test_openai_and_inworld_get_their_default_urls_and_local_none(project):
    openai = agent_create(project=project, data={"name": "GPT", "provider": "openai", "model": "gpt-realtime"})
    inworld = agent_create(project=project, data={"name": "IW", "provider": "inworld"})
    local = agent_create(project=project, data={"name": "Local 2", "provider": "local", "url": "wss://ignored.example"})
    assert openai.url == "wss://api.openai.com/v1/realtime"
    assert inworld.url == "wss://api.inworld.ai/api/v1/realtime/session"
    assert local.url == ""


@pytest.mark.parametrize("data, field", [
    ({"name": "x", "provider": "custom"}, "url"),
    ({"name": "x", "provider": "custom", "url": "https://not-a-websocket.example"}, "url"),
    ({"name": "x", "provider": "telepathy"}, "provider"),
    ({"name": "  ", "provider": "local"}, "name"),
    ({"name": "x", "tools": {"type": "function"}}, "tools"),
    ({"name": "x", "tools": [{"type": "retrieval", "name": "a", "parameters": {"type": "object"}}]}, "tools"),
    ({"name": "x", "tools": [{"type": "function", "name": "has space", "parameters": {"type": "object"}}]}, "tools"),
    ({"name": "x", "tools": [{"type": "function", "name": "a"}]}, "tools"),
    ({"name": "x", "tools": [{"type": "function", "name": "a", "parameters": {"type": "object", "properties": 5}}]}, "tools"),
    ({"name": "x", "tools": [WEATHER_TOOL, WEATHER_TOOL]}, "tools"),
    ({"name": "x", "tools": [{**WEATHER_TOOL, "strict": True}]}, "tools"),
    ({"name": "x", "header_template": ["Authorization"]}, "header_template"),
    ({"name": "x", "header_template": {"Bad Header": "v"}}, "header_template"),
    ({"name": "x", "header_template": {"X-Key": "a\r\nInjected: yes"}}, "header_template"),
    ({"name": "x", "header_template": {"Host": "evil.example"}}, "header_template"),
    ({"name": "x", "header_template": {"Sec-WebSocket-Protocol": "x"}}, "header_template"),
    ({"name": "x", "credential": "line\nbreak"}, "credential"),
])
def test_invalid_agents_are_refused_naming_the_field(project, data, field):
    assert field in _errors(data, project)


def test_a_valid_custom_agent_with_tools_and_header_template(project):
    agent = agent_create(project=project, data={
        "name": "Custom", "provider": "custom", "url": "wss://agent.example/realtime",
        "tools": [WEATHER_TOOL], "header_template": {"Authorization": "Bearer {credential}"}, "credential": SECRET,
    })
    agent.refresh_from_db()
    assert agent.tools == [WEATHER_TOOL]
    assert agent.header_template == {"Authorization": "Bearer {credential}"}
    assert SECRET not in agent.credential_encrypted
    assert agent_credential(agent=agent) == SECRET


def test_agent_names_are_unique_per_project(project, other_project):
    agent_create(project=project, data={"name": "Twin"})
    assert "name" in _errors({"name": "Twin"}, project)
    agent_create(project=other_project, data={"name": "Twin"})  # another project may reuse it


def test_update_keeps_replaces_or_clears_the_credential(project):
    agent = agent_create(project=project, data={"name": "A", "provider": "openai", "credential": SECRET})
    agent_update(agent=agent, data={"model": "gpt-realtime"})
    assert agent_credential(agent=agent) == SECRET and agent.model == "gpt-realtime"
    agent_update(agent=agent, data={"credential": "new-one"})
    assert agent_credential(agent=agent) == "new-one"
    agent_update(agent=agent, data={"credential": ""})
    assert agent_credential(agent=agent) == "" and agent.credential_encrypted == ""


def test_an_agent_in_use_cannot_be_deleted(project):
    local = Agent.objects.get(project=project, provider=Provider.LOCAL)
    with pytest.raises(ValidationError):
        agent_delete(agent=local)
    spare = agent_create(project=project, data={"name": "Spare"})
    agent_delete(agent=spare)
    assert not Agent.objects.filter(pk=spare.pk).exists()


# --- Deployment rules -----------------------------------------------------------------------------

def test_a_new_project_has_one_default_deployment_per_environment(project):
    for kind in EnvironmentKind.values:
        default = deployment_resolve(project_id=project.pk, environment_id=project.environments.get(kind=kind).pk,
                                     deployment_key=None)
        assert default.agent.provider == Provider.LOCAL


def test_default_switches_and_there_is_always_exactly_one(project):
    env = project.environments.get(kind=EnvironmentKind.PRODUCTION)
    agent = agent_create(project=project, data={"name": "GPT", "provider": "openai"})
    second = deployment_create(project=project, environment=env, agent=agent, name="GPT prod")
    assert not second.is_default
    deployment_set_default(deployment=second)
    defaults = Deployment.objects.filter(environment=env, is_default=True)
    assert list(defaults) == [second]
    assert deployment_resolve(project_id=project.pk, environment_id=env.pk, deployment_key=None) == second
    with pytest.raises(ValidationError):
        deployment_delete(deployment=second)
    third = deployment_create(project=project, environment=env, agent=agent, name="Third", is_default=True)
    assert list(Deployment.objects.filter(environment=env, is_default=True)) == [third]


def test_a_deployment_binds_only_an_agent_and_environment_of_its_project(project, other_project):
    foreign_agent = Agent.objects.get(project=other_project)
    foreign_env = other_project.environments.get(kind=EnvironmentKind.DEVELOPMENT)
    own_env = project.environments.get(kind=EnvironmentKind.DEVELOPMENT)
    own_agent = Agent.objects.get(project=project)
    with pytest.raises(ValidationError) as caught:
        deployment_create(project=project, environment=own_env, agent=foreign_agent, name="x")
    assert "agent" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        deployment_create(project=project, environment=foreign_env, agent=own_agent, name="x")
    assert "environment" in caught.value.message_dict


def test_a_key_reaches_only_its_own_environments_deployments(project, other_project):
    dev = project.environments.get(kind=EnvironmentKind.DEVELOPMENT)
    prod_deployment = Deployment.objects.get(project=project, environment__kind=EnvironmentKind.PRODUCTION)
    foreign = Deployment.objects.get(project=other_project, environment__kind=EnvironmentKind.DEVELOPMENT)
    dev_deployment = Deployment.objects.get(environment=dev)
    assert deployment_resolve(project_id=project.pk, environment_id=dev.pk,
                              deployment_key=dev_deployment.deployment_key) == dev_deployment
    for other in (prod_deployment, foreign):
        with pytest.raises(Deployment.DoesNotExist):
            deployment_resolve(project_id=project.pk, environment_id=dev.pk, deployment_key=other.deployment_key)


# --- REST: roles and tenants ----------------------------------------------------------------------

def _api(user=None, raw_key=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    if raw_key is not None:
        client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw_key}"
    return client


def _post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def _patch(client, url, body):
    return client.patch(url, data=json.dumps(body), content_type="application/json")


def test_owner_creates_and_admin_edits_agents_over_rest(project, owner, member):
    url = f"/api/v1/projects/{project.slug}/agents"
    response = _post(_api(owner), url, {"name": "GPT", "provider": "openai", "credential": SECRET, "tools": [WEATHER_TOOL]})
    assert response.status_code == 201, response.content
    agent = response.json()
    assert agent["credential_set"] is True and agent["url"] == "wss://api.openai.com/v1/realtime"
    Membership.objects.filter(user=member, project=project).update(role=Role.ADMIN)
    response = _patch(_api(member), f"{url}/{agent['id']}", {"voice": "alloy"})
    assert response.status_code == 200 and response.json()["voice"] == "alloy"
    # A partial update leaves everything else alone, the credential included.
    assert response.json()["provider"] == "openai" and response.json()["url"] == "wss://api.openai.com/v1/realtime"
    assert response.json()["credential_set"] is True


def test_invalid_agent_over_rest_is_a_400_with_fields(project, owner):
    response = _post(_api(owner), f"/api/v1/projects/{project.slug}/agents/", {"name": "x", "provider": "custom"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert "url" in response.json()["error"]["fields"]


def test_members_read_but_cannot_write(project, member):
    client = _api(member)
    assert client.get(f"/api/v1/projects/{project.slug}/agents").status_code == 200
    assert client.get(f"/api/v1/projects/{project.slug}/deployments").status_code == 200
    response = _post(client, f"/api/v1/projects/{project.slug}/agents", {"name": "Nope"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "role_forbidden"
    agent = Agent.objects.get(project=project)
    assert client.delete(f"/api/v1/projects/{project.slug}/agents/{agent.pk}").status_code == 403
    assert Agent.objects.filter(project=project, name="Nope").count() == 0


def test_outsiders_get_404_for_everything(project, outsider):
    client = _api(outsider)
    agent = Agent.objects.get(project=project)
    deployment = Deployment.objects.filter(project=project).first()
    base = f"/api/v1/projects/{project.slug}"
    for response in (
        client.get(f"{base}/agents"), client.get(f"{base}/agents/{agent.pk}"),
        client.get(f"{base}/deployments"), client.get(f"{base}/deployments/{deployment.pk}"),
        _post(client, f"{base}/agents", {"name": "Intruder"}),
        _patch(client, f"{base}/agents/{agent.pk}", {"name": "Hijacked"}),
        client.delete(f"{base}/deployments/{deployment.pk}"),
    ):
        assert response.status_code == 404
    agent.refresh_from_db()
    assert agent.name != "Hijacked"


def test_an_object_of_another_project_is_404_even_through_your_own_project(project, other_project, owner):
    foreign_agent = Agent.objects.get(project=other_project)
    response = _api(owner).get(f"/api/v1/projects/{project.slug}/agents/{foreign_agent.pk}")
    assert response.status_code == 404


def test_api_keys_read_their_own_project_and_environment_only(project, dev_key, other_key):
    client = _api(raw_key=dev_key[1])
    deployments = client.get(f"/api/v1/projects/{project.slug}/deployments").json()
    assert {d["environment"] for d in deployments} == {"development"}
    prod = Deployment.objects.get(project=project, environment__kind="production")
    assert client.get(f"/api/v1/projects/{project.slug}/deployments/{prod.pk}").status_code == 404
    assert client.get(f"/api/v1/projects/{project.slug}/agents").status_code == 200
    response = _post(client, f"/api/v1/projects/{project.slug}/agents", {"name": "By key"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "api_key_read_only"
    assert _api(raw_key=other_key[1]).get(f"/api/v1/projects/{project.slug}/agents").status_code == 404


def test_deployments_over_rest(project, owner):
    client = _api(owner)
    base = f"/api/v1/projects/{project.slug}/deployments"
    agent = Agent.objects.get(project=project)
    response = _post(client, base, {"name": "Second", "environment": "staging", "agent": agent.pk})
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["deployment_key"].startswith("dep_") and created["is_default"] is False
    response = _patch(client, f"{base}/{created['id']}", {"is_default": True})
    assert response.json()["is_default"] is True
    old_default = Deployment.objects.get(project=project, environment__kind="staging", name="Default (staging)")
    assert old_default.is_default is False
    response = client.delete(f"{base}/{created['id']}")
    assert response.status_code == 400 and response.json()["error"]["code"] == "deployment_is_default"
    response = _patch(client, f"{base}/{created['id']}", {"environment": "production"})
    assert response.status_code == 400
    assert client.delete(f"{base}/{old_default.pk}").status_code == 204


# --- Portal pages ---------------------------------------------------------------------------------

def test_pages_for_owner_member_and_outsider(project, owner, member, outsider):
    agent = Agent.objects.get(project=project)
    deployment = Deployment.objects.filter(project=project).first()
    pages = [f"/projects/{project.slug}/agents/", f"/projects/{project.slug}/agents/{agent.pk}/",
             f"/projects/{project.slug}/deployments/", f"/projects/{project.slug}/deployments/{deployment.pk}/"]
    for page in pages:
        assert _api(owner).get(page).status_code == 200
        assert _api(member).get(page).status_code == 200
        assert _api(outsider).get(page).status_code == 404
    listing = _api(owner).get(f"/projects/{project.slug}/deployments/").content.decode()
    assert deployment.deployment_key in listing


def test_owner_creates_an_agent_in_the_portal_and_a_member_cannot(project, owner, member):
    form = {"name": "Portal agent", "provider": "custom", "url": "wss://agent.example/rt",
            "tools": json.dumps([WEATHER_TOOL]), "header_template": '{"X-Api-Key": "{credential}"}',
            "credential": SECRET}
    response = _api(member).post(f"/projects/{project.slug}/agents/new/", form)
    assert response.status_code == 403
    response = _api(owner).post(f"/projects/{project.slug}/agents/new/", form)
    assert response.status_code == 302
    agent = Agent.objects.get(project=project, name="Portal agent")
    assert agent.tools == [WEATHER_TOOL] and agent_credential(agent=agent) == SECRET


def test_portal_form_errors_are_shown(project, owner):
    response = _api(owner).post(f"/projects/{project.slug}/agents/new/",
                                {"name": "Bad", "provider": "local", "tools": "[{not json"})
    assert response.status_code == 400
    assert "Not valid JSON" in response.content.decode()


def test_the_credential_never_appears_in_any_page_or_api_response(project, owner, member, dev_key):
    created = _post(_api(owner), f"/api/v1/projects/{project.slug}/agents",
                    {"name": "Secretive", "provider": "openai", "credential": SECRET})
    assert created.status_code == 201 and SECRET not in created.content.decode()
    agent_id = created.json()["id"]
    responses = [
        _api(owner).get(f"/api/v1/projects/{project.slug}/agents"),
        _api(owner).get(f"/api/v1/projects/{project.slug}/agents/{agent_id}"),
        _patch(_api(owner), f"/api/v1/projects/{project.slug}/agents/{agent_id}", {"model": "m"}),
        _api(raw_key=dev_key[1]).get(f"/api/v1/projects/{project.slug}/agents"),
        _api(owner).get(f"/projects/{project.slug}/agents/"),
        _api(owner).get(f"/projects/{project.slug}/agents/{agent_id}/"),
        _api(member).get(f"/projects/{project.slug}/agents/{agent_id}/"),
        _api(owner).post(f"/projects/{project.slug}/agents/{agent_id}/", {"name": "", "provider": "openai"}),
    ]
    for response in responses:
        assert response.status_code in (200, 400)
        assert SECRET not in response.content.decode()
    edit_page = responses[5].content.decode()
    assert "credential-status" in edit_page and ">set<" in edit_page


# --- Encryption at rest ---------------------------------------------------------------------------

def test_credentials_survive_rotating_the_encryption_key(project, settings):
    from cryptography.fernet import Fernet

    from realtime.lib.crypto import DecryptionFailed

    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIALS_ENCRYPTION_KEYS = [old_key]
    agent = agent_create(project=project, data={"name": "Rotating", "provider": "openai", "credential": SECRET})
    settings.CREDENTIALS_ENCRYPTION_KEYS = [new_key, old_key]  # new key first: encrypts; old still decrypts
    assert agent_credential(agent=agent) == SECRET
    agent_update(agent=agent, data={"credential": SECRET})
    settings.CREDENTIALS_ENCRYPTION_KEYS = [new_key]
    assert agent_credential(agent=agent) == SECRET
    settings.CREDENTIALS_ENCRYPTION_KEYS = [old_key]  # the key that encrypted it is gone
    with pytest.raises(DecryptionFailed):
        agent_credential(agent=agent)


def test_a_bad_encryption_key_stops_start_up_naming_the_variable():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "CREDENTIALS_ENCRYPTION_KEY": "not-a-fernet-key", "DJANGO_SETTINGS_MODULE": "project.settings"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"],
                            cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "CREDENTIALS_ENCRYPTION_KEY" in result.stderr
