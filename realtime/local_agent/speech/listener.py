"""Streaming listening: turn detection and recognition of one input stream. The state lives in one
recognition worker process (``_Listening``); ``Listener`` is its async handle on the event loop, and
waits for each job before sending the next, so a session's chunks stay in order."""
from __future__ import annotations

import asyncio
import uuid

from realtime.lib import audio
from realtime.local_agent.speech.stt import STT_RATE, Recognizer, prepare_decoder, speech_to_text
from realtime.local_agent.speech.vad import VAD_RATE, VadEvent, VoiceActivityDetector
from realtime.local_agent.speech.workers import least_loaded_worker

assert VAD_RATE == STT_RATE  # one resampled stream feeds both


class _Listening:
    """Worker-side state of one input stream: decode, resample to 16 kHz, detect turns, and feed the
    recogniser while speech is on (with the prefix padding heard just before speech was detected)."""

    def __init__(self, fmt: str, turn_detection: dict | None, silence_duration_ms: int):
        self.fmt = fmt
        self.resampler = audio.StreamResampler(audio.format_rate(fmt), STT_RATE)
        padding = (turn_detection or {}).get("prefix_padding_ms", 300)
        self.vad = VoiceActivityDetector(threshold=turn_detection.get("threshold", 0.5),
                                         silence_duration_ms=silence_duration_ms,
                                         prefix_padding_ms=padding) if turn_detection else None
        self.recognizer: Recognizer | None = None
        self.ring = b""
        self.ring_bytes = STT_RATE * 2 * max(300, padding) // 1000

    def ingest(self, native: bytes) -> list[VadEvent]:
        pcm = self.resampler.push(audio.to_pcm16(native, self.fmt))
        if self.vad is None:
            return []
        was_speaking = self.vad.in_speech
        events = self.vad.feed(pcm)
        if self.recognizer is None and (was_speaking or any(e.kind == "speech_started" for e in events)):
            self.recognizer = Recognizer(narrowband=audio.format_rate(self.fmt) < STT_RATE)
            self.recognizer.feed(self.ring)
        if self.recognizer is not None:
            self.recognizer.feed(pcm)
        self.ring = (self.ring + pcm)[-self.ring_bytes:]
        return events

    def finish(self) -> str:
        recognizer, self.recognizer = self.recognizer, None
        return recognizer.finish() if recognizer else ""


_listenings: dict[str, _Listening] = {}  # in a worker process


def _worker_open(listener_id: str, fmt: str, turn_detection: dict | None, silence_duration_ms: int) -> None:
    _listenings[listener_id] = _Listening(fmt, turn_detection, silence_duration_ms)
    prepare_decoder(narrowband=audio.format_rate(fmt) < STT_RATE)


def _worker_ingest(listener_id: str, native: bytes) -> list[VadEvent]:
    return _listenings[listener_id].ingest(native)


def _worker_finish(listener_id: str) -> str:
    return _listenings[listener_id].finish()


def _worker_close(listener_id: str) -> None:
    listening = _listenings.pop(listener_id, None)
    if listening is not None:
        listening.finish()


class Listener:
    """Async handle on a streaming listener living in one recognition worker process."""

    def __init__(self, *, fmt: str, turn_detection: dict | None, silence_duration_ms: int = 500):
        self.id = uuid.uuid4().hex
        self.fmt = fmt
        self._worker = least_loaded_worker(claim=True)
        self._worker.submit(_worker_open, self.id, fmt, turn_detection, silence_duration_ms)
        self._closed = False

    async def ingest(self, native: bytes) -> list[VadEvent]:
        return await asyncio.wrap_future(self._worker.submit(_worker_ingest, self.id, native))

    async def finish(self) -> str:
        """End the utterance in progress and return its transcript ("" if none)."""
        return await asyncio.wrap_future(self._worker.submit(_worker_finish, self.id, urgent=True))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._worker.release_listener()
            self._worker.submit(_worker_close, self.id)


async def transcribe(pcm16: bytes, sample_rate: int) -> str:
    """``speech_to_text`` in a recognition worker."""
    worker = least_loaded_worker(claim=False)
    return await asyncio.wrap_future(worker.submit(speech_to_text, pcm16, sample_rate))


def _input_to_text(native: bytes, fmt: str) -> str:
    return speech_to_text(audio.to_pcm16(native, fmt), audio.format_rate(fmt))


async def transcribe_input(native: bytes, fmt: str) -> str:
    """Transcribe a committed turn in a protocol input format, as an end-of-turn job (decoded in the
    worker too: a full 15 MiB G.711 buffer takes ~0.1 s to decode, too long for the event loop)."""
    worker = least_loaded_worker(claim=False)
    return await asyncio.wrap_future(worker.submit(_input_to_text, native, fmt, urgent=True))
