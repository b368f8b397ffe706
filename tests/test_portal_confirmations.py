"""Destructive actions ask first, naming the thing (a GET shows the question and changes nothing; the
POST does it); the shared form template shows help text and ties it, and errors, to the input."""
import re

import pytest
from django.test import Client

from accounts.models import Agent, Deployment, EnvironmentKind, Membership, Provider
from realtime.agents import services as agent_services

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def spare(project):
    development = project.environments.get(kind=EnvironmentKind.DEVELOPMENT)
    agent = Agent.objects.create(project=project, name="Support bot", provider=Provider.LOCAL, model="local-echo")
    deployment = agent_services.deployment_create(project=project, environment=development, agent=agent, name="Canary",
                                                  is_default=False, task_upstream_url="")
    return agent, deployment


def test_deleting_a_deployment_then_its_agent_asks_first(owner, project, spare):
    agent, deployment = spare
    client = _client(owner)
    listing = client.get(f"/projects/{project.slug}/deployments/").content.decode()
    assert f'href="/projects/{project.slug}/deployments/{deployment.pk}/delete/"' in listing
    question = client.get(f"/projects/{project.slug}/deployments/{deployment.pk}/delete/").content.decode()
    assert "Delete deployment “Canary”?" in question and deployment.deployment_key in question
    assert Deployment.objects.filter(pk=deployment.pk).exists()
    assert client.post(f"/projects/{project.slug}/deployments/{deployment.pk}/delete/").status_code == 302
    assert not Deployment.objects.filter(pk=deployment.pk).exists()

    question = client.get(f"/projects/{project.slug}/agents/{agent.pk}/delete/").content.decode()
    assert "Delete agent “Support bot”?" in question
    assert Agent.objects.filter(pk=agent.pk).exists()
    client.post(f"/projects/{project.slug}/agents/{agent.pk}/delete/")
    assert not Agent.objects.filter(pk=agent.pk).exists()


def test_removing_a_member_asks_first_naming_them(owner, member, project):
    target = Membership.objects.get(project=project, user=member)
    client = _client(owner)
    question = client.get(f"/projects/{project.slug}/members/{target.pk}/remove/").content.decode()
    assert "Remove member@example.com?" in question
    assert Membership.objects.filter(pk=target.pk).exists()
    client.post(f"/projects/{project.slug}/members/{target.pk}/remove/")
    assert not Membership.objects.filter(pk=target.pk).exists()


def test_the_agent_form_explains_its_fields_and_points_at_real_elements(owner, project):
    client = _client(owner)
    html = client.get(f"/projects/{project.slug}/agents/new/").content.decode()
    for field in ("url", "tools", "header_template", "credential"):
        assert f'aria-describedby="id_{field}_helptext"' in html
        assert f'id="id_{field}_helptext"' in html
    html = client.post(f"/projects/{project.slug}/agents/new/", {"name": "x", "provider": "local", "tools": "[oops"}).content.decode()
    tools = re.search(r"<textarea[^>]*name=\"tools\"[^>]*>", html).group(0)
    assert 'aria-invalid="true"' in tools and 'aria-describedby="id_tools_helptext id_tools_error"' in tools
    assert 'id="id_tools_error"' in html and "Not valid JSON" in html
