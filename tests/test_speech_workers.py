"""Recognition worker processes: the end of a turn does not wait behind other sessions' audio, and
sessions spread over the workers."""
import asyncio
import time

import pytest

from realtime.lib import audio
from realtime.local_agent.speech.listener import Listener
from realtime.local_agent.speech.workers import recognition_workers

pytestmark = [pytest.mark.unit, pytest.mark.xdist_group("voice")]


async def test_end_of_turn_jobs_overtake_queued_chunks_of_other_sessions():
    worker = recognition_workers()[0]
    finished: list[str] = []

    def record(name):
        return lambda _future: finished.append(name)

    busy = worker.submit(time.sleep, 0.5)  # the process is busy with one job; the rest wait
    chunks = [worker.submit(time.sleep, 0) for _ in range(5)]
    end_of_turn = worker.submit(time.sleep, 0, urgent=True)
    for index, job in enumerate(chunks):
        job.add_done_callback(record(f"chunk {index}"))
    end_of_turn.add_done_callback(record("end of turn"))
    await asyncio.wait_for(asyncio.gather(*(asyncio.wrap_future(job) for job in [busy, end_of_turn, *chunks])), 30)
    assert finished == ["end of turn"] + [f"chunk {index}" for index in range(5)]


async def test_a_job_whose_caller_gave_up_is_skipped_and_failures_reach_the_caller():
    worker = recognition_workers()[0]
    busy = worker.submit(time.sleep, 0.3)
    abandoned = worker.submit(time.sleep, 5)
    assert abandoned.cancel()  # still waiting: the worker never runs it
    with pytest.raises(ValueError):
        await asyncio.wait_for(asyncio.wrap_future(worker.submit(audio.format_rate, "audio/ogg")), 30)
    started = time.monotonic()
    await asyncio.wait_for(asyncio.wrap_future(busy), 30)
    assert await asyncio.wait_for(asyncio.wrap_future(worker.submit(sum, [1, 2])), 30) == 3
    assert time.monotonic() - started < 4  # the abandoned 5 s job did not run


def test_new_listeners_go_to_the_worker_that_sessions_left():
    workers = recognition_workers()
    if len(workers) < 2:
        pytest.skip("needs SPEECH_WORKERS >= 2")
    before = [worker.listeners for worker in workers]
    opened = [Listener(fmt=audio.PCM, turn_detection=None) for _ in range(2 * len(workers))]
    try:
        added = [worker.listeners - count for worker, count in zip(workers, before)]
        assert max(added) - min(added) <= 1
        # Every session on the first worker ends; as many new ones arrive: they all go there.
        leaving = [listener for listener in opened if listener._worker is workers[0]]
        for listener in leaving:
            listener.close()
            opened.remove(listener)
        opened += [Listener(fmt=audio.PCM, turn_detection=None) for _ in leaving]
        assert [worker.listeners - count for worker, count in zip(workers, before)] == added
    finally:
        for listener in opened:
            listener.close()
    assert [worker.listeners for worker in workers] == before
