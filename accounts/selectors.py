"""Reads: every query for project data goes through membership, so another tenant's object is a 404."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import ApiKey, Environment, Membership, Project, Role, User

# Roles that manage members and keys; plain members can view.
MANAGER_ROLES = (Role.OWNER, Role.ADMIN)


def project_list_for_user(*, user: User) -> QuerySet[Project]:
    return Project.objects.filter(memberships__user=user, deleted_at__isnull=True).order_by("name", "pk")


def project_archived_list(*, user: User) -> QuerySet[Project]:
    """Deleted (archived) projects the user owns: their statements stay readable to their owners."""
    return Project.objects.filter(memberships__user=user, memberships__role=Role.OWNER,
                                  deleted_at__isnull=False).order_by("-deleted_at", "pk")


def project_archived_get(*, user: User, pk) -> Project:
    """One of the user's archived projects; Http404 for anyone but its owners, or a live project."""
    project = project_archived_list(user=user).filter(pk=pk).first()
    if project is None:
        raise Http404("No such project.")
    return project


def membership_get_for_user(*, user: User, slug: str) -> Membership:
    """The caller's membership of the project ``slug``; Http404 when there is none, so a project
    the caller does not belong to looks exactly like one that does not exist."""
    membership = (
        Membership.objects.select_related("project", "project__owner")
        .filter(user=user, project__slug=slug, project__deleted_at__isnull=True)
        .first()
    )
    if membership is None:
        raise Http404("No such project.")
    return membership


def project_get_for_key(*, project_id: int, slug: str) -> Project:
    """An API-key caller sees its own project only."""
    project = Project.objects.filter(pk=project_id, slug=slug, deleted_at__isnull=True).first()
    if project is None:
        raise Http404("No such project.")
    return project


def membership_list(*, project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("created_at", "pk")


def membership_get(*, project: Project, pk) -> Membership:
    membership = Membership.objects.select_related("user", "project").filter(project=project, pk=pk).first()
    if membership is None:
        raise Http404("No such member.")
    return membership


def environment_list(*, project: Project) -> QuerySet[Environment]:
    return project.environments.order_by("id")


def api_key_list(*, project: Project) -> QuerySet[ApiKey]:
    return project.api_keys.select_related("environment", "created_by").order_by("-created_at")


def api_key_get(*, project: Project, pk) -> ApiKey:
    """A key of this project by its row id (a UUID); Http404 for a malformed id or another project's key."""
    try:
        return ApiKey.objects.select_related("environment", "project").get(project=project, pk=pk)
    except (ApiKey.DoesNotExist, ValueError, ValidationError):
        raise Http404("No such key.") from None


# The portal console's per-environment key (realtime.agents.services.console_key_get_or_create): made by
# no member, named this, managed by Switchboard.
CONSOLE_KEY_NAME = "Console"


def api_key_is_console(*, api_key: ApiKey) -> bool:
    return api_key.name == CONSOLE_KEY_NAME and api_key.created_by_id is None and api_key.rotated_from_id is None


def api_key_status(*, api_key: ApiKey, now=None) -> str:
    """active / revoked / expired / rotating (old key within its grace) / rotated (grace over)."""
    now = now or timezone.now()
    if api_key.revoked_at is not None and api_key.revoked_at <= now:
        return "revoked"
    if api_key.expires_at is not None and api_key.expires_at <= now:
        return "expired"
    if api_key.rotation_grace_ends_at is not None:
        return "rotating" if api_key.rotation_grace_ends_at > now else "rotated"
    return "active"


def deployment_default_key(*, project: Project, environment_kind: str) -> str:
    """The public key of the environment's default deployment ("" when it has none)."""
    from accounts.models import Deployment

    return (Deployment.objects.filter(project=project, environment__kind=environment_kind, is_default=True)
            .values_list("deployment_key", flat=True).first() or "")
