"""Writes of gateway data: JWT signing keys, agents, deployments and the portal console's key.

Keyword-only functions named <entity>_<action>. Validation failures raise Django's ValidationError
with a field -> messages dict, which views and the REST API render as a 400 / form errors.
"""
from __future__ import annotations

import re
import secrets
from datetime import timedelta
from urllib.parse import urlparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from accounts.exceptions import NotAllowed
from accounts.models import Agent, ApiKey, Deployment, Environment, Membership, Project, Provider
from accounts.selectors import CONSOLE_KEY_NAME, MANAGER_ROLES
from accounts.services import api_key_create
from realtime.agents.selectors import signing_key_signer
from realtime.lib.crypto import secret_encrypt
from realtime.models import SigningKey

# Tokens live at most this long, so a retired signing key must verify at least this long after rotation.
TOKEN_MAX_TTL_SECONDS = 3600


# --- JWT signing keys -----------------------------------------------------------------------------

def signing_key_create() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    kid = timezone.now().strftime("%Y%m%d") + "-" + secrets.token_hex(6)
    return SigningKey.objects.create(
        kid=kid, algorithm="EdDSA", private_key_encrypted=secret_encrypt(pem), public_key_pem=public_pem
    )


def signing_key_current() -> SigningKey:
    """The key that signs now, created on first need. Two processes racing here may each create one;
    both verify, and the newest signs, so that is harmless."""
    return signing_key_signer() or signing_key_create()


@transaction.atomic
def signing_key_rotate(*, verify_for: timedelta | None = None) -> tuple[SigningKey, list[SigningKey]]:
    """A new key signs from now; the previous signing keys stop signing but keep verifying for
    ``verify_for`` (default: the longest token lifetime) so no token in flight breaks."""
    now = timezone.now()
    until = now + (verify_for if verify_for is not None else timedelta(seconds=TOKEN_MAX_TTL_SECONDS))
    retired = list(SigningKey.objects.select_for_update().filter(retired_at__isnull=True))
    for key in retired:
        key.retired_at = now
        if key.verify_until is None or key.verify_until > until:
            key.verify_until = until
        key.save(update_fields=["retired_at", "verify_until"])
    return signing_key_create(), retired


# --- Agents ---------------------------------------------------------------------------------------

DEFAULT_PROVIDER_URLS = {
    Provider.OPENAI: "wss://api.openai.com/v1/realtime",
    Provider.INWORLD: "wss://api.inworld.ai/api/v1/realtime/session",
}
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOOL_KEYS = {"type", "name", "description", "parameters"}
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# The upstream client owns these: a template must not be able to break the WebSocket handshake.
RESERVED_HEADERS = {"host", "connection", "upgrade", "content-length", "transfer-encoding"}
AGENT_FIELDS = {"name", "provider", "url", "model", "voice", "instructions", "tools", "header_template", "credential"}


def _url_error(url: str) -> str | None:
    parsed = urlparse(url)
    if parsed.scheme not in ("ws", "wss") or not parsed.netloc:
        return "Enter a ws:// or wss:// URL."
    if len(url) > 500:
        return "The URL is too long (500 characters at most)."
    return None


def _tools_errors(tools) -> list[str]:
    if not isinstance(tools, list):
        return ["Tools must be a JSON list."]
    errors, names = [], set()
    for index, tool in enumerate(tools):
        where = f"Tool {index + 1}"
        if not isinstance(tool, dict):
            errors.append(f"{where}: must be an object.")
            continue
        unknown = set(tool) - TOOL_KEYS
        if unknown:
            errors.append(f"{where}: unknown field(s) {', '.join(sorted(unknown))}.")
        if tool.get("type") != "function":
            errors.append(f'{where}: "type" must be "function".')
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            errors.append(f'{where}: "name" must be 1-64 letters, digits, "_" or "-".')
        elif name in names:
            errors.append(f'{where}: the name "{name}" is used twice.')
        else:
            names.add(name)
        if "description" in tool and not isinstance(tool["description"], str):
            errors.append(f'{where}: "description" must be a string.')
        parameters = tool.get("parameters")
        if not isinstance(parameters, dict) or parameters.get("type") != "object":
            errors.append(f'{where}: "parameters" must be a JSON schema object with "type": "object".')
        else:
            try:
                Draft202012Validator.check_schema(parameters)
            except SchemaError as exc:
                errors.append(f'{where}: "parameters" is not a valid JSON schema: {exc.message}')
    return errors


