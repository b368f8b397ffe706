"""An invitation by email to someone without an account, in real browsers against a real server: the
owner invites the address, the invitee opens the link from the email, signs up with it, verifies it, and
is a member of the project. Every email names the installation (SITE_NAME), not the host."""
import re
import uuid

import pytest
from playwright.sync_api import expect

from accounts.models import Invitation, Membership
from tests.browser.conftest import browser_user_prepare, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.live]

PASSWORD = "a long enough passphrase 19"


def outbox_messages(outbox) -> list[str]:
    return [p.read_text() for p in sorted(outbox.iterdir())] if outbox.exists() else []


def test_invitation_to_a_new_address_is_accepted_after_sign_up(
        server_factory, page, chromium_browser, owner, project, tmp_path, artifacts_dir):
    invitee = f"new-{uuid.uuid4().hex[:8]}@example.com"
    outbox = tmp_path / "outbox"
    server = server_factory(env={"EMAIL_FILE_PATH": str(outbox), "ACCOUNT_EMAIL_VERIFICATION": "mandatory",
                                 "SITE_NAME": "Acme Gateway"})
    browser_user_prepare(owner)
    sign_in(page, server, owner.email)

    page.goto(f"{server.http_url}/projects/{project.slug}/members/")
    page.locator("#id_email").fill(invitee)
    page.locator("#id_role").select_option("admin")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("status").first).to_contain_text(f"Invitation sent to {invitee}")
    expect(page.locator("#pending-invitations")).to_contain_text(invitee)
    page.screenshot(path=str(artifacts_dir / "invitation-sent.png"), full_page=True)

    [invitation_email] = outbox_messages(outbox)
    assert f"Subject: [Acme Gateway] {owner.email} invited you to Acme Voice" in invitation_email
    link = re.search(r"(http://127\.0\.0\.1:\d+/invitations/\S+/)", invitation_email).group(1)

    invitee_context = chromium_browser.new_context()
    invitee_context.set_default_timeout(20_000)
    newcomer = invitee_context.new_page()
    try:
        newcomer.goto(link)
        expect(newcomer.get_by_role("heading", name="Join Acme Voice")).to_be_visible()
        newcomer.get_by_role("link", name=f"Sign up with {invitee}").click()
        newcomer.get_by_label("Email").fill(invitee)
        newcomer.get_by_label("Password:", exact=True).fill(PASSWORD)
        newcomer.get_by_label("Password (again):", exact=True).fill(PASSWORD)
        newcomer.get_by_role("button", name="Sign Up").click()
        expect(newcomer.get_by_role("heading", name="Verify Your Email Address")).to_be_visible()
        expect(newcomer.get_by_role("button", name="Resend verification email")).to_be_visible()
        newcomer.screenshot(path=str(artifacts_dir / "invitation-verify-email.png"), full_page=True)
        assert not Membership.objects.filter(project=project, user__email=invitee).exists()

        verification = outbox_messages(outbox)[-1]
        assert "Subject: [Acme Gateway]" in verification and "Hello from Acme Gateway!" in verification
        assert f"Hello from 127.0.0.1:{server.port}" not in verification
        confirm = re.search(r"(http://127\.0\.0\.1:\d+/accounts/confirm-email/\S+)", verification).group(1)
        newcomer.goto(confirm)
        newcomer.get_by_role("button", name="Confirm").click()
        # Verified: a member already, and back from the invitation link to the project itself.
        expect(newcomer).to_have_url(f"{server.http_url}/projects/{project.slug}/")
        expect(newcomer.get_by_role("status").first).to_contain_text("You are a member of “Acme Voice”")
        newcomer.screenshot(path=str(artifacts_dir / "invitation-accepted.png"), full_page=True)

        membership = Membership.objects.get(project=project, user__email=invitee)
        assert membership.role == "admin"
        assert Invitation.objects.get(project=project, email=invitee).accepted_at is not None
        newcomer.goto(f"{server.http_url}/projects/")
        expect(newcomer.get_by_role("link", name="Acme Voice")).to_be_visible()
    finally:
        invitee_context.close()
