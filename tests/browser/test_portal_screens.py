"""Every portal page at 1280x900 and 390x844, in light and dark: axe-core (from node_modules) finds no
serious or critical problem, nothing runs off the screen or out of its card, every aria-describedby
points at something real, no inline script or handler; and each bug of issue 13 is tried where a user
would meet it. Screenshots go to test-artifacts/."""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import Agent, ApiKey, Deployment, EnvironmentKind, Invitation, Membership, Provider
from accounts.services import api_key_create
from realtime.agents import services as agent_services
from realtime.gateway.records import session_record_start
from realtime.models import SessionEvent
from tests.browser.conftest import browser_user_prepare, sign_in
from tests.browser.portal_support import (
    axe_serious,
    covered,
    dangling_describedby,
    inline_code,
    new_page,
    page_overflow,
    screen_params,
    shot,
    tables_outside_their_cards,
)

pytestmark = [pytest.mark.browser, pytest.mark.live]


SESSION_ID = "console-" + "7f3a9c2e" * 6
INVITATION_TOKEN = "invitation-token-for-the-audit-0123456789abcdef"


@pytest.fixture
def portal(server_factory, owner, member, project):
    """A project with something on every page: a second agent, a non-default deployment, keys, a
    finished session with a long id, and a server whose usage flush is 1 s."""
    browser_user_prepare(owner)
    development = project.environments.get(kind=EnvironmentKind.DEVELOPMENT)
    agent = Agent.objects.create(project=project, name="Support bot", provider=Provider.LOCAL, model="local-echo")
    agent_services.deployment_create(project=project, environment=development, agent=agent, name="Canary",
                                     is_default=False, task_upstream_url="")
    key, _secret = api_key_create(project=project, environment=development, name="laptop", created_by=owner)
    record = session_record_start(session_id=SESSION_ID, project_id=project.pk,
                                  api_key_pk=str(key.pk), key_id=key.key_id, deployment_id=None, dialect="realtime")
    record.ended_at = record.started_at
    record.close_reason = "client_closed"
    record.save()
    # A timeline for the session inspector, as the gateway's timeline writer stores it (audio elided).
    at = record.started_at
    for direction, kind, data in [
        ("client", "conversation.item.create", {"item": {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]}}),
        ("upstream", "response.output_text.delta", {"delta": "Hi there"}),
        ("upstream", "response.done", {"response": {"status": "completed", "usage": {"total_tokens": 9}}}),
    ]:
        SessionEvent.objects.create(project=project, session_id=SESSION_ID, at=at, direction=direction, type=kind, data=data)
    Invitation.objects.create(project=project, email="newcomer@example.com", role="member", invited_by=owner,
                              token_digest=hashlib.sha256(INVITATION_TOKEN.encode()).hexdigest(),
                              expires_at=timezone.now() + timedelta(days=7))
    server = server_factory(env={"REALTIME_ALLOWED_ORIGINS": "http://127.0.0.1:{port}",
                                 "REALTIME_METER_FLUSH_SECONDS": "1"})
    return server, project, key, agent


def _pages(project, key, agent, member_row) -> list[tuple[str, str]]:
    slug = project.slug
    canary = Deployment.objects.get(project=project, name="Canary")
    return [
        ("projects", "/projects/"), ("project-new", "/projects/new/"), ("deleted-projects", "/projects/deleted/"), ("keys", f"/projects/{slug}/"),
        ("key-new", f"/projects/{slug}/keys/new/"), ("key-rotate", f"/projects/{slug}/keys/{key.pk}/rotate/"),
        ("key-revoke", f"/projects/{slug}/keys/{key.pk}/revoke/"), ("members", f"/projects/{slug}/members/"),
        ("member-remove", f"/projects/{slug}/members/{member_row.pk}/remove/"),
        ("settings", f"/projects/{slug}/settings/"), ("agents", f"/projects/{slug}/agents/"),
        ("agent-new", f"/projects/{slug}/agents/new/"), ("agent-edit", f"/projects/{slug}/agents/{agent.pk}/"),
        ("agent-delete", f"/projects/{slug}/agents/{agent.pk}/delete/"),
        ("deployments", f"/projects/{slug}/deployments/"), ("deployment-new", f"/projects/{slug}/deployments/new/"),
        ("deployment-edit", f"/projects/{slug}/deployments/{canary.pk}/"),
        ("deployment-delete", f"/projects/{slug}/deployments/{canary.pk}/delete/"),
        ("sessions", f"/projects/{slug}/sessions/"), ("console", f"/projects/{slug}/console/"),
        ("usage", f"/projects/{slug}/usage/"), ("usage-key", f"/projects/{slug}/usage/keys/{key.key_id}/"),
        ("statement", f"/projects/{slug}/usage/statements/2026-01/"), ("budgets", f"/projects/{slug}/usage/budgets/"),
        ("api-docs", "/api/docs/"), ("password", "/accounts/password/change/"),
        ("session-inspect", f"/projects/{slug}/sessions/{SESSION_ID}/"), ("console-code", f"/projects/{slug}/console/code/"),
    ]


