"""Invitation rules (who may invite, whose account may accept, one use) and "Resend verification
email" on the confirm-your-email page."""
from __future__ import annotations

import uuid

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

from accounts.exceptions import NotAllowed
from accounts.invitations import invitation_accept, invitation_accept_pending, invitation_get
from accounts.models import Invitation, Membership, Role
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_NAME = "Acme Gateway"


def invite(client, project, email, role="member"):
    return client.post(f"/projects/{project.slug}/members/", {"email": email, "role": role})


def token_from(message) -> str:
    return message.body.split("/invitations/")[1].split("/")[0]


def test_only_managers_invite_and_only_the_invited_address_accepts(
        client, project, owner, member, outsider, django_capture_on_commit_callbacks):
    client.force_login(member)
    assert invite(client, project, "someone@example.com").status_code == 403
    assert not Invitation.objects.exists()

    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = invite(client, project, "Someone@Example.com")
    assert response.status_code == 302
    [message] = mail.outbox
    assert message.to == ["someone@example.com"] and message.subject.startswith("[Acme Gateway]")
    token = token_from(message)
    assert token not in client.get(f"/projects/{project.slug}/members/").content.decode()  # sent once, never shown

    invitation = invitation_get(token=token)
    with pytest.raises(NotAllowed):
        invitation_accept(invitation=invitation, user=outsider)
    someone = make_user("someone@example.com")
    page = Client()
    page.force_login(someone)
    accepted = page.post(f"/invitations/{token}/")
    assert accepted.status_code == 302 and accepted["Location"] == f"/projects/{project.slug}/"
    assert Membership.objects.get(project=project, user=someone).role == Role.MEMBER
    again = page.get(f"/invitations/{token}/")  # the invitee again: straight to the project
    assert again.status_code == 302 and again["Location"] == f"/projects/{project.slug}/"
    other = Client()
    other.force_login(outsider)
    assert other.post(f"/invitations/{token}/").status_code == 409  # spent for anyone else
    assert Client().get("/invitations/not-a-token/").status_code == 404


def test_inviting_again_replaces_the_pending_link_and_verification_accepts_it(
        client, project, owner, django_capture_on_commit_callbacks):
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        invite(client, project, "late@example.com")
        invite(client, project, "late@example.com", role="admin")
    first, second = mail.outbox
    assert Invitation.objects.filter(accepted_at__isnull=True).count() == 1
    assert Client().get(f"/invitations/{token_from(first)}/").status_code == 404
    user = make_user("late@example.com")
    [membership] = invitation_accept_pending(user=user, email="late@example.com")
    assert membership.role == Role.ADMIN and membership.project == project


def test_resend_verification_sends_a_new_email_once_and_tells_nobody_who_exists(client):
    email = f"waiting-{uuid.uuid4().hex[:8]}@example.com"  # the per-address rate limit lives in the shared cache
    user = make_user(email)
    EmailAddress.objects.create(user=user, email=email, verified=False, primary=True)

    response = client.post("/accounts/verification/resend/", {"email": email})
    assert response.status_code == 302 and response["Location"] == "/accounts/confirm-email/"
    [message] = mail.outbox
    assert message.to == [email] and message.subject.startswith("[Acme Gateway]")
    assert "Hello from Acme Gateway!" in message.body and "/accounts/confirm-email/" in message.body

    client.post("/accounts/verification/resend/", {"email": email})  # again at once: the rate limit holds it
    unknown = client.post("/accounts/verification/resend/", {"email": "nobody-here@example.com"}, follow=True)
    assert len(mail.outbox) == 1
    assert "a new verification email is on its way" in unknown.content.decode()
    page = client.get("/accounts/confirm-email/")
    assert b"Resend verification email" in page.content
