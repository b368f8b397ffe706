"""The session timeline's noting side (realtime.sessions.timeline): audio never kept, runs of audio
and deltas merged, each session bounded, nothing written on the caller's path."""
from __future__ import annotations

import base64
import json

import pytest

from realtime.sessions import timeline

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _fresh_writer(monkeypatch):
    monkeypatch.setattr(timeline, "_writer", timeline._Writer())
    monkeypatch.setattr(timeline, "_writer_ensure", lambda: None)  # nothing is written in these tests


def note_text(direction: str, event: dict) -> None:
    timeline._note_text(project_id=1, session_id="s", direction=direction, message=json.dumps(event))


def test_audio_is_counted_not_kept_and_runs_are_merged():
    chunk = base64.b64encode(b"\1" * 4800).decode()
    for _ in range(3):
        note_text("client", {"type": "input_audio_buffer.append", "audio": chunk})
    note_text("client", {"type": "response.create"})
    for word in ("Hel", "lo"):
        note_text("upstream", {"type": "response.output_text.delta", "delta": word, "response_id": "r"})
    note_text("upstream", {"type": "response.output_audio.delta", "delta": chunk})
    entries = timeline._writer.pending
    assert [(e.type, e.count) for e in entries] == [
        ("input_audio_buffer.append", 3), ("response.create", 1), ("response.output_text.delta", 2),
        ("response.output_audio.delta", 1)]
    assert chunk not in json.dumps([e.data for e in entries])
    assert entries[0].data["audio_bytes"] >= 3 * 4800
    assert entries[2].data["delta"] == "Hello"


def test_long_strings_are_cut_and_a_session_is_bounded(monkeypatch):
    monkeypatch.setattr(timeline, "TIMELINE_MAX_EVENTS", 5)
    note_text("client", {"type": "session.update", "session": {"instructions": "x" * 10_000}})
    assert "characters elided" in timeline._writer.pending[0].data["session"]["instructions"]
    for n in range(10):
        note_text("upstream", {"type": f"event.{n}"})
    types = [e.type for e in timeline._writer.pending]
    assert len(types) == 6 and types[-1] == "timeline.truncated"


def test_a_session_timeline_notes_both_directions_and_its_end():
    notes = timeline.SessionTimeline(project_id=1, session_id="s")

    notes.sent('{"type": "response.create"}')
    notes.received('{"type": "session.created"}')
    notes.ended()
    assert [(e.direction, e.type) for e in timeline._writer.pending] == [
        ("client", "response.create"), ("upstream", "session.created")]
    assert timeline._writer.sessions[(1, "s")].ended


async def test_a_run_still_open_waits_for_its_merges_and_is_written_once_it_is_old(monkeypatch):
    from datetime import timedelta

    from asgiref.sync import sync_to_async

    written: list = []
    monkeypatch.setattr(timeline, "database_sync_to_async", sync_to_async)  # no database here: only the batches
    monkeypatch.setattr(timeline, "_write", lambda batch: written.extend(batch))
    monkeypatch.setattr(timeline, "_prune", lambda: 0)
    chunk = base64.b64encode(b"\1" * 480).decode()
    note_text("client", {"type": "response.create"})
    note_text("client", {"type": "input_audio_buffer.append", "audio": chunk})
    await timeline.timeline_flush()
    assert [e.type for e in written] == ["response.create"]  # the audio run is still open: held
    note_text("client", {"type": "input_audio_buffer.append", "audio": chunk})
    assert [(e.type, e.count) for e in timeline._writer.pending] == [("input_audio_buffer.append", 2)]

    timeline._writer.pending[0].at -= timedelta(seconds=timeline.RUN_HOLD_SECONDS + 1)
    await timeline.timeline_flush()
    assert [(e.type, e.count) for e in written] == [("response.create", 1), ("input_audio_buffer.append", 2)]
    note_text("client", {"type": "input_audio_buffer.append", "audio": chunk})  # a new run, a new entry
    assert [(e.type, e.count) for e in timeline._writer.pending] == [("input_audio_buffer.append", 1)]