ANONYMOUS_PAGES = [("login", "/accounts/login/"), ("signup", "/accounts/signup/"),
                   ("password-reset", "/accounts/password/reset/"), ("verify-email", "/accounts/confirm-email/"),
                   ("invitation", f"/invitations/{INVITATION_TOKEN}/")]


def _audit(page, name) -> list[str]:
    problems = []
    if bad := inline_code(page):  # before axe is injected (as an inline script)
        problems.append(f"{name}: inline code {bad}")
    findings = axe_serious(page)
    if findings:
        problems.append(f"{name}: axe {findings}")
    if (extra := page_overflow(page)) > 0:
        problems.append(f"{name}: the page is {extra}px wider than the screen")
    if bad := tables_outside_their_cards(page):
        problems.append(f"{name}: tables out of their cards {bad}")
    if bad := dangling_describedby(page):
        problems.append(f"{name}: aria-describedby points at nothing {bad}")
    return problems


@screen_params()
def test_every_page_is_accessible_and_fits(portal, chromium_browser, artifacts_dir, member, screen):
    server, project, key, agent = portal
    member_row = Membership.objects.get(project=project, user=member)
    problems = []
    context, page = new_page(chromium_browser, screen)
    try:
        for name, path in ANONYMOUS_PAGES:
            page.goto(server.http_url + path)
            problems += _audit(page, name)
            shot(page, artifacts_dir, name, screen)
        sign_in(page, server, "owner@example.com")
        for name, path in _pages(project, key, agent, member_row):
            response = page.goto(server.http_url + path)
            assert response.status == 200, (path, response.status)
            if name == "api-docs":
                expect(page.locator(".swagger-ui .info .title")).to_contain_text("Switchboard API")
                expect(page.locator(".opblock").first).to_be_visible()
            problems += _audit(page, name)
            shot(page, artifacts_dir, name, screen)
    finally:
        context.close()
    assert not problems, "\n".join(problems)


@screen_params()
def test_agent_and_deployment_actions_are_readable_and_confirmed(portal, chromium_browser, artifacts_dir, screen):
    server, project, _key, agent = portal
    context, page = new_page(chromium_browser, screen)
    try:
        sign_in(page, server, "owner@example.com")
        page.goto(f"{server.http_url}/projects/{project.slug}/deployments/")
        make_default = page.get_by_role("button", name="Make default Canary")
        expect(make_default).to_be_visible()
        colors = make_default.evaluate("""(el) => {
            const card = el.closest(".card");
            return [getComputedStyle(el).color, getComputedStyle(card).backgroundColor];
        }""")
        assert colors[0] != colors[1], colors  # not white on white any more
        # Delete asks first, naming the deployment; Cancel changes nothing.
        page.get_by_role("link", name="Delete deployment Canary").click()
        expect(page.get_by_role("heading", name="Delete deployment “Canary”?")).to_be_visible()
        shot(page, artifacts_dir, "deployment-delete-confirm", screen)
        page.get_by_role("link", name="Cancel").click()
        expect(page.get_by_role("link", name="Canary", exact=True)).to_be_visible()
        page.get_by_role("link", name="Delete deployment Canary").click()
        page.get_by_role("button", name="Delete deployment “Canary”").click()
        expect(page.get_by_text("Deployment “Canary” deleted.")).to_be_visible()

        page.goto(f"{server.http_url}/projects/{project.slug}/agents/")
        delete = page.get_by_role("link", name="Delete agent Support bot")
        expect(delete).to_be_visible()
        page.get_by_role("link", name="Delete agent Support bot").click()
        expect(page.get_by_role("heading", name="Delete agent “Support bot”?")).to_be_visible()
        page.get_by_role("button", name="Delete agent “Support bot”").click()
        expect(page.get_by_text("Agent “Support bot” deleted.")).to_be_visible()
        assert not Agent.objects.filter(pk=agent.pk).exists()
    finally:
        context.close()


