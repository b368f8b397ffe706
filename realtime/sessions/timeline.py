"""A bounded, audio-free timeline of each session's events, for the session inspector.

The gateway core feeds it through a SessionTimeline per session: every event sent to or received from
the upstream is noted. Any dialect that relays no
upstream (tasks, rooms) notes its events with ``timeline_note``. Noting is synchronous and never waits:
it elides audio, cuts long strings, merges runs of audio or delta events into one entry, and appends to
a per-process list. A named background task writes that list in batches (``bulk_create``) every
TIMELINE_FLUSH_SECONDS, so nothing on the relay path waits on the database; a run of audio or deltas
still open to merges is held up to RUN_HOLD_SECONDS first (a stream is a row every few seconds). Bounds: at most
TIMELINE_MAX_EVENTS entries per session (then one ``timeline.truncated`` entry), at most
PENDING_MAX entries waiting to be written (beyond that, entries are dropped and counted in the log),
RETENTION_DAYS of history (the writer deletes older entries once an hour).
The timeline is diagnostic: a batch the database refuses is logged and dropped, never retried forever.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from channels.db import database_sync_to_async
from django.utils import timezone

from project.ticks import sleep_to_tick

logger = logging.getLogger(__name__)

TIMELINE_MAX_EVENTS = 500
TIMELINE_FLUSH_SECONDS = 1.0
RUN_HOLD_SECONDS = 5.0  # a run of audio or deltas stays open to merges this long before it is written
PENDING_MAX = 20_000
RETENTION_DAYS = 30  # older entries are deleted by the writer, at most once an hour per process
PRUNE_EVERY_SECONDS = 3600.0
IDLE_FORGET_SECONDS = 900  # a session noted nothing for this long: its state is forgotten (dialects
# without an upstream never say they ended)
# The flush looks at every session this often (to forget idle ones), and otherwise only at those with a
# run open or that ended: 500 idle sessions cost a walk over 500 states a minute, not every second.
SCAN_ALL_SECONDS = 60.0
STRING_MAX = 400  # longer strings (base64 images, long instructions) are cut
DELTA_TEXT_MAX = 4000  # merged text deltas keep this much text
# Events whose payload is audio: the payload key is replaced by its size.
AUDIO_EVENTS = {
    "input_audio_buffer.append": "audio",
    "response.output_audio.delta": "delta",
    "response.audio.delta": "delta",
}
_AUDIO_MARKERS_TEXT = tuple(f'"{kind}"' for kind in AUDIO_EVENTS)
_AUDIO_MARKERS = tuple(marker.encode() for marker in _AUDIO_MARKERS_TEXT)


@dataclass
class _Entry:
    project_id: int
    session_id: str
    at: datetime
    direction: str
    type: str
    data: dict
    count: int = 1


@dataclass
class _SessionState:
    entries: int = 0
    truncated: bool = False
    # Per direction, the entry a following same-type audio/delta event of that direction merges into:
    # a client's appends stay one entry while the upstream answers in between (ping-pong audio).
    last: dict[str, _Entry] = field(default_factory=dict)
    ended: bool = False
    touched: float = field(default_factory=time.monotonic)
    # Merges made inline (SessionTimeline): counted, and turned into ``touched`` by the flush, so the
    # relay path does not read the clock per event.
    merges: int = 0
    merges_seen: int = 0


@dataclass
class _Writer:
    pending: list[_Entry] = field(default_factory=list)
    sessions: dict[tuple[int, str], _SessionState] = field(default_factory=dict)
    open: set[tuple[int, str]] = field(default_factory=set)  # a run open to merges, or ended
    next_scan: float = 0.0
    task: asyncio.Task | None = None
    dropped: int = 0
    next_prune: float = 0.0
    flushing: asyncio.Lock | None = None  # one flush at a time, per event loop (tests run one loop per test)
    flushing_loop: asyncio.AbstractEventLoop | None = None


_writer = _Writer()


def _flush_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    if _writer.flushing is None or _writer.flushing_loop is not loop:
        _writer.flushing, _writer.flushing_loop = asyncio.Lock(), loop
    return _writer.flushing


def _cut(value, depth: int = 0):
    """A copy with long strings cut and nesting bounded."""
    if isinstance(value, str):
        return value if len(value) <= STRING_MAX else f"{value[:80]}… ({len(value)} characters elided)"
    if depth > 6:
        return "…"
    if isinstance(value, dict):
        return {str(k): _cut(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, list):
        return [_cut(v, depth + 1) for v in value[:50]]
    return value


def _summarise(event: dict) -> tuple[str, dict]:
    kind = str(event.get("type") or "unknown")[:80]
    audio_key = AUDIO_EVENTS.get(kind)
    if audio_key is not None:
        payload = event.get(audio_key)
        return kind, {"audio_bytes": (len(payload) * 3 // 4) if isinstance(payload, str) else 0}
    if kind.endswith(".delta") and isinstance(event.get("delta"), str):
        data = {k: v for k, v in event.items() if k in ("response_id", "item_id", "delta")}
        return kind, data
    return kind, _cut({k: v for k, v in event.items() if k != "type"})


def timeline_note(*, project_id: int, session_id: str, direction: str, event: dict) -> None:
    """Note one event (already parsed). Synchronous, no I/O: safe on the relay path."""
    state = _writer.sessions.get((project_id, session_id))
    if state is None:
        state = _writer.sessions[(project_id, session_id)] = _SessionState()
    state.touched = time.monotonic()
    if state.truncated:
        return
    kind, data = _summarise(event)
    last = state.last.get(direction)
    if last is not None and last.type == kind and last.direction == direction and (
            kind in AUDIO_EVENTS or kind.endswith(".delta")):
        last.count += 1
        if "audio_bytes" in data:
            last.data["audio_bytes"] = last.data.get("audio_bytes", 0) + data["audio_bytes"]
        elif isinstance(data.get("delta"), str) and len(last.data.get("delta", "")) < DELTA_TEXT_MAX:
            last.data["delta"] = (last.data.get("delta", "") + data["delta"])[:DELTA_TEXT_MAX]
        return
    if state.entries >= TIMELINE_MAX_EVENTS:
        state.truncated = True
        kind, data, direction = "timeline.truncated", {"after_entries": state.entries}, "gateway"
    entry = _Entry(project_id, session_id, timezone.now(), direction, kind, data)
    state.entries += 1
    if kind in AUDIO_EVENTS or kind.endswith(".delta"):
        state.last[direction] = entry
        _writer.open.add((project_id, session_id))
    else:
        state.last.pop(direction, None)
    if len(_writer.pending) >= PENDING_MAX:
        _writer.dropped += 1
        return
    _writer.pending.append(entry)
    _writer_ensure()


def _note_text(*, project_id: int, session_id: str, direction: str, message) -> tuple | None:
    """Note one event as sent or received. Returns the run a following event of the same audio type
    merges into (SessionTimeline keeps it: see _merge), or None."""
    head = message[:64]
    markers = _AUDIO_MARKERS if isinstance(head, bytes) else _AUDIO_MARKERS_TEXT
    for marker, kind in zip(markers, AUDIO_EVENTS, strict=True):
        if marker in head:  # the bulk of a session's events: counted without parsing (or copying) the audio
            state = _writer.sessions.get((project_id, session_id))
            if state is not None and state.truncated:
                state.touched = time.monotonic()
                return None
            event: dict = {"type": kind, AUDIO_EVENTS[kind]: None}
            timeline_note(project_id=project_id, session_id=session_id, direction=direction, event=event)
            state = _writer.sessions.get((project_id, session_id))
            last = state.last.get(direction) if state is not None else None
            if state is None or last is None or last.type != kind:
                return None
            last.data["audio_bytes"] = last.data.get("audio_bytes", 0) + len(message) * 3 // 4
            return marker, state, last
    try:
        event = orjson.loads(message)
    except orjson.JSONDecodeError:
        event = {"type": "unparsed", "text": str(message[:STRING_MAX])}
    if isinstance(event, dict):
        timeline_note(project_id=project_id, session_id=session_id, direction=direction, event=event)
    return None


def _merge(run: tuple, direction: str, message) -> bool:
    """The common case, inline: one more audio event of the type of the run this connection noted last,
    while that run is still open (the writer has not written it, nor forgotten the session)."""
    marker, state, entry = run
    if type(message) is not type(marker) or state.last.get(direction) is not entry or message.find(marker, 0, 64) < 0:
        return False
    state.merges += 1
    entry.count += 1
    entry.data["audio_bytes"] += len(message) * 3 // 4
    return True


def timeline_session_end(*, project_id: int, session_id: str) -> None:
    state = _writer.sessions.get((project_id, session_id))
    if state is not None:
        state.ended = True
        _writer.open.add((project_id, session_id))
        _writer_ensure()


class SessionTimeline:
    """One session's notes: what the gateway sends upstream is a ``client`` event, what it receives an
    ``upstream`` one. The core calls these inline, around its own sends and receives."""

    __slots__ = ("_project_id", "_session_id", "_client_run", "_upstream_run")

    def __init__(self, *, project_id: int, session_id: str):
        self._project_id = project_id
        self._session_id = session_id
        self._client_run: tuple | None = None
        self._upstream_run: tuple | None = None

    def sent(self, message) -> None:
        run = self._client_run
        if run is None or not _merge(run, "client", message):
            self._client_run = _note_text(project_id=self._project_id, session_id=self._session_id,
                                          direction="client", message=message)

    def received(self, message) -> None:
        run = self._upstream_run
        if run is None or not _merge(run, "upstream", message):
            self._upstream_run = _note_text(project_id=self._project_id, session_id=self._session_id,
                                            direction="upstream", message=message)

    def ended(self) -> None:
        timeline_session_end(project_id=self._project_id, session_id=self._session_id)


# --- Writing ---------------------------------------------------------------------------------------

def _write(entries: list[_Entry]) -> None:
    from django.db import connection

    from realtime.models import SessionEvent

    if connection.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        from project.bulk import rows_insert_postgresql

        rows_insert_postgresql(
            model=SessionEvent, fields=("project", "session_id", "at", "direction", "type", "count", "data"),
            rows=[(e.project_id, e.session_id[:100], e.at, e.direction, e.type, e.count, Jsonb(e.data)) for e in entries])
        return
    SessionEvent.objects.bulk_create([
        SessionEvent(project_id=e.project_id, session_id=e.session_id[:100], at=e.at, direction=e.direction,
                     type=e.type, count=e.count, data=e.data)
        for e in entries
    ], batch_size=500)


def _prune() -> int:
    from realtime.models import SessionEvent

    cutoff = timezone.now() - timedelta(days=RETENTION_DAYS)
    return SessionEvent.objects.filter(at__lt=cutoff).delete()[0]


def _writer_ensure() -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # noted outside an event loop (a sync caller): written by the next flush in a loop
    task = _writer.task
    if task is None or task.done() or task.get_loop() is not loop:
        _writer.task = loop.create_task(_writer_run(), name="session-timeline-writer")


async def _writer_run() -> None:
    """Write what was noted every TIMELINE_FLUSH_SECONDS; ends itself when nothing is left to do."""
    while True:
        await sleep_to_tick(TIMELINE_FLUSH_SECONDS)  # on the process's grid: a shared wake-up
        await timeline_flush()
        if not _writer.pending and not _writer.sessions:
            return


async def timeline_flush(*, everything: bool = False) -> None:
    """Write the pending entries. A run of audio or deltas still open to merges waits, up to
    RUN_HOLD_SECONDS, so a stream of audio is a row every few seconds rather than every flush; once
    written, later merges go into a new entry. ``everything``: write open runs too (tests, shutdown).
    Returns once a flush already under way has written too: after it, nothing noted before is in flight."""
    async with _flush_lock():
        await _flush(everything=everything)


async def _flush(*, everything: bool) -> None:
    now = time.monotonic()
    held_until = timezone.now() - timedelta(seconds=RUN_HOLD_SECONDS)
    open_runs: set[int] = set()
    if everything or now >= _writer.next_scan:
        _writer.next_scan = now + SCAN_ALL_SECONDS
        keys = list(_writer.sessions)
    else:
        keys = list(_writer.open)  # the others have no open run and have not ended: nothing to do yet
    still_open: set[tuple[int, str]] = set()
    for key in keys:
        state = _writer.sessions.get(key)
        if state is None:
            continue
        if state.merges != state.merges_seen:
            state.merges_seen, state.touched = state.merges, now
        if state.ended or now - state.touched > IDLE_FORGET_SECONDS:
            del _writer.sessions[key]
            state.last.clear()  # a run a connection still holds takes no more merges (_merge)
        elif everything:
            state.last.clear()
        else:
            for direction, entry in list(state.last.items()):
                if entry.at > held_until:
                    open_runs.add(id(entry))
                else:
                    del state.last[direction]
            if state.last:
                still_open.add(key)
    _writer.open = still_open
    batch = [entry for entry in _writer.pending if id(entry) not in open_runs]
    _writer.pending = [entry for entry in _writer.pending if id(entry) in open_runs]
    if _writer.dropped:
        logger.warning("session timeline: %d entries dropped (writer behind)", _writer.dropped)
        _writer.dropped = 0
    if batch:
        try:
            await database_sync_to_async(_write)(batch)
        except Exception:
            logger.exception("session timeline: a batch of %d entries could not be written", len(batch))
    if now >= _writer.next_prune:
        _writer.next_prune = now + PRUNE_EVERY_SECONDS
        try:
            await database_sync_to_async(_prune)()
        except Exception:
            logger.exception("session timeline: old entries could not be deleted")


async def timeline_writer_stop() -> None:
    """Flush and stop the writer (process shutdown)."""
    task, _writer.task = _writer.task, None
    if task is not None and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await timeline_flush(everything=True)
