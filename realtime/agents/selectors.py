"""Reads of gateway data: agents, deployments, signing keys. Keyword-only functions.
Project access (membership) is accounts.selectors' concern."""
from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import Agent, Deployment, Environment, Project
from project.logging import register_secret
from realtime.lib.crypto import secret_decrypt
from realtime.models import SigningKey

# --- Agents and deployments -----------------------------------------------------------------------

def agent_list(*, project: Project) -> QuerySet[Agent]:
    return Agent.objects.filter(project=project).order_by("name")


def agent_get(*, project: Project, agent_id: int) -> Agent:
    return Agent.objects.get(project=project, pk=agent_id)


def agent_credential(*, agent: Agent) -> str:
    """The decrypted upstream credential ('' when none). Only the gateway's upstream client uses it;
    from now on every log line of this process has it redacted, whatever header or URL carries it."""
    credential = secret_decrypt(agent.credential_encrypted)
    register_secret(credential)
    return credential


def deployment_list(*, project: Project, environment_id: int | None = None) -> QuerySet[Deployment]:
    queryset = Deployment.objects.filter(project=project).select_related("agent", "environment")
    if environment_id is not None:
        queryset = queryset.filter(environment_id=environment_id)
    return queryset.order_by("environment_id", "name")


def deployment_get(*, project: Project, deployment_id: int, environment_id: int | None = None) -> Deployment:
    queryset = deployment_list(project=project, environment_id=environment_id)
    return queryset.get(pk=deployment_id)


def deployment_resolve(*, project_id: int, environment_id: int, deployment_key: str | None) -> Deployment:
    """The deployment a key (or a token minted from it) reaches: the environment's default when no
    key is named. Raises Deployment.DoesNotExist when the key names no deployment of THAT environment,
    so a key never reaches another environment's (or project's) deployments."""
    queryset = Deployment.objects.select_related("agent").filter(project_id=project_id, environment_id=environment_id)
    if deployment_key is None:
        return queryset.get(is_default=True)
    return queryset.get(deployment_key=deployment_key)


def environment_get(*, project: Project, kind: str) -> Environment:
    return Environment.objects.get(project=project, kind=kind)


# --- JWT signing keys -----------------------------------------------------------------------------

def signing_keys_verifying() -> QuerySet[SigningKey]:
    """Every key whose signatures are still accepted (and so published in the JWKS)."""
    return SigningKey.objects.filter(Q(verify_until__isnull=True) | Q(verify_until__gt=timezone.now())).order_by(
        "-created_at"
    )


def signing_key_signer() -> SigningKey | None:
    """The newest key that still signs, if any."""
    return SigningKey.objects.filter(retired_at__isnull=True).order_by("-created_at").first()
