"""Reads for the session inspector: one session's record, timeline (realtime.sessions.timeline),
transcript, per-turn latency, usage and cost. Everything is scoped by project: another project's
session reads exactly like a missing one."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from accounts.billing.money import money_format
from realtime.models import SessionEvent, SessionRecord
from realtime.sessions.usage import session_usage_get

TURN_STARTS = {("client", "response.create"), ("upstream", "input_audio_buffer.speech_stopped"),
               ("upstream", "input_audio_buffer.committed")}
FIRST_OUTPUTS = {"response.output_text.delta", "response.output_audio.delta", "response.output_audio_transcript.delta",
                 "response.audio.delta", "response.text.delta", "response.audio_transcript.delta"}
ASSISTANT_DONE = {"response.output_text.done": "text", "response.output_audio_transcript.done": "transcript",
                  "response.text.done": "text", "response.audio_transcript.done": "transcript"}


@dataclass(frozen=True)
class TimelineRow:
    offset_ms: int
    direction: str
    type: str
    count: int
    detail: str


@dataclass(frozen=True)
class Turn:
    number: int
    latency_ms: int | None  # from the end of the user's turn to the first output
    status: str


@dataclass
class SessionInspection:
    session_id: str
    record: SessionRecord | None
    dialect: str
    started_at: datetime | None
    ended_at: datetime | None
    close_reason: str
    metrics: dict = field(default_factory=dict)
    cost: str = ""
    timeline: list[TimelineRow] = field(default_factory=list)
    transcript: list[tuple[str, str]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)


def _detail(event: SessionEvent) -> str:
    if not event.data:
        return ""
    if "audio_bytes" in event.data:
        return f"{event.data['audio_bytes']} bytes of audio (elided)"
    return json.dumps(event.data, ensure_ascii=False, sort_keys=True)[:600]


def _user_text(event: SessionEvent) -> str | None:
    if event.direction == "client" and event.type == "conversation.item.create":
        item = event.data.get("item") or {}
        if isinstance(item, dict) and item.get("role") == "user":
            parts = [str(c["text"]) for c in item.get("content") or [] if isinstance(c, dict) and c.get("text")]
            return " ".join(parts) or None
    if event.type == "conversation.item.input_audio_transcription.completed":
        return event.data.get("transcript") or None
    return None


def _conversation(events: list[SessionEvent]) -> tuple[list[tuple[str, str]], list[Turn]]:
    transcript: list[tuple[str, str]] = []
    turns: list[Turn] = []
    turn_started: datetime | None = None
    first_output: datetime | None = None
    said, deltas = "", ""
    for event in events:
        if (text := _user_text(event)) is not None:
            transcript.append(("user", text))
        if (event.direction, event.type) in TURN_STARTS:
            turn_started = event.at
        elif event.direction == "upstream" and event.type in FIRST_OUTPUTS:
            first_output = first_output or event.at
            if event.type in ("response.output_text.delta", "response.text.delta"):
                deltas += event.data.get("delta", "")
        elif event.direction == "upstream" and event.type in ASSISTANT_DONE:
            said = said or event.data.get(ASSISTANT_DONE[event.type]) or ""
        elif event.direction == "upstream" and event.type == "response.done":
            response = event.data.get("response") or {}
            latency = None
            if turn_started is not None and first_output is not None and first_output >= turn_started:
                latency = int((first_output - turn_started).total_seconds() * 1000)
            turns.append(Turn(len(turns) + 1, latency, str(response.get("status") or "")))
            if said or deltas:
                transcript.append(("assistant", said or deltas))
            turn_started = first_output = None
            said, deltas = "", ""
    return transcript, turns


def session_inspection_get(*, project_id: int, session_id: str) -> SessionInspection | None:
    """None when the project has no record, usage or timeline for ``session_id``."""
    record = (SessionRecord.objects.filter(project_id=project_id, session_id=session_id)
              .select_related("api_key", "deployment").order_by("-started_at").first())
    events = list(SessionEvent.objects.filter(project_id=project_id, session_id=session_id).order_by("id"))
    usage = session_usage_get(project_id=project_id, session_id=session_id)
    if record is None and not events and usage is None:
        return None
    dialect = record.dialect if record else ""
    if not dialect and usage is not None:
        from accounts.models import UsageRecord

        dialect = (UsageRecord.objects.filter(project_id=project_id, session_id=session_id)
                   .values_list("dialect", flat=True).first() or "")
    if not dialect and events:
        dialect = "tasks" if events[0].direction == "task" else "rooms" if session_id.startswith("rooms:") else ""
    start = record.started_at if record else (events[0].at if events else None)
    origin = start or (events[0].at if events else None)
    timeline = [TimelineRow(int((e.at - origin).total_seconds() * 1000) if origin else 0, e.direction, e.type, e.count,
                            _detail(e)) for e in events]
    transcript, turns = _conversation(events)
    return SessionInspection(
        session_id=session_id, record=record, dialect=dialect, started_at=start,
        ended_at=record.ended_at if record else (events[-1].at if events else None),
        close_reason=record.close_reason if record else "",
        metrics=usage.metrics if usage else {}, cost=money_format(usage.cost_micros if usage else 0),
        timeline=timeline, transcript=transcript, turns=turns,
    )

