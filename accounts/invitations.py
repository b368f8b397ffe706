"""Invitations by email: a manager invites an address that has no account yet; the invitee signs up
with it and, once the address is verified, is a member. Business rules only (keyword-only
``invitation_*`` functions); the pages are in accounts.views.

The token is a capability sent once, in the email; only its SHA-256 digest is stored. An invitation
lasts INVITATION_DAYS; inviting the same address again replaces the pending one (a new link)."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone

from accounts.exceptions import Conflict, NotAllowed
from accounts.models import Invitation, Membership, User

INVITATION_DAYS = 14


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _send(invitation: Invitation, link: str) -> None:
    project = invitation.project
    inviter = invitation.invited_by.email if invitation.invited_by else "A project owner"
    send_mail(
        f"[{settings.SITE_NAME}] {inviter} invited you to {project.name}",
        f"Hello from {settings.SITE_NAME}!\n\n"
        f"{inviter} invited you to join the project {project.name} as {invitation.get_role_display().lower()}.\n\n"
        f"Accept the invitation: {link}\n\n"
        f"You will be asked to sign up with this address ({invitation.email}) if you have no account yet. "
        f"The link works until {invitation.expires_at:%Y-%m-%d} (UTC).\n",
        settings.DEFAULT_FROM_EMAIL, [invitation.email],
    )


@transaction.atomic
def invitation_create(*, by: Membership, email: str, role: str, link_base: str) -> Invitation:
    """Invite ``email`` (already checked by the caller: valid, no account) and email the link
    ``link_base`` + ``<token>/``. Replaces a pending invitation of the same address to this project."""
    project = by.project
    Invitation.objects.filter(project=project, email__iexact=email, accepted_at__isnull=True).delete()
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        project=project, email=email, role=role, token_digest=_digest(token), invited_by=by.user,
        expires_at=timezone.now() + timedelta(days=INVITATION_DAYS),
    )
    link = f"{link_base.rstrip('/')}/{token}/"
    transaction.on_commit(lambda: _send(invitation, link))
    return invitation


def invitation_get(*, token: str) -> Invitation:
    """A pending, unexpired invitation by its token; Http404 otherwise (an unknown token tells nothing)."""
    invitation = (Invitation.objects.select_related("project", "invited_by")
                  .filter(token_digest=_digest(token or "")).first())
    if invitation is None:
        raise Http404("No such invitation.")
    return invitation


def invitation_is_open(*, invitation: Invitation) -> bool:
    return invitation.accepted_at is None and invitation.expires_at > timezone.now()


def _accept(invitation: Invitation, user: User) -> Membership:
    membership = Membership.objects.filter(project=invitation.project, user=user).first()
    if membership is None:
        try:
            with transaction.atomic():
                membership = Membership.objects.create(project=invitation.project, user=user, role=invitation.role)
        except IntegrityError:  # accepted twice at once
            membership = Membership.objects.get(project=invitation.project, user=user)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """The signed-in invitee accepts; the invitation is for their address only."""
    if not invitation_is_open(invitation=invitation):
        raise Conflict("invitation_closed", "This invitation was already used or has expired; ask for a new one.")
    if user.email.lower() != invitation.email.lower():
        raise NotAllowed("wrong_account", f"This invitation is for {invitation.email}; sign in with that address.")
    return _accept(invitation, user)


@transaction.atomic
def invitation_accept_pending(*, user: User, email: str) -> list[Membership]:
    """Every open invitation of ``email``, accepted for ``user`` (called when they verify it)."""
    pending = Invitation.objects.select_related("project").filter(
        email__iexact=email, accepted_at__isnull=True, expires_at__gt=timezone.now())
    return [_accept(invitation, user) for invitation in pending]


def invitation_list_pending(*, project) -> list[Invitation]:
    return list(Invitation.objects.filter(project=project, accepted_at__isnull=True, expires_at__gt=timezone.now())
                .select_related("invited_by"))