@screen_params()
def test_help_text_is_shown_and_errors_sit_under_their_own_field(portal, chromium_browser, artifacts_dir, screen):
    server, project, _key, _agent = portal
    context, page = new_page(chromium_browser, screen)
    try:
        page.goto(f"{server.http_url}/accounts/signup/")
        page.get_by_label("Email").fill("new-person@example.com")
        page.get_by_label("Password:", exact=True).fill("short")
        page.get_by_label("Password (again):", exact=True).fill("short")
        page.get_by_role("button", name="Sign Up").click()
        password = page.get_by_label("Password:", exact=True)
        error = page.locator("#" + password.get_attribute("aria-describedby").split()[-1])
        expect(error).to_contain_text("too short")
        email_box = page.get_by_label("Email").bounding_box()
        password_box = password.bounding_box()
        again_box = page.get_by_label("Password (again):", exact=True).bounding_box()
        error_box = error.bounding_box()
        # Under the Password field (not under Email), above the next field.
        assert password_box["y"] > email_box["y"] and password_box["y"] < error_box["y"] < again_box["y"]
        shot(page, artifacts_dir, "signup-password-error", screen)

        sign_in(page, server, "owner@example.com")
        page.goto(f"{server.http_url}/projects/{project.slug}/agents/new/")
        for label, words in (("URL", "WebSocket URL"), ("Tools", "JSON list"), ("Header template", "JSON object")):
            field = page.get_by_label(re.compile(f"^{label}:?$"))
            help_id = field.get_attribute("aria-describedby")
            expect(page.locator(f"#{help_id}")).to_be_visible()
            expect(page.locator(f"#{help_id}")).to_contain_text(words)
        page.get_by_label(re.compile("^Name:?$")).fill("Broken")
        page.get_by_label(re.compile("^Tools:?$")).fill("[not json")
        page.get_by_role("button", name="Create agent").click()
        tools = page.get_by_label(re.compile("^Tools:?$"))
        assert tools.get_attribute("aria-invalid") == "true"
        ids = tools.get_attribute("aria-describedby").split()
        expect(page.locator(f"#{ids[-1]}")).to_contain_text("Not valid JSON")
        assert not dangling_describedby(page)
        shot(page, artifacts_dir, "agent-form-help", screen)
    finally:
        context.close()


@screen_params()
def test_a_new_key_is_shown_once_and_reloading_creates_nothing(portal, chromium_browser, artifacts_dir, screen):
    server, project, _key, _agent = portal
    context, page = new_page(chromium_browser, screen)
    try:
        sign_in(page, server, "owner@example.com")
        page.goto(f"{server.http_url}/projects/{project.slug}/keys/new/")
        page.get_by_label("Key name").fill("ci runner")
        page.get_by_role("button", name="Create key").click()
        expect(page).to_have_url(re.compile(r"/keys/[0-9a-f-]+/created/$"))
        secret = page.get_by_label("ci runner (development)").input_value()
        assert secret.startswith("sb_dev_")
        assert not _audit(page, "key-created")
        shot(page, artifacts_dir, "key-created", screen)
        page.reload()
        expect(page.get_by_text("cannot be shown again")).to_be_visible()
        assert secret not in page.content()
        page.go_back()  # the form again, as a GET: no "Confirm Form Resubmission"
        expect(page).to_have_url(re.compile(r"/keys/new/$"))
        assert ApiKey.objects.filter(project=project, name="ci runner").count() == 1
    finally:
        context.close()