def _header_template_errors(template) -> list[str]:
    if not isinstance(template, dict):
        return ["The header template must be a JSON object of header name to value."]
    errors = []
    for name, value in template.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            errors.append(f"{name!r} is not a valid header name.")
        elif name.lower() in RESERVED_HEADERS or name.lower().startswith("sec-websocket-"):
            errors.append(f"{name} is set by the gateway and cannot be templated.")
        if not isinstance(value, str) or any(ch in value for ch in "\r\n\x00") or len(value) > 2000:
            errors.append(f"The value of {name} must be one line of text (2000 characters at most).")
    return errors


def _agent_clean(data: dict) -> dict:
    """Validate and normalise agent fields; raises ValidationError naming each bad field."""
    errors: dict[str, list[str]] = {}
    unknown = set(data) - AGENT_FIELDS
    if unknown:
        raise ValidationError({field: ["Unknown field."] for field in unknown})
    name = (data.get("name") or "").strip()
    if not name:
        errors["name"] = ["A name is required."]
    elif len(name) > 100:
        errors["name"] = ["The name is too long (100 characters at most)."]
    provider = data.get("provider") or Provider.LOCAL
    if provider not in Provider.values:
        errors["provider"] = [f"Choose one of {', '.join(Provider.values)}."]
    url = (data.get("url") or "").strip()
    if provider == Provider.LOCAL:
        url = ""  # the local agent is always this server's own
    elif not url and provider in DEFAULT_PROVIDER_URLS:
        url = DEFAULT_PROVIDER_URLS[provider]
    elif not url:
        errors["url"] = ["A custom agent needs its WebSocket URL."]
    if url and (problem := _url_error(url)):
        errors["url"] = [problem]
    for field in ("model", "voice"):
        if len(data.get(field) or "") > 100:
            errors[field] = ["Too long (100 characters at most)."]
    if len(data.get("instructions") or "") > 20000:
        errors["instructions"] = ["Too long (20000 characters at most)."]
    tools = data.get("tools") if data.get("tools") is not None else []
    if tool_errors := _tools_errors(tools):
        errors["tools"] = tool_errors
    template = data.get("header_template") if data.get("header_template") is not None else {}
    if header_errors := _header_template_errors(template):
        errors["header_template"] = header_errors
    credential = data.get("credential")
    if credential is not None:
        if not isinstance(credential, str) or len(credential) > 4096 or any(ch in credential for ch in "\r\n\x00"):
            errors["credential"] = ["The credential must be one line of text (4096 characters at most)."]
    if errors:
        raise ValidationError(errors)
    return {
        "name": name,
        "provider": provider,
        "url": url,
        "model": (data.get("model") or "").strip(),
        "voice": (data.get("voice") or "").strip(),
        "instructions": data.get("instructions") or "",
        "tools": tools,
        "header_template": template,
    }


def _agent_save(agent: Agent) -> Agent:
    try:
        with transaction.atomic():
            agent.save()
    except IntegrityError:
        raise ValidationError({"name": ["This project already has an agent with that name."]}) from None
    return agent


def agent_create(*, project: Project, data: dict) -> Agent:
    """``data`` holds agent fields; ``credential`` is stored encrypted and never shown back."""
    clean = _agent_clean(data)
    agent = Agent(project=project, **clean, credential_encrypted=secret_encrypt(data.get("credential") or ""))
    return _agent_save(agent)


