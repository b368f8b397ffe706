"""Portal pages for agents and deployments, the console token endpoint and the public JWKS.

Views parse, call a selector or service, render. Every project page goes through the membership
selector, so another tenant's project (or its agents) is a 404.
"""
from __future__ import annotations

import base64
import json

from asgiref.sync import async_to_sync
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.exceptions import NotAllowed
from accounts.models import Agent, Deployment, EnvironmentKind, Provider
from accounts.selectors import MANAGER_ROLES, membership_get_for_user
from realtime.agents import selectors, services
from realtime.agents.connection_test import ConnectionTestResult, agent_connection_test
from realtime.agents.forms import AgentForm, DeploymentForm
from realtime.agents.providers import provider_presets
from realtime.gateway.tokens import TokenRejected, token_mint

# --- JWKS -----------------------------------------------------------------------------------------

def _jwk(signing_key) -> dict:
    public = serialization.load_pem_public_key(signing_key.public_key_pem.encode())
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": signing_key.kid, "alg": signing_key.algorithm, "use": "sig"}


@require_GET
def jwks(request):
    """Every key that still verifies. A key is made on first need, so the set is never empty."""
    services.signing_key_current()
    response = JsonResponse({"keys": [_jwk(key) for key in selectors.signing_keys_verifying()]})
    # Short, so a verifier sees a rotated-in key soon; verifiers refetch on an unknown kid anyway.
    response["Cache-Control"] = "public, max-age=60"
    response["Access-Control-Allow-Origin"] = "*"
    return response


# --- Console token --------------------------------------------------------------------------------

def _json_error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@require_POST
def console_token(request, slug):
    """A token for the signed-in member's browser console (session + CSRF). It is minted against the
    environment's internal "Console" key, so the browser never holds an API key."""
    if not request.user.is_authenticated:
        return _json_error("not_authenticated", "Sign in to use the console.", 401)
    try:
        membership = membership_get_for_user(user=request.user, slug=slug)
    except Http404:
        return _json_error("not_found", "Not found.", 404)
    try:
        body = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _json_error("malformed_json", "The body is not valid JSON.", 400)
    if not isinstance(body, dict):
        return _json_error("invalid", "The body must be a JSON object.", 400)
    kind = body.get("environment") or EnvironmentKind.DEVELOPMENT
    deployment_key = body.get("deployment") or None
    if kind not in EnvironmentKind.values:
        return _json_error("invalid_environment", f"environment must be one of {', '.join(EnvironmentKind.values)}.", 400)
    if deployment_key is not None and not isinstance(deployment_key, str):
        return _json_error("invalid", "deployment must be a deployment key.", 400)
    environment = selectors.environment_get(project=membership.project, kind=kind)
    try:
        console_key = services.console_key_get_or_create(environment=environment)
    except services.ConsoleKeyRevoked as exc:
        return _json_error("console_key_revoked", str(exc), 409)
    try:
        token, expires_at = token_mint(api_key_pk=str(console_key.pk), deployment_key=deployment_key)
    except Deployment.DoesNotExist:
        return _json_error("deployment_not_found", "No deployment with that key in this environment.", 404)
    except TokenRejected as exc:
        return _json_error(exc.reason, exc.message, 409)
    scheme = "wss" if request.is_secure() else "ws"
    ws_url = f"{scheme}://{request.get_host()}/v1/realtime"
    if deployment_key:
        ws_url += f"?deployment={deployment_key}"
    response = JsonResponse({"token": token, "expires_at": expires_at.isoformat(), "ws_url": ws_url})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def console_enable(request, slug):
    """Re-enable the console for one environment after its managed key was revoked (owners, admins)."""
    membership = membership_get_for_user(user=request.user, slug=slug)
    kind = request.POST.get("environment", "")
    back = request.POST.get("next") == "console"
    if kind not in EnvironmentKind.values:
        messages.error(request, "Choose an environment to re-enable the console for.")
    else:
        environment = selectors.environment_get(project=membership.project, kind=kind)
        try:
            services.console_key_enable(by=membership, environment=environment)
        except NotAllowed as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"The console is enabled again for {kind}: a new managed key was made.")
    return redirect("console" if back else "project-detail", slug=slug)


# --- Agents pages ---------------------------------------------------------------------------------

def _context(membership, nav: str, **extra) -> dict:
    return {"membership": membership, "project": membership.project, "nav": nav,
            "can_manage": membership.role in MANAGER_ROLES, **extra}


def _apply_errors(form, error: ValidationError) -> None:
    for field, messages_ in error.message_dict.items():
        for message in messages_:
            form.add_error(field if field in form.fields else None, message)


def _agent_or_404(membership, agent_id: int) -> Agent:
    try:
        return selectors.agent_get(project=membership.project, agent_id=agent_id)
    except Agent.DoesNotExist:
        raise Http404("No such agent.") from None


@login_required
def agent_list(request, slug):
    membership = membership_get_for_user(user=request.user, slug=slug)
    agents = selectors.agent_list(project=membership.project).prefetch_related("deployments")
    return render(request, "realtime/agents.html", _context(membership, "agents", agents=agents))


