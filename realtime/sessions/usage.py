"""What one gateway session has used so far, read from the usage ledger (for the console's meters).

The gateway's SessionMeter flushes at least every REALTIME_METER_FLUSH_SECONDS, so these totals trail
the live session by at most that long."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from accounts.models import UsageRecord
from realtime.models import SessionRecord


@dataclass(frozen=True)
class SessionUsage:
    session_id: str
    record: SessionRecord | None
    metrics: dict[str, Decimal]
    cost_micros: int


def session_usage_get(*, project_id: int, session_id: str) -> SessionUsage | None:
    """Totals per metric and the cost of ``session_id`` within the project; None when the project has
    no such session (another project's session looks exactly like a missing one). ``session_id`` may
    be the gateway's id or a client's session key (then its latest session)."""
    records = SessionRecord.objects.filter(project_id=project_id).order_by("-started_at")
    record = records.filter(session_id=session_id).first() or records.filter(client_key=session_id).first()
    if record is not None:
        session_id = record.session_id
    rows = UsageRecord.objects.filter(project_id=project_id, session_id=session_id)
    totals = rows.values("metric").annotate(quantity=Sum("quantity"), cost=Sum("cost_micros")).order_by("metric")
    metrics = {row["metric"]: row["quantity"] for row in totals}
    if record is None and not metrics:
        return None
    return SessionUsage(session_id=session_id, record=record, metrics=metrics,
                        cost_micros=sum(int(row["cost"] or 0) for row in totals))