def agent_build(*, project: Project, data: dict, existing: Agent | None = None) -> Agent:
    """A validated, unsaved agent from form data (for "Test connection"): ``existing``'s fields fill
    what ``data`` lacks."""
    current = {field: getattr(existing, field) for field in AGENT_FIELDS - {"credential"}} if existing else {}
    clean = _agent_clean({**current, **data})
    return Agent(project=project, **clean)


@transaction.atomic
def agent_make_default(*, agent: Agent, environment: Environment) -> Deployment:
    """Make ``agent`` what ``environment``'s keys reach by default: its existing deployment there
    becomes the default, or a new one is made for it."""
    deployment = Deployment.objects.filter(environment=environment, agent=agent).order_by("pk").first()
    if deployment is None:
        name, n = f"{agent.name} ({environment.kind})", 2
        while Deployment.objects.filter(project_id=agent.project_id, name=name).exists():
            name, n = f"{agent.name} ({environment.kind}) {n}", n + 1
        deployment = Deployment.objects.create(project_id=agent.project_id, environment=environment, agent=agent,
                                               name=name[:100])
    return deployment_set_default(deployment=deployment)


def agent_update(*, agent: Agent, data: dict) -> Agent:
    """Fields absent from ``data`` keep their values. ``credential``: absent or None keeps the stored
    one, "" clears it, anything else replaces it."""
    current = {field: getattr(agent, field) for field in AGENT_FIELDS - {"credential"}}
    clean = _agent_clean({**current, **data})
    for field, value in clean.items():
        setattr(agent, field, value)
    if data.get("credential") is not None:
        agent.credential_encrypted = secret_encrypt(data["credential"])
    return _agent_save(agent)


def agent_delete(*, agent: Agent) -> None:
    try:
        with transaction.atomic():
            agent.delete()
    except ProtectedError:
        raise ValidationError(
            {"agent": ["Deployments still use this agent; point them at another agent or delete them first."]}
        ) from None


# --- Deployments ----------------------------------------------------------------------------------

def _deployment_errors(*, project: Project, name: str, agent: Agent, task_upstream_url: str) -> dict:
    errors: dict[str, list[str]] = {}
    if not name.strip():
        errors["name"] = ["A name is required."]
    elif len(name) > 100:
        errors["name"] = ["The name is too long (100 characters at most)."]
    if agent.project_id != project.pk:
        errors["agent"] = ["Choose an agent of this project."]
    if task_upstream_url:
        parsed = urlparse(task_upstream_url)
        if parsed.scheme not in ("http", "https", "ws", "wss") or not parsed.netloc or len(task_upstream_url) > 500:
            errors["task_upstream_url"] = ["Enter an http(s):// or ws(s):// URL (500 characters at most)."]
    return errors


@transaction.atomic
def deployment_create(
    *, project: Project, environment: Environment, agent: Agent, name: str, is_default: bool = False,
    task_upstream_url: str = "",
) -> Deployment:
    """Bind an agent of the project to one of its environments. The first deployment of an
    environment becomes its default."""
    errors = _deployment_errors(project=project, name=name, agent=agent, task_upstream_url=task_upstream_url)
    if environment.project_id != project.pk:
        errors["environment"] = ["Choose an environment of this project."]
    if errors:
        raise ValidationError(errors)
    has_default = Deployment.objects.filter(environment=environment, is_default=True).exists()
    deployment = Deployment.objects.create(
        project=project, environment=environment, agent=agent, name=name.strip(),
        task_upstream_url=task_upstream_url, is_default=not has_default,
    )
    if is_default and has_default:
        deployment_set_default(deployment=deployment)
    return deployment


