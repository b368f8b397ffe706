"""Every page under the Content-Security-Policy in a real browser: the portal pages, the usage
dashboard, the API docs (Swagger UI) and the console (connected, a typed turn answered by the local
agent) work, and the browser reports no violation at all."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.models import EnvironmentKind
from tests.browser.conftest import browser_user_prepare, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

# Reported from the page itself as well as by Chromium's console warning, so nothing slips past.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) =>
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.fixture
def csp_server(server_factory, owner, project, dev_key):
    browser_user_prepare(owner)
    return server_factory(env={"REALTIME_ALLOWED_ORIGINS": "http://127.0.0.1:{port}"})


def test_every_page_works_under_the_csp_with_no_violation(csp_server, browser_context, project, dev_key):
    page = browser_context.new_page()
    page.add_init_script(REPORT_VIOLATIONS)
    messages: list[str] = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    server, slug = csp_server, project.slug
    deployment = project.deployments.get(environment__kind=EnvironmentKind.DEVELOPMENT, is_default=True)
    agent = deployment.agent

    sign_in(page, server, "owner@example.com")
    response = page.goto(f"{server.http_url}/projects/")
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["permissions-policy"].startswith("microphone=(self)")
    assert headers["referrer-policy"] == "same-origin"

    pages = [
        (f"/projects/{slug}/", "Acme Voice"),
        (f"/projects/{slug}/keys/new/", None),
        (f"/projects/{slug}/members/", None),
        (f"/projects/{slug}/settings/", None),
        (f"/projects/{slug}/agents/", None),
        (f"/projects/{slug}/agents/new/", None),
        (f"/projects/{slug}/agents/{agent.pk}/", None),
        (f"/projects/{slug}/deployments/", None),
        (f"/projects/{slug}/deployments/{deployment.pk}/", None),
        (f"/projects/{slug}/sessions/", None),
        (f"/projects/{slug}/usage/", None),
        (f"/projects/{slug}/usage/keys/{dev_key[0].key_id}/", None),
        (f"/projects/{slug}/usage/budgets/", None),
        ("/projects/new/", None),
        ("/accounts/password/change/", None),
    ]
    for path, text in pages:
        response = page.goto(f"{server.http_url}{path}")
        assert response.status == 200, path
        if text:
            expect(page.locator("main")).to_contain_text(text)
    # The statement's script (month picker) and print layout.
    page.goto(f"{server.http_url}/projects/{slug}/usage/")
    page.goto(f"{server.http_url}/projects/{slug}/usage/statements/{__import__('datetime').date.today():%Y-%m}/")
    expect(page.locator("main")).to_be_visible()

    # A new key: its page's copy button script runs.
    page.goto(f"{server.http_url}/projects/{slug}/keys/new/")
    page.get_by_label("Name").fill("csp key")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("main")).to_contain_text("Key created")

    # The API docs: Swagger UI renders the schema from its own static files.
    page.goto(f"{server.http_url}/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Switchboard API", timeout=30_000)
    expect(page.locator(".opblock").first).to_be_visible()

    # The console: connected to the local agent over the WebSocket, a typed turn answered.
    page.goto(f"{server.http_url}/projects/{slug}/console/")
    expect(page.locator("html[data-console-ready=true]")).to_have_count(1)
    page.get_by_role("button", name="Connect", exact=True).click()
    expect(page.locator("#connection-status")).to_contain_text("Connected", timeout=30_000)
    page.get_by_label("Message").fill("hello there")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#transcript li.turn.assistant").first).to_contain_text("hello there", timeout=90_000)

    violations = [m for m in messages if "Content Security Policy" in m or "CSP violation" in m]
    assert violations == [], "\n".join(violations)
