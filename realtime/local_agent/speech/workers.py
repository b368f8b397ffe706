"""The recognition worker processes: SPEECH_WORKERS of them, started once per process (spawned, not
forked: the parent runs threads), each taking one job at a time with end-of-turn jobs first."""
from __future__ import annotations

import functools
import heapq
import itertools
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor

from realtime.local_agent.speech import tts
from realtime.local_agent.speech.pool import run_in_pool
from realtime.local_agent.speech.stt import prepare_decoder

_workers_lock = threading.Lock()


def _worker_warm_up() -> None:
    prepare_decoder(narrowband=False)


class RecognitionWorker:
    """One recognition process and the jobs waiting for it. The process gets one job at a time and
    end-of-turn jobs go first: a user who stopped talking is waiting for the transcript, while a chunk
    of another session's speech can wait the few milliseconds that takes (with a plain FIFO, the end
    of a turn waited behind a chunk of every other session on the worker)."""

    def __init__(self, context):
        self._executor = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_worker_warm_up)
        self._lock = threading.Lock()
        self._waiting: list = []  # heap of (priority, order, fn, args, future)
        self._order = itertools.count()
        self._busy = False
        self.listeners = 0  # open Listeners on this worker (guarded by _workers_lock)

    def release_listener(self) -> None:
        with _workers_lock:
            self.listeners -= 1

    def submit(self, fn: Callable, *args, urgent: bool = False) -> Future:
        future: Future = Future()
        with self._lock:
            heapq.heappush(self._waiting, (0 if urgent else 1, next(self._order), fn, args, future))
        self._next()
        return future

    def _next(self) -> None:
        with self._lock:
            if self._busy:
                return
            while self._waiting:
                *_, fn, args, future = heapq.heappop(self._waiting)
                if future.set_running_or_notify_cancel():  # False: its caller gave up waiting
                    self._busy = True
                    break
            else:
                return
        try:
            job = self._executor.submit(fn, *args)
        except RuntimeError as exc:  # the executor is shutting down with the process
            self._done(future, None, exc)
            return
        job.add_done_callback(functools.partial(self._done, future))

    def _done(self, future: Future, job: Future | None, failure: BaseException | None = None) -> None:
        with self._lock:
            self._busy = False
        if job is not None and job.cancelled():
            failure = CancelledError()
        elif job is not None:
            failure = job.exception()
        if failure is not None:
            future.set_exception(failure)
        else:
            assert job is not None  # no job only with a failure
            future.set_result(job.result())
        self._next()


_workers: list[RecognitionWorker] = []


def recognition_workers() -> list[RecognitionWorker]:
    with _workers_lock:
        if not _workers:
            from django.conf import settings

            # spawn, not fork: the parent runs threads (the event loop, the TTS pool).
            context = multiprocessing.get_context("spawn")
            _workers.extend(RecognitionWorker(context) for _ in range(settings.SPEECH_WORKERS))
        return _workers


def least_loaded_worker(*, claim: bool) -> RecognitionWorker:
    """The worker with the fewest open listeners (``claim``: count one more on it). Sessions come and
    go; taking turns instead would let long-lived ones pile up on one worker while another idles."""
    workers = recognition_workers()
    with _workers_lock:
        worker = min(workers, key=lambda candidate: candidate.listeners)
        worker.listeners += claim
        return worker


_warmed = False


async def warm_up() -> None:
    """Once per process: start the recognition workers (each prepares its vocabulary and a calibrated
    decoder, under a second) and eSpeak ahead of the first utterance."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    for worker in recognition_workers():
        worker.submit(_worker_warm_up)
    await run_in_pool(tts.warm_up)
