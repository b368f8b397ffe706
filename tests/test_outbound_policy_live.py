"""Server-side request forgery, at connect time: a server without OUTBOUND_ALLOWED_NETWORKS never
connects to an internal address, whatever its spelling and however the URL got into the database
(here written straight to it, as if a name had resolved to a public address when it was saved: DNS
rebinding). A loopback listener proves no connection reached it, and the client's answer is the same
as for a port where nothing listens, so error codes reveal nothing about the network."""
from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from accounts.models import Agent, EnvironmentKind
from tests.conftest import free_port
from tests.test_gateway_support import bearer, connect, expect_refusal, session_url
from tests.test_tasks_support import connect as tasks_connect
from tests.test_tasks_support import new_connection, run_task, task_uuid

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

NO_ALLOWANCE = {"OUTBOUND_ALLOWED_NETWORKS": ""}


class Listener:
    """A TCP listener on loopback that counts the connections reaching it."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0

    async def __aenter__(self):
        async def handle(reader, writer):
            self.accepted += 1
            writer.close()

        # The same port on both loopback addresses (port 0 with two hosts would give each its own).
        first = await asyncio.start_server(handle, host="127.0.0.1", port=0)
        self.port = first.sockets[0].getsockname()[1]
        self._servers = [first, await asyncio.start_server(handle, host="::1", port=self.port)]
        return self

    async def __aexit__(self, *exc):
        for server in self._servers:
            server.close()
            await server.wait_closed()


def spellings(port: int) -> list[str]:
    return [f"127.0.0.1:{port}", f"127.1:{port}", f"0x7f000001:{port}", f"2130706433:{port}", f"[::1]:{port}",
            f"[::ffff:127.0.0.1]:{port}", f"localhost:{port}"]


@sync_to_async
def _point_default_agent_at(project, url: str) -> None:
    """Write the URL past the save-time check (what DNS rebinding achieves)."""
    deployment = project.deployments.get(environment__kind=EnvironmentKind.DEVELOPMENT, is_default=True)
    if deployment.agent.provider != "custom":
        deployment.agent = Agent.objects.create(project=project, name="rebound", provider="custom", url=url)
        deployment.save(update_fields=["agent"])
    else:
        Agent.objects.filter(pk=deployment.agent_id).update(url=url)


@sync_to_async
def _set_task_upstream(project, url: str) -> None:
    deployment = project.deployments.get(environment__kind=EnvironmentKind.DEVELOPMENT, is_default=True)
    type(deployment).objects.filter(pk=deployment.pk).update(task_upstream_url=url)


async def test_the_realtime_relay_never_connects_to_an_internal_address(server_factory, project, dev_key):
    _, raw = dev_key
    server = server_factory(env=NO_ALLOWANCE)
    answers = []
    async with Listener() as listener:
        for n, hostport in enumerate(spellings(listener.port) + [f"127.0.0.1:{free_port()}"]):
            await _point_default_agent_at(project, f"ws://{hostport}/internal")
            async with await connect(session_url(server, f"ssrf-{n}"), bearer(raw)) as ws:
                error, code = await expect_refusal(ws)
            answers.append((error["code"], error["message"], code))
        assert listener.accepted == 0
    # One answer for every spelling and for a closed port: nothing to tell them apart.
    assert set(answers) == {("upstream_unavailable", "The upstream could not be reached.", 4502)}


async def test_the_tasks_dialect_never_posts_to_an_internal_address(server_factory, project, dev_key):
    _, raw = dev_key
    server = server_factory(env=NO_ALLOWANCE)
    answers = []
    async with Listener() as listener:
        urls = [f"{scheme}://{hostport}/run" for hostport in spellings(listener.port) for scheme in ("http", "ws")]
        urls.append(f"http://169.254.169.254:{listener.port}/latest/meta-data/")
        urls.append(f"http://127.0.0.1:{free_port()}/run")
        async with await tasks_connect(server) as ws:
            await new_connection(ws, raw)
            for url in urls:
                await _set_task_upstream(project, url)
                failed = await run_task(ws, {"taskType": "text2img", "taskUUID": task_uuid(), "positivePrompt": "x"})
                answers.append((failed["code"], failed["message"]))
        assert listener.accepted == 0
    assert set(answers) == {("task_upstream_unavailable", "The task upstream could not be reached or did not answer.")}


async def test_an_allowed_network_is_reached(server_factory, project, dev_key):
    """The operator's allowance is what makes loopback reachable (the other live tests rely on it)."""
    _, raw = dev_key
    server = server_factory(env={"OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8"})
    async with Listener() as listener:
        await _set_task_upstream(project, f"http://0x7f000001:{listener.port}/run")
        async with await tasks_connect(server) as ws:
            await new_connection(ws, raw)
            answer = await run_task(ws, {"taskType": "text2img", "taskUUID": task_uuid(), "positivePrompt": "x"})
        assert listener.accepted >= 1, answer