def _agent_form_context(context: dict, form, test_result=None) -> dict:
    return {**context, "form": form, "presets": provider_presets(), "test_result": test_result}


def _agent_connection_test(request, membership, form, agent: Agent | None):
    """Run "Test connection" on the form as typed (blank credential: the stored one). JSON for the page's
    script, else the form again with the result; nothing is saved."""
    data = {**form.service_data()}
    data["name"] = data.get("name") or "connection test"
    credential = data.pop("credential", None)
    try:
        candidate = services.agent_build(project=membership.project, data=data, existing=agent)
    except ValidationError as error:
        _apply_errors(form, error)
        result = ConnectionTestResult(False, "invalid", "Fix the fields marked above, then test again.")
    else:
        if credential is None and agent is not None:
            credential = selectors.agent_credential(agent=agent)
        server = (request.META.get("SERVER_NAME"), request.META.get("SERVER_PORT"))
        result = async_to_sync(agent_connection_test)(
            agent=candidate, credential=credential or "", timeout=settings.AGENT_TEST_TIMEOUT_SECONDS, server=server)
    if "application/json" in request.headers.get("Accept", ""):
        body = result.as_json()
        if form.errors:
            body["errors"] = {field: [str(e) for e in errors] for field, errors in form.errors.items()}
        return JsonResponse(body, status=200 if not form.errors else 400)
    return result


def _agent_form_post(request, membership, context: dict, agent: Agent | None):
    form = AgentForm(request.POST, initial=AgentForm.initial_for(agent) if agent else None)
    if not form.is_valid() and request.POST.get("action") != "test":
        return render(request, "realtime/agents_form.html", _agent_form_context(context, form), status=400)
    if request.POST.get("action") == "test":
        if not form.is_valid() and set(form.errors) - {"name"}:
            result = ConnectionTestResult(False, "invalid", "Fix the fields marked above, then test again.")
            if "application/json" in request.headers.get("Accept", ""):
                errors = {field: [str(e) for e in errs] for field, errs in form.errors.items() if field != "name"}
                return JsonResponse({**result.as_json(), "errors": errors}, status=400)
        else:
            form.errors.pop("name", None)
            outcome = _agent_connection_test(request, membership, form, agent)
            if isinstance(outcome, JsonResponse):
                return outcome
            result = outcome
        return render(request, "realtime/agents_form.html", _agent_form_context(context, form, result))
    try:
        with transaction.atomic():
            if agent is None:
                agent = services.agent_create(project=membership.project, data=form.service_data())
                verb = "created"
            else:
                services.agent_update(agent=agent, data=form.service_data())
                verb = "saved"
            default_in = form.cleaned_data.get("default_in")
            if default_in:
                environment = selectors.environment_get(project=membership.project, kind=default_in)
                services.agent_make_default(agent=agent, environment=environment)
    except ValidationError as error:
        _apply_errors(form, error)
        return render(request, "realtime/agents_form.html", _agent_form_context(context, form), status=400)
    suffix = f" It is now the {default_in} default." if default_in else ""
    messages.success(request, f"Agent “{agent.name}” {verb}.{suffix}")
    return redirect("agent-list", slug=membership.project.slug)


@login_required
@require_http_methods(["GET", "POST"])
def agent_new(request, slug):
    membership = membership_get_for_user(user=request.user, slug=slug)
    context = _context(membership, "agents", agent=None)
    if not context["can_manage"]:
        return render(request, "realtime/agents_form.html", context, status=403)
    if request.method == "POST":
        return _agent_form_post(request, membership, context, None)
    initial = {"provider": request.GET["provider"]} if request.GET.get("provider") in Provider.values else None
    return render(request, "realtime/agents_form.html", _agent_form_context(context, AgentForm(initial=initial)))


@login_required
@require_http_methods(["GET", "POST"])
def agent_edit(request, slug, agent_id):
    membership = membership_get_for_user(user=request.user, slug=slug)
    agent = _agent_or_404(membership, agent_id)
    context = _context(membership, "agents", agent=agent, credential_set=bool(agent.credential_encrypted))
    if request.method == "POST":
        if not context["can_manage"]:
            return render(request, "realtime/agents_form.html", context, status=403)
        return _agent_form_post(request, membership, context, agent)
    return render(request, "realtime/agents_form.html",
                  _agent_form_context(context, AgentForm(initial=AgentForm.initial_for(agent))))


@login_required
@require_http_methods(["GET", "POST"])
def agent_delete(request, slug, agent_id):
    """GET asks for confirmation, naming the agent; POST deletes."""
    membership = membership_get_for_user(user=request.user, slug=slug)
    agent = _agent_or_404(membership, agent_id)
    if request.method == "GET":
        used = agent.deployments.count()
        return render(request, "realtime/confirm_delete.html", _context(
            membership, "agents", what="agent", name=agent.name, cancel_url=reverse("agent-list", args=[slug]),
            consequence=(f"It is used by {used} deployment{pluralize(used)}: those must move to another agent first."
                         if used else "Its configuration and stored credential are removed. This cannot be undone."),
        ))
    if membership.role not in MANAGER_ROLES:
        messages.error(request, "Only owners and admins can delete agents.")
        return redirect("agent-list", slug=slug)
    try:
        services.agent_delete(agent=agent)
    except ValidationError as error:
        messages.error(request, error.messages[0])
    else:
        messages.success(request, f"Agent “{agent.name}” deleted.")
    return redirect("agent-list", slug=slug)


