"""The tasks dialect's redelivery buffer without Redis (the embedded default): results wait in this
process, in order, for the buffer window, and a session is remembered for as long."""
from __future__ import annotations

import pytest

from realtime.dialects.tasks import buffer as task_buffer

pytestmark = [pytest.mark.unit]


@pytest.fixture(autouse=True)
def _in_process(settings):
    settings.REDIS_URL = None
    task_buffer._local_sessions.clear()
    task_buffer._local_outboxes.clear()


async def test_results_are_taken_once_and_in_order():
    await task_buffer.task_session_register(session_uuid="s1", project_id=7, key_id="key_a")
    for n in range(3):
        await task_buffer.task_outbox_push(session_uuid="s1", text=f"r{n}")
    assert await task_buffer.task_outbox_take(session_uuid="s1") == ["r0", "r1", "r2"]
    assert await task_buffer.task_outbox_take(session_uuid="s1") == []
    owner = await task_buffer.task_session_lookup(session_uuid="s1")
    assert (owner.project_id, owner.key_id) == (7, "key_a")


async def test_the_buffer_keeps_the_newest_results_when_full(settings):
    settings.TASKS_BUFFER_MAX_MESSAGES = 2
    for n in range(4):
        await task_buffer.task_outbox_push(session_uuid="s2", text=f"r{n}")
    assert await task_buffer.task_outbox_take(session_uuid="s2") == ["r2", "r3"]


async def test_results_and_sessions_older_than_the_window_are_gone(settings, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(task_buffer.time, "time", lambda: clock[0])
    await task_buffer.task_session_register(session_uuid="s3", project_id=1, key_id="k")
    await task_buffer.task_outbox_push(session_uuid="s3", text="old")
    clock[0] += settings.TASKS_BUFFER_SECONDS - 1
    await task_buffer.task_outbox_push(session_uuid="s3", text="new")
    await task_buffer.task_session_touch(session_uuid="s3")
    clock[0] += 2
    assert await task_buffer.task_outbox_take(session_uuid="s3") == ["new"]
    clock[0] += settings.TASKS_BUFFER_SECONDS + 1
    assert await task_buffer.task_session_lookup(session_uuid="s3") is None