async def test_a_connections_inline_merges_stop_once_its_run_is_written_or_its_session_forgotten(monkeypatch):
    from datetime import timedelta

    from asgiref.sync import sync_to_async

    written: list = []
    monkeypatch.setattr(timeline, "database_sync_to_async", sync_to_async)
    monkeypatch.setattr(timeline, "_write", lambda batch: written.extend(batch))
    monkeypatch.setattr(timeline, "_prune", lambda: 0)
    append = json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\1" * 480).decode()})
    notes = timeline.SessionTimeline(project_id=1, session_id="s")
    for _ in range(3):
        notes.sent(append)
    notes.received(append)  # the other direction is a run of its own
    pending = timeline._writer.pending
    assert [(e.direction, e.count) for e in pending] == [("client", 3), ("upstream", 1)]
    assert pending[0].data["audio_bytes"] == 3 * (len(append) * 3 // 4)

    for entry in pending:
        entry.at -= timedelta(seconds=timeline.RUN_HOLD_SECONDS + 1)
    await timeline.timeline_flush()
    notes.sent(append)
    notes.sent(append)
    assert [(e.direction, e.count) for e in written] == [("client", 3), ("upstream", 1)]  # took no more
    assert [(e.direction, e.count) for e in timeline._writer.pending] == [("client", 2)]

    timeline._writer.sessions[(1, "s")].touched -= timeline.IDLE_FORGET_SECONDS + 1
    timeline._writer.sessions[(1, "s")].merges_seen = timeline._writer.sessions[(1, "s")].merges
    await timeline.timeline_flush()  # forgotten: idle too long
    open_entry = timeline._writer.pending[0] if timeline._writer.pending else written[-1]
    count_before = open_entry.count
    notes.sent(append)
    assert open_entry.count == count_before  # the forgotten session's run took no merge
    assert (1, "s") in timeline._writer.sessions  # the next note starts the session's state again


async def test_a_session_with_no_open_run_is_still_forgotten_once_idle(monkeypatch):
    from asgiref.sync import sync_to_async

    monkeypatch.setattr(timeline, "database_sync_to_async", sync_to_async)
    monkeypatch.setattr(timeline, "_write", lambda batch: None)
    monkeypatch.setattr(timeline, "_prune", lambda: 0)
    note_text("client", {"type": "response.create"})  # no run: the flush between full walks skips it
    await timeline.timeline_flush()
    assert (1, "s") in timeline._writer.sessions
    timeline._writer.sessions[(1, "s")].touched -= timeline.IDLE_FORGET_SECONDS + 1
    await timeline.timeline_flush()
    assert (1, "s") in timeline._writer.sessions  # looked at again only by the next walk over every session
    timeline._writer.next_scan -= timeline.SCAN_ALL_SECONDS
    await timeline.timeline_flush()
    assert (1, "s") not in timeline._writer.sessions


async def test_a_flush_returns_only_once_a_flush_already_under_way_has_written(monkeypatch):
    """Shutdown and the tests flush 'everything' and then expect nothing noted before to be in flight:
    a periodic flush that took the entries a moment earlier must have committed them by then."""
    import asyncio
    import threading

    from asgiref.sync import sync_to_async

    release, started = threading.Event(), threading.Event()
    written: list = []

    def slow_write(batch):
        started.set()
        release.wait(10)
        written.extend(batch)

    monkeypatch.setattr(timeline, "database_sync_to_async", sync_to_async)
    monkeypatch.setattr(timeline, "_write", slow_write)
    timeline._writer.next_prune = float("inf")
    note_text("client", {"type": "response.create"})
    periodic = asyncio.create_task(timeline.timeline_flush())
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
    written_when_returned: list[int] = []
    final = asyncio.create_task(timeline.timeline_flush(everything=True))
    final.add_done_callback(lambda _: written_when_returned.append(len(written)))
    for _ in range(20):  # without the wait, the final flush (nothing left to take) is done within a few turns
        await asyncio.sleep(0)
    assert not final.done()
    release.set()
    await asyncio.gather(periodic, final)
    assert written_when_returned == [1]
