"""Provider presets and "Test connection" on the agent form, in a real browser against a real server,
with three loopback fake upstreams: one that opens a session, one that refuses the credential, and one
that accepts the TCP connection and never answers. Then the same screen makes the agent the
development default."""
import asyncio
import json
import re
import threading
from http import HTTPStatus

import pytest
from playwright.sync_api import expect
from websockets.asyncio.server import serve

from accounts.models import Deployment
from tests.browser.conftest import browser_user_prepare, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

GOOD_KEY = "sk-good-credential"


class FakeUpstreams:
    """A realtime upstream that checks a Bearer credential, and a TCP server that never answers, on
    their own event loop in a thread (the browser test's thread drives Playwright)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fake-upstreams", daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self):
        def check(connection, request):
            if request.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
                return connection.respond(HTTPStatus.UNAUTHORIZED, "Incorrect API key provided.\n")
            return None

        async def session(connection):
            await connection.send(json.dumps({"type": "session.created", "session": {"id": "sess_fake"}}))
            async for _message in connection:
                pass

        async def silent(reader, writer):
            await reader.read()  # reads the handshake, answers nothing

        self.realtime = await serve(session, "127.0.0.1", 0, process_request=check)
        self.silent = await asyncio.start_server(silent, "127.0.0.1", 0)
        self.realtime_port = self.realtime.sockets[0].getsockname()[1]
        self.silent_port = self.silent.sockets[0].getsockname()[1]

    def close(self):
        async def stop():
            self.realtime.close()
            self.silent.close()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def fake_upstreams():
    upstreams = FakeUpstreams()
    yield upstreams
    upstreams.close()


def test_connection_test_reports_success_refused_credential_and_no_answer(
        server_factory, page, owner, project, fake_upstreams, artifacts_dir):
    browser_user_prepare(owner)
    server = server_factory(env={"AGENT_TEST_TIMEOUT_SECONDS": "2", "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8"})
    sign_in(page, server, owner.email)

    page.goto(f"{server.http_url}/projects/{project.slug}/agents/new/")
    page.locator("#id_name").fill("OpenAI voice")
    page.locator("#id_provider").select_option("openai")
    # The OpenAI preset offers its models and voices and says what the credential is.
    assert page.locator("#models-openai option[value='gpt-realtime']").count() == 1
    expect(page.locator(".preset-help[data-provider=openai]")).to_be_visible()
    expect(page.locator(".preset-help[data-provider=inworld]")).to_be_hidden()
    # Every field explains itself, and the input points at its help (Django's aria-describedby).
    for field in ("name", "provider", "url", "model", "voice", "instructions", "tools", "header_template",
                  "credential", "default_in"):
        expect(page.locator(f"#id_{field}_helptext")).not_to_be_empty()
        assert f"id_{field}_helptext" in (page.locator(f"#id_{field}").get_attribute("aria-describedby") or "")
    assert page.locator("#id_model").get_attribute("list") == "models-openai"
    page.locator("#id_model").fill("gpt-realtime")
    page.locator("#id_voice").fill("marin")
    page.locator("#id_url").fill(f"ws://127.0.0.1:{fake_upstreams.realtime_port}/v1/realtime")
    page.locator("#id_credential").fill(GOOD_KEY)
    result = page.locator("#test-connection-result")

    page.get_by_role("button", name="Test connection").click()
    expect(result).to_have_text(re.compile(r"^Connected: session\.created in \d+ ms\.$"))
    page.screenshot(path=str(artifacts_dir / "agent-test-connection-ok.png"), full_page=True)

    page.locator("#id_credential").fill("sk-wrong")
    page.get_by_role("button", name="Test connection").click()
    expect(result).to_contain_text("refused the credential (HTTP 401)")
    assert "sk-wrong" not in result.inner_text()
    page.screenshot(path=str(artifacts_dir / "agent-test-connection-refused.png"), full_page=True)

    page.locator("#id_url").fill(f"ws://127.0.0.1:{fake_upstreams.silent_port}/v1/realtime")
    page.get_by_role("button", name="Test connection").click()
    expect(result).to_have_text(f"No answer from 127.0.0.1:{fake_upstreams.silent_port} within 2 seconds.",
                                timeout=15_000)
    page.screenshot(path=str(artifacts_dir / "agent-test-connection-timeout.png"), full_page=True)

    # Saved from the same screen as the development default (the test did not save anything before).
    assert not Deployment.objects.filter(project=project, agent__name="OpenAI voice").exists()
    page.locator("#id_url").fill(f"ws://127.0.0.1:{fake_upstreams.realtime_port}/v1/realtime")
    page.locator("#id_credential").fill(GOOD_KEY)
    page.locator("#id_default_in").select_option("development")
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_role("status").first).to_contain_text("It is now the development default.")
    default = Deployment.objects.get(project=project, environment__kind="development", is_default=True)
    assert default.agent.name == "OpenAI voice" and default.agent.provider == "openai"


def test_connection_test_without_javascript_and_for_members(server_factory, owner, member, project, fake_upstreams):
    """The button posts the form when no script runs; a member (read-only) cannot use it."""
    import httpx

    from tests.browser.conftest import BROWSER_PASSWORD

    server = server_factory(env={"AGENT_TEST_TIMEOUT_SECONDS": "2", "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8"})
    browser_user_prepare(owner)
    browser_user_prepare(member)
    form = {"name": "Custom", "provider": "custom", "action": "test",
            "url": f"ws://127.0.0.1:{fake_upstreams.realtime_port}/", "credential": GOOD_KEY,
            "header_template": json.dumps({"Authorization": "Bearer {credential}"})}
    for user, expected in ((owner, 200), (member, 403)):
        with httpx.Client(base_url=server.http_url, timeout=20) as client:
            client.get("/accounts/login/")
            client.post("/accounts/login/", data={"login": user.email, "password": BROWSER_PASSWORD,
                                                  "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                        headers={"Referer": f"{server.http_url}/accounts/login/"})
            url = f"/projects/{project.slug}/agents/new/"
            client.get(url)
            page = client.post(url, data={**form, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                               headers={"Referer": server.http_url + url})
            assert page.status_code == expected, page.text[-2000:]
            if expected == 200:
                assert "Connected: session.created in" in page.text
                assert GOOD_KEY not in page.text
                # The local preset reaches the built-in agent of the server that runs the test.
                local = client.post(url, data={"name": "Local", "provider": "local", "action": "test",
                                               "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                                    headers={"Referer": server.http_url + url, "Accept": "application/json"})
                assert local.status_code == 200 and local.json()["ok"] is True, local.text
                # A field that cannot be read is named, and nothing is attempted.
                bad = client.post(url, data={**form, "tools": "[oops", "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                                  headers={"Referer": server.http_url + url, "Accept": "application/json"})
                assert bad.status_code == 400 and bad.json()["ok"] is False and "tools" in bad.json()["errors"]