@transaction.atomic
def deployment_update(
    *, deployment: Deployment, name: str | None = None, agent: Agent | None = None,
    task_upstream_url: str | None = None,
) -> Deployment:
    """The environment and the public deployment key never change; name, agent and task URL can."""
    name = deployment.name if name is None else name
    agent = deployment.agent if agent is None else agent
    task_upstream_url = deployment.task_upstream_url if task_upstream_url is None else task_upstream_url
    errors = _deployment_errors(
        project=deployment.project, name=name, agent=agent, task_upstream_url=task_upstream_url
    )
    if errors:
        raise ValidationError(errors)
    deployment.name, deployment.agent, deployment.task_upstream_url = name.strip(), agent, task_upstream_url
    deployment.save(update_fields=["name", "agent", "task_upstream_url"])
    return deployment


@transaction.atomic
def deployment_set_default(*, deployment: Deployment) -> Deployment:
    # Lock the environment's deployments so two concurrent switches cannot leave zero or two defaults.
    list(Deployment.objects.select_for_update().filter(environment_id=deployment.environment_id))
    Deployment.objects.filter(environment_id=deployment.environment_id, is_default=True).exclude(
        pk=deployment.pk
    ).update(is_default=False)
    deployment.is_default = True
    deployment.save(update_fields=["is_default"])
    return deployment


@transaction.atomic
def deployment_delete(*, deployment: Deployment) -> None:
    """The default cannot go: every environment keeps one so a key without a deployment key connects."""
    if deployment.is_default:
        raise ValidationError(
            {"deployment": ["This is the environment's default deployment; make another one the default first."]}
        )
    deployment.delete()


# --- The portal console's key ---------------------------------------------------------------------

class ConsoleKeyRevoked(Exception):
    """The environment's console key was revoked: the console stays off until someone re-enables it."""

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        when = api_key.revoked_at.strftime("%Y-%m-%d %H:%M UTC") if api_key.revoked_at else "earlier"
        super().__init__(
            f"The console's managed key for {api_key.environment.kind} was revoked ({when}), so the console "
            "is off for this environment. An owner or admin can re-enable it on the Keys page or here."
        )


def _console_key_latest(environment: Environment) -> ApiKey | None:
    return (
        ApiKey.objects.select_related("environment")
        .filter(environment=environment, name=CONSOLE_KEY_NAME, created_by__isnull=True, rotated_from__isnull=True)
        .order_by("-created_at")
        .first()
    )


@transaction.atomic
def console_key_get_or_create(*, environment: Environment) -> ApiKey:
    """The per-environment managed key the portal console mints tokens against (a token's ``sub``
    must be a key). Made on first use; its secret is thrown away at once, so it can only mint through
    the portal. Each use is recorded (``last_used_at``). Revoking it turns the console off for the
    environment (ConsoleKeyRevoked) until ``console_key_enable`` makes a new one: a revocation is a
    decision, and the next Connect must not quietly undo it."""
    # Lock the environment row so two first uses at once make one key.
    Environment.objects.select_for_update().filter(pk=environment.pk).first()
    latest = _console_key_latest(environment)
    if latest is not None and latest.revoked_at is not None:
        raise ConsoleKeyRevoked(latest)
    if latest is None or latest.expires_at is not None or latest.rotation_grace_ends_at is not None:
        latest, _secret = api_key_create(
            project=environment.project, environment=environment, name=CONSOLE_KEY_NAME, created_by=None
        )
    now = timezone.now()
    ApiKey.objects.filter(pk=latest.pk).update(last_used_at=now)
    latest.last_used_at = now
    return latest


@transaction.atomic
def console_key_enable(*, by: Membership, environment: Environment) -> ApiKey:
    """Turn the console back on after its key was revoked: a new managed key. Owners and admins only,
    as for any key."""
    if by.role not in MANAGER_ROLES or environment.project_id != by.project_id:
        raise NotAllowed("forbidden", f"Your role ({by.role}) does not allow you to re-enable the console.")
    Environment.objects.select_for_update().filter(pk=environment.pk).first()
    latest = _console_key_latest(environment)
    if latest is not None and latest.revoked_at is None:
        return latest
    api_key, _secret = api_key_create(
        project=environment.project, environment=environment, name=CONSOLE_KEY_NAME, created_by=None
    )
    return api_key