# --- Deployments pages ----------------------------------------------------------------------------

def _deployment_or_404(membership, deployment_id: int) -> Deployment:
    try:
        return selectors.deployment_get(project=membership.project, deployment_id=deployment_id)
    except Deployment.DoesNotExist:
        raise Http404("No such deployment.") from None


@login_required
def deployment_list(request, slug):
    membership = membership_get_for_user(user=request.user, slug=slug)
    deployments = list(selectors.deployment_list(project=membership.project))
    environments = [
        {"kind": kind, "label": label, "deployments": [d for d in deployments if d.environment.kind == kind]}
        for kind, label in EnvironmentKind.choices
    ]
    return render(request, "realtime/deployments.html", _context(membership, "deployments", environments=environments))


@login_required
@require_http_methods(["GET", "POST"])
def deployment_new(request, slug):
    membership = membership_get_for_user(user=request.user, slug=slug)
    context = _context(membership, "deployments", deployment=None)
    if not context["can_manage"]:
        return render(request, "realtime/deployments_form.html", context, status=403)
    agents = selectors.agent_list(project=membership.project)
    form = DeploymentForm(request.POST or None, agents=agents,
                          initial={"environment": request.GET.get("environment", EnvironmentKind.DEVELOPMENT)})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            deployment = services.deployment_create(
                project=membership.project,
                environment=selectors.environment_get(project=membership.project, kind=data["environment"]),
                agent=data["agent"], name=data["name"], is_default=data["is_default"],
                task_upstream_url=data["task_upstream_url"],
            )
        except ValidationError as error:
            _apply_errors(form, error)
        else:
            messages.success(request, f"Deployment “{deployment.name}” created.")
            return redirect("deployment-list", slug=slug)
    return render(request, "realtime/deployments_form.html", {**context, "form": form}, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def deployment_edit(request, slug, deployment_id):
    membership = membership_get_for_user(user=request.user, slug=slug)
    deployment = _deployment_or_404(membership, deployment_id)
    context = _context(membership, "deployments", deployment=deployment)
    if request.method == "POST" and not context["can_manage"]:
        return render(request, "realtime/deployments_form.html", context, status=403)
    form = DeploymentForm(
        request.POST or None, agents=selectors.agent_list(project=membership.project), editing=True,
        initial={"name": deployment.name, "environment": deployment.environment.kind, "agent": deployment.agent,
                 "task_upstream_url": deployment.task_upstream_url, "is_default": deployment.is_default},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.deployment_update(deployment=deployment, name=data["name"], agent=data["agent"],
                                       task_upstream_url=data["task_upstream_url"])
            if data["is_default"] and not deployment.is_default:
                services.deployment_set_default(deployment=deployment)
        except ValidationError as error:
            _apply_errors(form, error)
        else:
            messages.success(request, f"Deployment “{deployment.name}” saved.")
            return redirect("deployment-list", slug=slug)
    return render(request, "realtime/deployments_form.html", {**context, "form": form}, status=400 if form.errors else 200)


@login_required
@require_POST
def deployment_default(request, slug, deployment_id):
    membership = membership_get_for_user(user=request.user, slug=slug)
    deployment = _deployment_or_404(membership, deployment_id)
    if membership.role not in MANAGER_ROLES:
        messages.error(request, "Only owners and admins can change the default deployment.")
    else:
        services.deployment_set_default(deployment=deployment)
        messages.success(request, f"“{deployment.name}” is now the {deployment.environment.kind} default.")
    return redirect("deployment-list", slug=slug)


@login_required
@require_http_methods(["GET", "POST"])
def deployment_delete(request, slug, deployment_id):
    """GET asks for confirmation, naming the deployment; POST deletes."""
    membership = membership_get_for_user(user=request.user, slug=slug)
    deployment = _deployment_or_404(membership, deployment_id)
    if request.method == "GET":
        return render(request, "realtime/confirm_delete.html", _context(
            membership, "deployments", what="deployment", name=deployment.name,
            cancel_url=reverse("deployment-list", args=[slug]),
            consequence=(f"Connections that name its deployment key {deployment.deployment_key} are refused "
                         f"from now on ({deployment.environment.kind}). This cannot be undone."),
        ))
    if membership.role not in MANAGER_ROLES:
        messages.error(request, "Only owners and admins can delete deployments.")
        return redirect("deployment-list", slug=slug)
    try:
        services.deployment_delete(deployment=deployment)
    except ValidationError as error:
        messages.error(request, error.messages[0])
    else:
        messages.success(request, f"Deployment “{deployment.name}” deleted.")
    return redirect("deployment-list", slug=slug)
