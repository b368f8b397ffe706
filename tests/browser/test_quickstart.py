"""A newcomer's first two minutes in a real browser against a real daphne process: sign up, verify the
email from the outbox, create a project and a key, copy the Python quickstart from the page, run it as
a subprocess against the same server, and see the turn complete. Screenshots of each step land in
test-artifacts/ (quickstart-*.png)."""
import re
import subprocess
import sys
import uuid

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.live]

PASSWORD = "a long enough passphrase 19"


def _confirmation_link(outbox) -> str:
    messages = [p.read_text() for p in sorted(outbox.iterdir())]
    assert len(messages) == 1, messages
    match = re.search(r"(http://127\.0\.0\.1:\d+/accounts/confirm-email/\S+)", messages[0])
    assert match, messages[0]
    return match.group(1)


def test_quickstart_walked_as_a_newcomer(server_factory, page, tmp_path, artifacts_dir):
    email = f"newcomer-{uuid.uuid4().hex[:8]}@example.com"  # allauth rate-limits emails per address
    outbox = tmp_path / "outbox"
    server = server_factory(env={"EMAIL_FILE_PATH": str(outbox), "ACCOUNT_EMAIL_VERIFICATION": "mandatory"})
    shot = lambda name: page.screenshot(path=str(artifacts_dir / f"quickstart-{name}.png"), full_page=True)  # noqa: E731

    page.goto(f"{server.http_url}/accounts/signup/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again):", exact=True).fill(PASSWORD)
    shot("1-sign-up")
    page.get_by_role("button", name="Sign Up").click()
    expect(page.get_by_role("heading", name="Verify Your Email Address")).to_be_visible()
    shot("2-verify-your-email")

    page.goto(_confirmation_link(outbox))
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(f"{server.http_url}/projects/")

    page.get_by_role("link", name="New project").click()
    page.get_by_label("Project name").fill("First App")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name="Quickstart")).to_be_visible()
    # Before any key exists the project page shows the code with a placeholder, never a secret.
    expect(page.locator("#snippet-python")).to_contain_text("YOUR_SWITCHBOARD_API_KEY")
    shot("3-project-quickstart")

    page.get_by_role("link", name="New development key").click()
    page.get_by_label("Key name").fill("first key")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("first key (development)").input_value()
    assert secret.startswith("sb_dev_")
    expect(page.locator("#snippet-python")).to_contain_text(secret)
    expect(page.locator("#snippet-python")).to_contain_text(f"{server.ws_url}/v1")
    page.get_by_role("button", name="Copy Python (openai SDK) code").click()
    expect(page.locator("#snippet-python-status")).to_have_text("Python (openai SDK) code copied to the clipboard.")
    code = page.evaluate("navigator.clipboard.readText()")
    shot("4-key-created-with-code")

    script = tmp_path / "quickstart.py"
    script.write_text(code)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, (run.stdout, run.stderr, server.log()[-3000:])
    assert "Hello from the quickstart" in run.stdout, run.stdout  # the local agent echoes the message
    assert "turn complete: completed" in run.stdout, run.stdout

    # The session the snippet opened is on the Sessions page.
    page.goto(f"{server.http_url}/projects/first-app/sessions/")
    # Listed as live or as ended: a session's end reaches the page within the record writer's 0.5 s.
    listed = page.locator("#live-sessions tbody tr, #recent-sessions tbody tr").filter(has_text="realtime")
    expect(listed).to_have_count(1)
    shot("5-session-listed")

    # Back on the project page the key is never shown again.
    page.goto(f"{server.http_url}/projects/first-app/")
    assert secret not in page.content()
