"""The sessions page: a project's live and recent gateway sessions (duration, deployment, key, close
reason). Members of the project only; anyone else gets a 404."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.selectors import membership_get_for_user
from realtime.gateway.records import session_records_for_project
from realtime.sessions.inspector import session_inspection_get


def _row(record, now) -> dict:
    # A record left open longer than any session can last belongs to a process that died: not live.
    longest = timedelta(seconds=settings.REALTIME_MAX_SESSION_SECONDS + settings.REALTIME_RESUME_SECONDS)
    lost = record.ended_at is None and now - record.started_at > longest
    end = record.ended_at or (record.started_at + longest if lost else now)
    return {
        "record": record,
        "live": record.ended_at is None and not lost,
        "seconds": max(0, int((end - record.started_at).total_seconds())),
        "key": record.api_key.masked if record.api_key else record.key_id,
        "close_reason": "lost (its server process stopped)" if lost else record.close_reason,
    }


@login_required
@require_GET
def session_list(request, slug):
    membership = membership_get_for_user(user=request.user, slug=slug)
    now = timezone.now()
    rows = [_row(record, now) for record in session_records_for_project(project_id=membership.project.pk)]
    return render(request, "realtime/sessions.html", {
        "membership": membership, "project": membership.project, "nav": "sessions",
        "live": [row for row in rows if row["live"]], "recent": [row for row in rows if not row["live"]],
    })


@login_required
@require_GET
def session_inspect(request, slug, session_id):
    """One session: its timeline (audio elided), transcript, per-turn latency, usage, cost and close
    reason. Any member may look; another project's session is a 404."""
    membership = membership_get_for_user(user=request.user, slug=slug)
    inspection = session_inspection_get(project_id=membership.project.pk, session_id=session_id[:100])
    if inspection is None:
        raise Http404("No such session.")
    return render(request, "realtime/session_inspect.html", {
        "membership": membership, "project": membership.project, "nav": "sessions", "session": inspection,
    })