@screen_params()
def test_console_controls_are_uncovered_and_its_key_is_managed(portal, chromium_browser, artifacts_dir, screen):
    server, project, _key, _agent = portal
    context, page = new_page(chromium_browser, screen)
    try:
        sign_in(page, server, "owner@example.com")
        page.goto(f"{server.http_url}/projects/{project.slug}/console/")
        expect(page.locator("html[data-console-ready=true]")).to_have_count(1)
        for selector in ("#typed-send", "#typed-text", "#connect", "#end-turn", "#transcript"):
            assert covered(page, selector) is None, (selector, covered(page, selector))
        page.get_by_role("button", name="Connect", exact=True).click()
        expect(page.locator("#connection-status")).to_contain_text("Connected · session console-")
        expect(page.locator("#agent-state")).to_have_text("listening")
        # End turn commits the (here empty) input buffer at once; the agent says there is nothing.
        page.get_by_role("button", name="End turn").click()
        expect(page.locator('#event-log li[data-type="input_audio_buffer.commit"][data-direction="out"]')).to_have_count(1)
        expect(page.locator('#event-log li[data-type="error"]')).to_have_count(1)
        assert not _audit(page, "console-connected")
        # The count follows the filter.
        expect(page.locator('#event-log li[data-type="session.created"]')).to_have_count(1)
        page.get_by_label("Filter by event type").fill("session.created")
        expect(page.locator("#log-count")).to_have_text(re.compile(r"^1 of \d+ events shown$"))
        page.get_by_label("Filter by event type").fill("")
        page.get_by_label("Hide audio appends").check()
        total = int(page.locator("#log-count").get_attribute("data-total"))
        shown = page.locator("#event-log li").count()
        expect(page.locator("#log-count")).to_have_text(f"{shown} of {total} event{'' if total == 1 else 's'} shown")
        shot(page, artifacts_dir, "console-connected", screen)
        page.get_by_role("button", name="Disconnect").click()
        expect(page.locator("#connection-status")).to_have_text("Disconnected")

        # The console's key: labelled as managed, its use recorded.
        page.goto(f"{server.http_url}/projects/{project.slug}/")
        row = page.locator("tr", has_text="managed by the console")
        expect(row).to_have_count(1)
        expect(row.locator("td[data-label='Last used']")).not_to_have_text("never")
        # Revoking it is respected: the next Connect says so and offers the way back.
        row.get_by_role("link", name=re.compile("^Revoke")).click()
        page.get_by_role("button", name="Revoke key").click()
        expect(page.get_by_role("button", name="Re-enable the console for development")).to_be_visible()
        page.goto(f"{server.http_url}/projects/{project.slug}/console/")
        expect(page.locator("html[data-console-ready=true]")).to_have_count(1)
        page.get_by_role("button", name="Connect", exact=True).click()
        expect(page.locator("#console-off")).to_contain_text("was revoked")
        assert ApiKey.objects.filter(project=project, name="Console", revoked_at__isnull=True).count() == 0
        shot(page, artifacts_dir, "console-key-revoked", screen)
        page.get_by_role("button", name="Re-enable the console").click()
        expect(page.get_by_text("The console is enabled again for development")).to_be_visible()
        expect(page.locator("html[data-console-ready=true]")).to_have_count(1)
        page.get_by_role("button", name="Connect", exact=True).click()
        expect(page.locator("#connection-status")).to_contain_text("Connected · session console-")
    finally:
        context.close()


@screen_params()
def test_usage_chart_members_and_favicon(portal, chromium_browser, artifacts_dir, screen):
    server, project, _key, _agent = portal
    context, page = new_page(chromium_browser, screen)
    try:
        sign_in(page, server, "owner@example.com")
        page.goto(f"{server.http_url}/projects/{project.slug}/usage/")
        axis = page.locator("#usage-chart text.axis")
        labels = axis.all_text_contents()
        assert labels and not any("0.000001" in label for label in labels), labels
        heights = page.evaluate("""() => [...document.querySelectorAll("#usage-chart text.axis")]
            .map((t) => t.getBoundingClientRect().height)""")
        assert min(heights) >= 9, heights  # readable, not ~3 px
        expect(page.get_by_text(re.compile(r"within 1 second of happening"))).to_be_visible()

        page.goto(f"{server.http_url}/projects/{project.slug}/members/")
        expect(page.get_by_text("You are the only owner")).to_be_visible()
        expect(page.get_by_role("link", name="Leave project")).to_have_count(0)
        expect(page.get_by_role("button", name="Leave project")).to_have_count(0)

        icon = page.locator("link[rel=icon]").get_attribute("href")
        assert httpx.get(server.http_url + icon, timeout=10).headers["content-type"].startswith("image/svg")
        favicon = httpx.get(server.http_url + "/favicon.ico", timeout=10, follow_redirects=True)
        assert favicon.status_code == 200 and favicon.headers["content-type"].startswith("image/svg")
        if screen[2] == "dark":
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(18, 22, 29)", background  # follows prefers-color-scheme
    finally:
        context.close()
