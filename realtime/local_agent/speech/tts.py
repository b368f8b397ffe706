"""Text to speech: eSpeak NG (from the espeakng-loader wheel, through ctypes). Whole buffers
(``text_to_speech``) or streamed while synthesising (``synthesize_stream``, in the speech pool)."""
from __future__ import annotations

import asyncio
import ctypes
import re
import threading
import zlib
from collections.abc import AsyncIterator, Callable

from realtime.lib import audio
from realtime.local_agent.speech.pool import speech_pool

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# eSpeak NG keeps global state: one synthesis at a time per process.
_espeak_lock = threading.Lock()
_espeak = None
_espeak_rate = 22050
_current_sink: Callable[[bytes], bool] | None = None


@_CALLBACK
def _on_samples(wav, count, _events):
    # Called by eSpeak during espeak_Synth with each chunk; returning 1 aborts synthesis.
    if count > 0 and wav and _current_sink is not None:
        keep_going = _current_sink(ctypes.string_at(wav, count * 2))
        return 0 if keep_going else 1
    return 0


def _espeak_lib():
    global _espeak, _espeak_rate
    if _espeak is None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        # buflength 50 ms: the callback then delivers chunks small enough to stream.
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 50, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise RuntimeError("eSpeak NG failed to initialise")
        lib.espeak_SetSynthCallback(_on_samples)
        _espeak, _espeak_rate = lib, rate
    return _espeak


# Protocol voice names map onto eSpeak variants so different voices sound different.
VOICES = {
    "alloy": "en-us", "ash": "en-us+m3", "ballad": "en-gb+m2", "coral": "en-us+f3", "echo": "en-us+m1",
    "sage": "en-us+f2", "shimmer": "en-us+f4", "verse": "en-gb+m3", "marin": "en-us+f1", "cedar": "en-us+m4",
}


def warm_up() -> None:
    """Load eSpeak NG now, ahead of the first reply."""
    with _espeak_lock:
        _espeak_lib()


def voice_variant(voice: str) -> str:
    """The eSpeak voice for a protocol voice name; unknown names get a stable variant of their own."""
    if voice in VOICES:
        return VOICES[voice]
    variants = sorted(set(VOICES.values()))
    return variants[zlib.crc32(voice.encode()) % len(variants)]


def synthesize(text: str, *, voice: str = "alloy", speed: float = 1.0,
               on_chunk: Callable[[bytes], bool] | None = None) -> tuple[bytes, int]:
    """Speak ``text`` with eSpeak NG. Returns (PCM16, eSpeak's rate, 22050 Hz). ``on_chunk`` receives
    each chunk as synthesised; it returns False to stop early (barge-in)."""
    global _current_sink
    chunks: list[bytes] = []

    def sink(data: bytes) -> bool:
        chunks.append(data)
        return on_chunk(data) if on_chunk is not None else True

    with _espeak_lock:
        lib = _espeak_lib()
        lib.espeak_SetVoiceByName(voice_variant(voice).encode())
        lib.espeak_SetParameter(_ESPEAK_RATE, int(175 * max(0.25, min(speed, 4.0))), 0)
        encoded = text.encode("utf-8") + b"\0"
        _current_sink = sink
        try:
            lib.espeak_Synth(encoded, len(encoded), 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
        finally:
            _current_sink = None
    return b"".join(chunks), _espeak_rate


def text_to_speech(text: str, *, sample_rate: int = 24000, voice: str = "alloy", speed: float = 1.0) -> bytes:
    """Whole-buffer synthesis as PCM16 at ``sample_rate``."""
    pcm, rate = synthesize(text, voice=voice, speed=speed)
    return audio.resample(pcm, rate, sample_rate)


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def split_sentences(text: str) -> list[str]:
    return [part for part in (p.strip() for p in _SENTENCE_END.split(text)) if part]


async def synthesize_stream(text: str, *, sample_rate: int, voice: str = "alloy", speed: float = 1.0,
                            chunk_ms: int = 100) -> AsyncIterator[bytes]:
    """PCM16 at ``sample_rate`` in chunks of at most ``chunk_ms``, yielded while eSpeak is still
    synthesising (it runs in the speech pool). Closing the iterator early stops synthesis."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    max_bytes = sample_rate * chunk_ms // 1000 * 2

    def work() -> None:
        try:
            # Loaded under the lock: the session's warm-up may be loading eSpeak in another pool
            # thread right now, and two concurrent espeak_Initialize calls crash the process.
            warm_up()
            resampler = audio.StreamResampler(_espeak_rate, sample_rate)

            def on_chunk(data: bytes) -> bool:
                out = resampler.push(data)
                if out:
                    loop.call_soon_threadsafe(chunks.put_nowait, out)
                return not stop.is_set()

            synthesize(text, voice=voice, speed=speed, on_chunk=on_chunk)
            tail = resampler.push(b"", last=True)
            if tail:
                loop.call_soon_threadsafe(chunks.put_nowait, tail)
        finally:
            loop.call_soon_threadsafe(chunks.put_nowait, None)

    future = loop.run_in_executor(speech_pool(), work)
    pending = b""
    try:
        while True:
            data = await chunks.get()
            if data is None:
                break
            pending += data
            while len(pending) >= max_bytes:
                yield pending[:max_bytes]
                pending = pending[max_bytes:]
        if pending:
            yield pending
        await future  # re-raises a synthesis failure
    finally:
        stop.set()
        if not future.done():
            # Let the worker see ``stop`` and finish so the pool thread is free again.
            await asyncio.shield(future)
