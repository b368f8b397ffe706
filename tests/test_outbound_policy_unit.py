"""The outbound destination policy on save: agent and task-upstream URLs on internal networks, in any
spelling an address can take, are refused by the services, the REST API and the portal form."""
from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from accounts.models import EnvironmentKind
from realtime.agents.services import agent_create, deployment_update
from realtime.lib.outbound import address_allowed

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

INTERNAL_HOSTS = [
    "127.0.0.1", "127.1", "0x7f000001", "2130706433", "0177.0.0.1", "localhost", "app.localhost",
    "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0.0.0.0", "169.254.169.254", "10.1.2.3",
    "172.16.0.1", "192.168.1.1", "100.64.0.1", "[fd00::1]", "[fe80::1]", "224.0.0.1", "[2002:7f00:1::]",
]


@pytest.fixture(autouse=True)
def _no_allowance(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []


@pytest.mark.parametrize("address", [
    "127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254", "10.0.0.1", "172.31.255.255", "192.168.0.1",
    "100.64.0.1", "fc00::1", "fe80::1", "224.0.0.251", "ff02::1", "0.0.0.0", "::", "240.0.0.1",
    "255.255.255.255", "2002:a00:1::", "64:ff9b::7f00:1", "::127.0.0.1", "198.18.0.1",
])
def test_internal_addresses_are_refused(address):
    assert not address_allowed(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert address_allowed(address)


def test_an_allowed_network_lets_its_addresses_through_in_any_form(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["10.20.0.0/16", "::1/128"]
    assert address_allowed("10.20.3.4") and address_allowed("::ffff:10.20.3.4") and address_allowed("::1")
    assert not address_allowed("10.21.0.1") and not address_allowed("127.0.0.1")


@pytest.mark.parametrize("host", INTERNAL_HOSTS)
def test_an_agent_url_on_an_internal_network_is_refused_on_save(project, host):
    with pytest.raises(ValidationError) as refused:
        agent_create(project=project, data={"name": "probe", "provider": "custom", "url": f"ws://{host}:8080/x"})
    assert "internal network" in refused.value.message_dict["url"][0]


@pytest.mark.parametrize("scheme", ["http", "https", "ws"])
@pytest.mark.parametrize("host", ["0x7f000001", "169.254.169.254", "[::ffff:127.0.0.1]", "192.168.0.10"])
def test_a_task_upstream_on_an_internal_network_is_refused_on_save(project, host, scheme):
    deployment = project.deployments.get(environment__kind=EnvironmentKind.DEVELOPMENT, is_default=True)
    with pytest.raises(ValidationError) as refused:
        deployment_update(deployment=deployment, task_upstream_url=f"{scheme}://{host}/run")
    assert "internal network" in refused.value.message_dict["task_upstream_url"][0]


def test_a_public_agent_url_is_accepted(project):
    agent = agent_create(project=project, data={"name": "ok", "provider": "custom", "url": "wss://93.184.216.34/rt"})
    assert agent.url == "wss://93.184.216.34/rt"


def test_the_rest_api_answers_400_naming_the_url(project, owner):
    client = Client()
    client.force_login(owner)
    response = client.post(f"/api/v1/projects/{project.slug}/agents", content_type="application/json",
                           data=json.dumps({"name": "probe", "provider": "custom", "url": "ws://2130706433:6379/"}))
    assert response.status_code == 400
    assert "internal network" in response.json()["error"]["fields"]["url"][0]
    deployment = project.deployments.get(environment__kind=EnvironmentKind.DEVELOPMENT, is_default=True)
    response = client.patch(f"/api/v1/projects/{project.slug}/deployments/{deployment.pk}",
                            content_type="application/json",
                            data=json.dumps({"task_upstream_url": "http://169.254.169.254/latest/meta-data/"}))
    assert response.status_code == 400
    assert "internal network" in response.json()["error"]["fields"]["task_upstream_url"][0]


def test_the_portal_form_shows_the_refusal(project, owner):
    client = Client()
    client.force_login(owner)
    response = client.post(f"/projects/{project.slug}/agents/new/",
                           {"name": "probe", "provider": "custom", "url": "ws://[::1]:8000/agents/local/v1/realtime"})
    assert response.status_code == 400
    assert b"internal network" in response.content
    assert not project.agents.filter(name="probe").exists()
