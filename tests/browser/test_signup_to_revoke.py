"""The whole first-day journey in a real browser against a real daphne process: sign up, verify the
email from the outbox, create a project and a development key, copy it with the Copy button, use it
from Python, revoke it in the UI, and see the same call refused."""
import re
import uuid

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.live]

# A fresh address each run: allauth rate-limits confirmation emails per address in the shared cache.
EMAIL = f"ada-{uuid.uuid4().hex[:8]}@example.com"
PASSWORD = "a long enough passphrase 19"


def _confirmation_link(outbox) -> str:
    messages = [p.read_text() for p in sorted(outbox.iterdir())]
    assert len(messages) == 1, messages
    match = re.search(r"(http://127\.0\.0\.1:\d+/accounts/confirm-email/\S+)", messages[0])
    assert match, messages[0]
    return match.group(1)


def test_sign_up_to_revoked_key(server_factory, page, tmp_path, artifacts_dir):
    outbox = tmp_path / "outbox"
    server = server_factory(env={"EMAIL_FILE_PATH": str(outbox), "ACCOUNT_EMAIL_VERIFICATION": "mandatory"})

    page.goto(f"{server.http_url}/accounts/signup/")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again):", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    expect(page.get_by_role("heading", name="Verify Your Email Address")).to_be_visible()

    page.goto(_confirmation_link(outbox))
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(f"{server.http_url}/projects/")

    page.get_by_role("link", name="New project").click()
    page.get_by_label("Project name").fill("Browser Demo")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name="Development")).to_be_visible()

    page.get_by_role("link", name="New development key").click()
    page.get_by_label("Key name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    secret_box = page.get_by_label("laptop (development)")
    shown = secret_box.input_value()
    assert shown.startswith("sb_dev_")

    page.get_by_role("button", name="Copy", exact=True).click()  # the key's (the quickstart has its own)
    expect(page.get_by_role("status")).to_have_text("Key copied to the clipboard.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == shown
    page.screenshot(path=str(artifacts_dir / "portal-key-created.png"), full_page=True)

    me = httpx.get(f"{server.http_url}/api/v1/me", headers={"Authorization": f"Bearer {copied}"}, timeout=10)
    assert me.status_code == 200, me.text
    assert me.json()["project"]["slug"] == "browser-demo" and me.json()["environment"] == "development"

    page.get_by_role("link", name="Done").click()
    row = page.locator("tr", has_text="laptop")
    expect(row.get_by_text("active", exact=True)).to_be_visible()
    row.get_by_role("link", name="Revoke laptop").click()
    page.get_by_role("button", name="Revoke key").click()
    expect(page.locator("tr", has_text="laptop").get_by_text("revoked", exact=True)).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "portal-key-revoked.png"), full_page=True)

    refused = httpx.get(f"{server.http_url}/api/v1/me", headers={"Authorization": f"Bearer {copied}"}, timeout=10)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "revoked_key"


def test_api_docs_render_from_our_own_assets(server_factory, page):
    """Swagger UI at /api/docs/ works with every request going to our server: no CDN."""
    server = server_factory()
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{server.http_url}/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Switchboard API")
    expect(page.get_by_text("/api/v1/projects/{slug}/keys", exact=True).first).to_be_visible()
    assert requested and all(url.startswith(server.http_url) or url.startswith("data:") for url in requested), requested
