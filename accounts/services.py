"""Writes: every business rule that changes accounts data. Keyword-only functions, <entity>_<action>."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.exceptions import Conflict, InvalidInput, NotAllowed
from accounts.keys import key_cache, key_digest, key_display_parts, key_generate
from accounts.models import (
    ENVIRONMENT_SHORT,
    Agent,
    ApiKey,
    Deployment,
    Environment,
    EnvironmentKind,
    Invitation,
    Membership,
    Project,
    Provider,
    Role,
    User,
)
from accounts.selectors import MANAGER_ROLES

NAME_MAX_LENGTH = 100
SLUG_MAX_LENGTH = 60
# Rotation grace periods offered to users: none, 1 hour, 24 hours, 7 days.
ROTATION_GRACE = {
    "none": timedelta(0),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
# Slugs that would shadow portal URLs such as /projects/new/.
RESERVED_SLUGS = {"new", "deleted"}


def _clean_name(value, *, what: str, field: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("empty_name", f"The {what} name must not be empty.", field=field)
    value = value.strip()
    if len(value) > NAME_MAX_LENGTH:
        raise InvalidInput("name_too_long", f"The {what} name must be at most {NAME_MAX_LENGTH} characters.", field=field)
    if any(ord(ch) < 32 for ch in value):
        raise InvalidInput("invalid_name", f"The {what} name must not contain control characters.", field=field)
    return value


def _clean_slug(value) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput("invalid_slug", "The slug must not be empty.", field="slug")
    if len(value) > SLUG_MAX_LENGTH or slugify(value) != value:
        raise InvalidInput(
            "invalid_slug",
            f"The slug may use lowercase letters, digits and hyphens, at most {SLUG_MAX_LENGTH} characters.",
            field="slug",
        )
    if value in RESERVED_SLUGS:
        raise InvalidInput("invalid_slug", f"The slug {value!r} is reserved.", field="slug")
    if Project.objects.filter(slug=value).exists():
        raise Conflict("duplicate_slug", f"The slug {value!r} is already taken.", field="slug")
    return value


def _require_role(by: Membership, roles, action: str) -> None:
    if by.role not in roles:
        raise NotAllowed("forbidden", f"Your role ({by.role}) does not allow you to {action}.")


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "project"
    slug, n = base, 2
    while slug in RESERVED_SLUGS or Project.objects.filter(slug=slug).exists():
        slug = f"{base}-{n}"
        n += 1
    return slug


@transaction.atomic
def project_create(*, name: str, owner: User, slug: str | None = None) -> Project:
    """A project with its owner membership, all three environments, and a default deployment on the
    local agent in each environment, so a new project can connect at once."""
    name = _clean_name(name, what="project")
    slug = _clean_slug(slug) if slug is not None else _unique_slug(name)
    try:
        with transaction.atomic():
            project = Project.objects.create(name=name, slug=slug, owner=owner)
    except IntegrityError:  # a concurrent create took the slug between the check and the insert
        raise Conflict("duplicate_slug", f"The slug {slug!r} is already taken.", field="slug") from None
    Membership.objects.create(user=owner, project=project, role=Role.OWNER)
    agent = Agent.objects.create(project=project, name="Local agent", provider=Provider.LOCAL, model="local-echo")
    for kind in EnvironmentKind.values:
        environment = Environment.objects.create(project=project, kind=kind)
        Deployment.objects.create(
            project=project, environment=environment, agent=agent, name=f"Default ({kind})", is_default=True
        )
    return project


@transaction.atomic
def api_key_create(
    *,
    project: Project,
    environment: Environment,
    name: str,
    created_by: User | None,
    expires_at: datetime | None = None,
    key_id: str | None = None,
    rotated_from: ApiKey | None = None,
) -> tuple[ApiKey, str]:
    """Returns the row and the secret. The secret exists only in the return value: show it once."""
    if environment.project_id != project.pk:
        raise ValueError("environment belongs to another project")
    raw = key_generate(env_short=ENVIRONMENT_SHORT[environment.kind])
    prefix, last4 = key_display_parts(raw)
    extra = {"key_id": key_id} if key_id else {}
    api_key = ApiKey.objects.create(
        project=project,
        environment=environment,
        name=name,
        prefix=prefix,
        digest=key_digest(raw),
        last4=last4,
        created_by=created_by,
        expires_at=expires_at,
        rotated_from=rotated_from,
        **extra,
    )
    return api_key, raw


def _announce_key_change(api_key_pk: str) -> None:
    """Tell every process: drop the cached key and close its live sessions."""
    key_cache.invalidate_pk(api_key_pk)
    from accounts.notify import key_revoked_broadcast

    key_revoked_broadcast(api_key_pk=api_key_pk)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    pk = str(api_key.pk)
    key_cache.invalidate_pk(pk)
    transaction.on_commit(lambda: _announce_key_change(pk))
    return api_key


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, grace: timedelta, created_by: User | None) -> tuple[ApiKey, str]:
    """Issue a new key with the same stable key id; the old one stays valid for ``grace``."""
    if api_key.revoked_at is not None:
        raise ValueError("a revoked key cannot be rotated")
    if hasattr(api_key, "rotated_to"):
        raise ValueError("this key was already rotated")
    now = timezone.now()
    new_key, raw = api_key_create(
        project=api_key.project,
        environment=api_key.environment,
        name=api_key.name,
        created_by=created_by,
        expires_at=api_key.expires_at,
        key_id=api_key.key_id,
        rotated_from=api_key,
    )
    api_key.rotation_grace_ends_at = now + grace
    api_key.save(update_fields=["rotation_grace_ends_at"])
    pk = str(api_key.pk)
    key_cache.invalidate_pk(pk)
    if grace <= timedelta(0):
        transaction.on_commit(lambda: _announce_key_change(pk))
    return new_key, raw


# --- Projects -------------------------------------------------------------------------------------

def project_rename(*, by: Membership, name: str) -> Project:
    _require_role(by, MANAGER_ROLES, "rename the project")
    project = by.project
    project.name = _clean_name(name, what="project")
    project.save(update_fields=["name"])
    return project


@transaction.atomic
def project_delete(*, by: Membership) -> None:
    """Only an owner deletes a project. Its billing history outlives it: the project is archived, not
    erased. Its keys are revoked (every process closes their live sessions, which write their final
    usage to the ledger as any session end does), its agents, deployments, conversations and task
    images go, its slug is freed, and it disappears from every page and API; its ledger rows and
    monthly spend stay, and its owners can still read its statements (``project_archived_get``)."""
    _require_role(by, (Role.OWNER,), "delete the project")
    project = Project.objects.select_for_update().get(pk=by.project_id)
    if project.deleted_at is not None:
        return
    for api_key in project.api_keys.all():
        api_key_revoke(api_key=api_key)  # announced to every process on commit
    project.deployments.all().delete()  # their conversations with them
    project.agents.all().delete()
    project.task_images.all().delete()
    project.deleted_at = timezone.now()
    project.slug = f"deleted-{project.pk}-{uuid.uuid4().hex[:8]}"  # the old slug may be taken again
    project.save(update_fields=["deleted_at", "slug"])


# --- Memberships ----------------------------------------------------------------------------------

def _clean_role(role) -> str:
    if role not in Role.values:
        raise InvalidInput("invalid_role", f"The role must be one of {', '.join(Role.values)}.", field="role")
    return role


def _owner_count(project: Project) -> int:
    return project.memberships.filter(role=Role.OWNER).count()


def _sync_primary_owner(project: Project) -> None:
    """Project.owner always names a current owner (the earliest when it must change)."""
    if not project.memberships.filter(user_id=project.owner_id, role=Role.OWNER).exists():
        successor = project.memberships.filter(role=Role.OWNER).order_by("created_at", "pk").first()
        if successor is not None:
            project.owner_id = successor.user_id
            project.save(update_fields=["owner"])


@transaction.atomic
def membership_invite(
    *, by: Membership, email: str, role: str = Role.MEMBER, invite_link_base: str | None = None
) -> Membership | Invitation:
    """Add an existing user, found by email, to the caller's project. An address without an account
    gets an emailed Invitation (its link is ``invite_link_base`` + token) when ``invite_link_base`` is
    given; otherwise it is refused with ``unknown_user``."""
    _require_role(by, MANAGER_ROLES, "invite members")
    role = _clean_role(role)
    if role == Role.OWNER and by.role != Role.OWNER:
        raise NotAllowed("forbidden", "Only an owner can make someone an owner.")
    if not isinstance(email, str) or len(email) > 254:
        raise InvalidInput("invalid_email", "Enter a valid email address.", field="email")
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidInput("invalid_email", "Enter a valid email address.", field="email") from None
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        if invite_link_base is None:
            raise InvalidInput("unknown_user", "No account uses this email address; ask them to sign up first.",
                               field="email")
        from accounts.invitations import invitation_create

        return invitation_create(by=by, email=email, role=role, link_base=invite_link_base)
    project = by.project
    if project.memberships.filter(user=user).exists():
        raise Conflict("already_member", f"{email} is already a member of this project.", field="email")
    return Membership.objects.create(user=user, project=project, role=role)


@transaction.atomic
def membership_change_role(*, by: Membership, membership: Membership, role: str) -> Membership:
    _require_role(by, MANAGER_ROLES, "change roles")
    role = _clean_role(role)
    if by.role != Role.OWNER and Role.OWNER in (role, membership.role):
        raise NotAllowed("forbidden", "Only an owner can grant or change the owner role.")
    project = Project.objects.select_for_update().get(pk=membership.project_id)
    if membership.role == Role.OWNER and role != Role.OWNER and _owner_count(project) <= 1:
        raise Conflict("last_owner", "A project must keep an owner: make someone else an owner first.")
    membership.role = role
    membership.save(update_fields=["role"])
    _sync_primary_owner(project)
    return membership


@transaction.atomic
def membership_remove(*, by: Membership, membership: Membership) -> None:
    """Remove a member, or leave when ``membership`` is the caller's own."""
    if membership.pk != by.pk:
        _require_role(by, MANAGER_ROLES, "remove members")
        if membership.role == Role.OWNER and by.role != Role.OWNER:
            raise NotAllowed("forbidden", "Only an owner can remove an owner.")
    project = Project.objects.select_for_update().get(pk=membership.project_id)
    if membership.role == Role.OWNER and _owner_count(project) <= 1:
        raise Conflict("last_owner", "A project must keep an owner: make someone else an owner first, or delete the project.")
    membership.delete()
    _sync_primary_owner(project)


