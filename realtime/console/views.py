"""The voice console page and the JSON its meters poll. The page's token comes from
``views.console_token``; the browser never holds an API key."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET

from accounts.billing.money import money_format
from accounts.models import EnvironmentKind
from accounts.selectors import MANAGER_ROLES, membership_get_for_user
from realtime.agents import selectors
from realtime.sessions.usage import session_usage_get

# The voices the realtime protocol names; the local agent maps each to an eSpeak NG variant.
VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer", "verse")
SESSION_PATH = "/api/v1/realtime/session"  # the resumable realtime endpoint (see docs/realtime.md)
USAGE_PLACEHOLDER = "SESSION_ID"


@login_required
@require_GET
def console_page(request, slug):
    membership = membership_get_for_user(user=request.user, slug=slug)
    project = membership.project
    deployments = [
        {"key": d.deployment_key, "name": d.name, "environment": d.environment.kind, "is_default": d.is_default,
         "agent": d.agent.name}
        for d in selectors.deployment_list(project=project)
    ]
    config = {
        "tokenUrl": reverse("console-token", kwargs={"slug": slug}),
        "csrfToken": get_token(request),
        "usageUrl": reverse("console-session-usage", kwargs={"slug": slug, "session_id": USAGE_PLACEHOLDER}),
        "usagePlaceholder": USAGE_PLACEHOLDER,
        "sessionPath": SESSION_PATH,
        "captureWorkletUrl": static("console/capture-worklet.js"),
        "playbackWorkletUrl": static("console/playback-worklet.js"),
        "resumeSeconds": settings.REALTIME_RESUME_SECONDS,
        "meterPollSeconds": min(settings.REALTIME_METER_FLUSH_SECONDS, 2.0),
        "deployments": deployments,
    }
    return render(request, "realtime/console.html", {
        "membership": membership, "project": project, "nav": "console", "config": config,
        "environments": EnvironmentKind.choices, "voices": VOICES, "zero_cost": money_format(0),
        "can_manage": membership.role in MANAGER_ROLES,
    })


def _json_error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _decimal_text(value) -> str:
    return format(value.normalize(), "f") if value else "0"


@require_GET
def session_usage(request, slug, session_id):
    """Usage so far of one session of this project: quantities per metric (decimal strings, exact),
    cost in integer micro-units and as shown (BILLING_CURRENCY). Another project's session is a 404."""
    if not request.user.is_authenticated:
        return _json_error("not_authenticated", "Sign in to see session usage.", 401)
    try:
        membership = membership_get_for_user(user=request.user, slug=slug)
    except Http404:
        return _json_error("not_found", "Not found.", 404)
    usage = session_usage_get(project_id=membership.project.pk, session_id=session_id[:100])
    if usage is None:
        return _json_error("session_not_found", "This project has no session with that id.", 404)
    record = usage.record
    body = {
        "session_id": usage.session_id,
        "live": record is not None and record.ended_at is None,
        "started_at": record.started_at.isoformat() if record else None,
        "ended_at": record.ended_at.isoformat() if record and record.ended_at else None,
        "close_reason": record.close_reason if record else "",
        "metrics": {metric: _decimal_text(quantity) for metric, quantity in usage.metrics.items()},
        "cost_micros": usage.cost_micros,
        "cost": money_format(usage.cost_micros),
    }
    response = JsonResponse(body)
    response["Cache-Control"] = "no-store"
    return response
