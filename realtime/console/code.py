""""View code" on the console: the quickstart snippets (accounts.quickstart) for the console's current
environment, deployment and session settings, which its script passes as query parameters."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts import quickstart
from accounts.models import EnvironmentKind
from accounts.selectors import deployment_default_key, membership_get_for_user
from realtime.agents import selectors


@login_required
@require_GET
def console_code(request, slug):
    membership = membership_get_for_user(user=request.user, slug=slug)
    project = membership.project
    query = request.GET
    kind = query.get("environment") if query.get("environment") in EnvironmentKind.values else "development"
    deployment_key = query.get("deployment") or ""
    environment = selectors.environment_get(project=project, kind=kind)
    if not selectors.deployment_list(project=project, environment_id=environment.pk).filter(
            deployment_key=deployment_key).exists():
        deployment_key = deployment_default_key(project=project, environment_kind=kind)
    session = quickstart.session_from_console(
        instructions=query.get("instructions", ""), voice=query.get("voice", ""),
        turn_detection=query.get("turn_detection", ""), silence_duration_ms=query.get("silence_duration_ms", ""),
        output=query.get("output_modalities", ""), tools=query.get("tools", ""),
    )
    config = quickstart.QuickstartConfig(base_url=request.build_absolute_uri("/").rstrip("/"),
                                         deployment_key=deployment_key, session=session)
    return render(request, "realtime/console_code.html", {
        "membership": membership, "project": project, "nav": "console", "environment": kind,
        "deployment_key": deployment_key, "snippets": quickstart.snippets_for(config),
        "quickstart_note": f"The console's current settings for the {kind} environment. The console itself uses a "
                           f"managed key; use one of your keys in place of {quickstart.KEY_PLACEHOLDER}.",
    })