# --- API keys for portal and REST callers ---------------------------------------------------------

def api_key_issue(
    *, by: Membership, environment: str, name: str, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key on behalf of a member after checking role and input; returns (row, secret)."""
    _require_role(by, MANAGER_ROLES, "create keys")
    name = _clean_name(name, what="key")
    if environment not in EnvironmentKind.values:
        raise InvalidInput(
            "unknown_environment",
            f"The environment must be one of {', '.join(EnvironmentKind.values)}.",
            field="environment",
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("invalid_expiry", "The expiry must be in the future.", field="expires_at")
    env = by.project.environments.get(kind=environment)
    return api_key_create(project=by.project, environment=env, name=name, created_by=by.user, expires_at=expires_at)


def api_key_revoke_by(*, by: Membership, api_key: ApiKey) -> ApiKey:
    _require_role(by, MANAGER_ROLES, "revoke keys")
    return api_key_revoke(api_key=api_key)


def api_key_rotate_by(*, by: Membership, api_key: ApiKey, grace: str) -> tuple[ApiKey, str]:
    _require_role(by, MANAGER_ROLES, "rotate keys")
    if grace not in ROTATION_GRACE:
        raise InvalidInput("invalid_grace", f"The grace period must be one of {', '.join(ROTATION_GRACE)}.", field="grace")
    if api_key.revoked_at is not None:
        raise Conflict("revoked_key", "A revoked key cannot be rotated.")
    if ApiKey.objects.filter(rotated_from=api_key).exists():
        raise Conflict("already_rotated", "This key was already rotated; rotate its replacement instead.")
    return api_key_rotate(api_key=api_key, grace=ROTATION_GRACE[grace], created_by=by.user)


# --- Email verification ---------------------------------------------------------------------------

def email_verification_resend(*, request, email: str) -> bool:
    """Send a new verification email to ``email`` if it is an account's unverified address (False when
    it is not, or one went out too recently: allauth's per-address rate limit). Callers answer alike
    either way, so the page does not tell who has an account."""
    from allauth.account.internal.flows.email_verification import handle_verification_email_rate_limit
    from allauth.account.models import EmailAddress

    if not isinstance(email, str) or len(email) > 254:
        return False
    address = EmailAddress.objects.filter(email__iexact=email.strip(), verified=False).select_related("user").first()
    if address is None or not handle_verification_email_rate_limit(request, address.email):
        return False
    address.send_confirmation(request)  # not allauth's flow helper: its "sent" message would tell who exists
    return True
