"""Offline speech: voice activity detection (webrtcvad), speech to text (pocketsphinx with its shipped
English model) and text to speech (eSpeak NG from the espeakng-loader wheel, through ctypes).

Nothing CPU-heavy runs on the event loop: recognition runs in SPEECH_WORKERS worker processes
(pocketsphinx holds the GIL), synthesis in a bounded thread pool (eSpeak runs in C without the GIL).
Reusable on their own: ``text_to_speech`` / ``speech_to_text`` (whole buffers, synchronous),
``transcribe`` (async, in a worker), ``Listener`` (streaming turn detection and recognition) and
``synthesize_stream`` (streaming synthesis).
"""
from __future__ import annotations

import asyncio
import ctypes
import functools
import heapq
import itertools
import multiprocessing
import queue
import re
import tempfile
import threading
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import webrtcvad

from realtime.lib import audio

STT_RATE = 16000  # pocketsphinx's en-us model and webrtcvad both work at 16 kHz

# --- The bounded pool ------------------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def speech_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            from django.conf import settings

            _pool = ThreadPoolExecutor(max_workers=settings.SPEECH_WORKERS, thread_name_prefix="speech")
        return _pool


async def run_in_pool(fn: Callable, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(speech_pool(), functools.partial(fn, *args, **kwargs))


# --- Voice activity detection ----------------------------------------------------------------------

VAD_FRAME_MS = 30
_VAD_FRAME_BYTES = STT_RATE * VAD_FRAME_MS // 1000 * 2


@dataclass
class VadEvent:
    kind: str  # "speech_started" | "speech_stopped"
    ms: int  # position in the input stream


class VoiceActivityDetector:
    """Turn detection over a 16 kHz PCM16 stream fed in arbitrary chunks.

    Speech starts when most of the last ~150 ms of frames are voiced and stops after
    ``silence_duration_ms`` of unvoiced frames. ``threshold`` (0..1, as in the protocol) picks the
    webrtcvad aggressiveness. Positions are reported in ms of audio fed so far.
    """

    START_WINDOW = 5  # frames (150 ms)
    START_VOICED = 4

    def __init__(self, *, threshold: float = 0.5, silence_duration_ms: int = 500, prefix_padding_ms: int = 300):
        self._vad = webrtcvad.Vad(min(3, max(0, int(threshold * 4))))
        self.silence_frames = max(1, silence_duration_ms // VAD_FRAME_MS)
        self.prefix_padding_ms = prefix_padding_ms
        self._pending = b""
        self._frames = 0
        self._recent: list[bool] = []
        self._silent_run = 0
        self.in_speech = False

    @property
    def position_ms(self) -> int:
        return self._frames * VAD_FRAME_MS

    def feed(self, pcm16_16k: bytes) -> list[VadEvent]:
        events: list[VadEvent] = []
        data = self._pending + pcm16_16k
        whole = len(data) - len(data) % _VAD_FRAME_BYTES
        self._pending = data[whole:]
        for offset in range(0, whole, _VAD_FRAME_BYTES):
            voiced = self._vad.is_speech(data[offset:offset + _VAD_FRAME_BYTES], STT_RATE)
            self._frames += 1
            self._recent = (self._recent + [voiced])[-self.START_WINDOW:]
            if not self.in_speech:
                if sum(self._recent) >= self.START_VOICED:
                    self.in_speech = True
                    self._silent_run = 0
                    start = self._frames - len(self._recent)
                    events.append(VadEvent("speech_started", max(0, start * VAD_FRAME_MS - self.prefix_padding_ms)))
            else:
                self._silent_run = 0 if voiced else self._silent_run + 1
                if self._silent_run >= self.silence_frames:
                    self.in_speech = False
                    self._recent = []
                    events.append(VadEvent("speech_stopped", (self._frames - self._silent_run) * VAD_FRAME_MS))
        return events


# --- Speech to text --------------------------------------------------------------------------------
# pocketsphinx holds the GIL while it decodes, so recognition runs in worker processes, not threads:
# SPEECH_WORKERS of them (``RecognitionWorker``). A streaming ``Listener`` lives in one worker (its state
# is there) and waits for each job before sending the next, so a session's chunks stay in order.

# Decoder settings, chosen by measurement: bench/local_agent.py reports their real-time factor and word
# accuracy on eSpeak-spoken sentences next to pocketsphinx's defaults.
# - No second (fwdflat) pass: it costs ~70 ms after the user stops talking and gained no words.
# - Word beam 1e-25 (default 7e-29): less search for the same words. Tighter HMM beams (1e-45),
#   fewer Gaussians (-topn 2, 3), frame downsampling (-ds 2) or a cap on active HMMs (-maxhmmpf 3000)
#   lost words: the cap turned "weather" into "letter" in the tests' sentence.
# - A vocabulary of the language model's 20,000 most probable words (98.8% of its unigram mass) instead
#   of all 134,000 dictionary entries: the search tree shrinks, which takes 40% off the CPU, and rare
#   words no longer displace common ones (word accuracy rose a little, wideband and G.711).
DECODER_OPTIONS = {"fwdflat": False, "beam": 1e-50, "pbeam": 1e-50, "wbeam": 1e-25}
VOCABULARY_WORDS = 20_000
_CALIBRATION = "Hello. The quick brown fox jumps over the lazy dog. How are you today?"
_ALTERNATE_PRONUNCIATION = re.compile(r"\(\d+\)$")

# Per process: free decoders by band (narrowband is 8 kHz telephone audio), the language model they
# share (read-only; one copy instead of ~35 MB per decoder), and each band's calibrated cepstral mean.
_decoders: dict[bool, queue.SimpleQueue] = {False: queue.SimpleQueue(), True: queue.SimpleQueue()}
_decoder_lock = threading.Lock()
_language_model = None
_cepstral_means: dict[bool, str] = {}


def _shared_language_model():
    global _language_model
    if _language_model is None:
        from pocketsphinx import Config, LogMath, NGramModel

        config = Config()  # the shipped English model's paths
        _language_model = NGramModel(config, LogMath(), config["lm"])
    return _language_model


@functools.cache
def vocabulary_dictionary(words: int) -> str:
    """The shipped pronunciation dictionary's entries (all pronunciations) for the ``words`` most
    probable words of the shipped language model, as dictionary text."""
    from pocketsphinx import Config

    lm = _shared_language_model()
    entries: dict[str, list[str]] = {}
    with open(Config()["dict"], encoding="utf-8") as dictionary:
        for line in dictionary:
            if line.strip():
                entries.setdefault(_ALTERNATE_PRONUNCIATION.sub("", line.split(" ", 1)[0]), []).append(line)
    ranked = sorted(entries, key=lambda word: lm.prob([word]), reverse=True)[:words]
    return "".join(line for word in ranked for line in entries[word])


def new_decoder(*, narrowband: bool = False, options: dict | None = None, vocabulary: int | None = VOCABULARY_WORDS):
    """A calibrated pocketsphinx decoder: ``options`` (default ``DECODER_OPTIONS``) over pocketsphinx's
    defaults, and a vocabulary of the ``vocabulary`` most probable words (None: the whole dictionary)."""
    from pocketsphinx import Decoder

    options = DECODER_OPTIONS if options is None else options
    with _decoder_lock, tempfile.NamedTemporaryFile("w", suffix=".dict", encoding="utf-8") as dictionary:
        extra = {}
        if vocabulary is not None:
            dictionary.write(vocabulary_dictionary(vocabulary))
            dictionary.flush()
            extra["dict"] = dictionary.name  # read while the decoder loads
        if narrowband in _cepstral_means:
            extra["cmninit"] = _cepstral_means[narrowband]
        # loglevel FATAL: pocketsphinx otherwise writes pages of model info to stderr.
        decoder = Decoder(samprate=STT_RATE, loglevel="FATAL", lm=None, **options, **extra)
        decoder.add_lm("ngram", _shared_language_model())
        decoder.activate_search("ngram")
        if narrowband not in _cepstral_means:
            # Live cepstral mean normalisation starts from a generic value and only adapts after an
            # utterance, so a fresh decoder mishears its first one (and 8 kHz audio far more). One
            # calibration utterance at the input's band, as a session's first seconds would do, gives
            # the mean every later decoder of this band starts from.
            rate = 8000 if narrowband else STT_RATE
            calibration = audio.resample(text_to_speech(_CALIBRATION, sample_rate=rate), rate, STT_RATE)
            decoder.start_utt()
            decoder.process_raw(calibration, False, True)
            decoder.end_utt()
            _cepstral_means[narrowband] = decoder.get_cmn(False)
    return decoder


class Recognizer:
    """One utterance of streaming recognition (in the calling process). Decoders take a tenth of a
    second to load, so they are kept in a free list and reused; ``finish`` returns the decoder.
    ``narrowband``: the audio was sampled at 8 kHz (G.711) before resampling to 16 kHz."""

    def __init__(self, *, narrowband: bool = False):
        self._narrowband = narrowband
        try:
            self._decoder = _decoders[narrowband].get_nowait()
        except queue.Empty:
            self._decoder = new_decoder(narrowband=narrowband)
        self._decoder.start_utt()

    def feed(self, pcm16_16k: bytes) -> None:
        if pcm16_16k and self._decoder is not None:
            self._decoder.process_raw(pcm16_16k, False, False)

    def finish(self) -> str:
        decoder, self._decoder = self._decoder, None
        if decoder is None:
            return ""
        try:
            decoder.end_utt()
            hyp = decoder.hyp()
            return hyp.hypstr if hyp else ""
        finally:
            _decoders[self._narrowband].put(decoder)


def speech_to_text(pcm16: bytes, sample_rate: int) -> str:
    """Transcribe a whole PCM16 buffer (any rate; resampled to 16 kHz), in the calling process."""
    recognizer = Recognizer(narrowband=sample_rate < STT_RATE)
    recognizer.feed(audio.resample(pcm16, sample_rate, STT_RATE))
    return recognizer.finish()


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
    narrowband = audio.format_rate(fmt) < STT_RATE
    if _decoders[narrowband].empty():
        _decoders[narrowband].put(new_decoder(narrowband=narrowband))  # now, not when the user starts talking


def _worker_ingest(listener_id: str, native: bytes) -> list[VadEvent]:
    return _listenings[listener_id].ingest(native)


def _worker_finish(listener_id: str) -> str:
    return _listenings[listener_id].finish()


def _worker_close(listener_id: str) -> None:
    listening = _listenings.pop(listener_id, None)
    if listening is not None:
        listening.finish()


def _worker_warm_up() -> None:
    if _decoders[False].empty():
        _decoders[False].put(new_decoder())


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
        self.listeners = 0  # open Listeners on this worker (guarded by _pool_lock)

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
            future.set_result(job.result())
        self._next()


_workers: list[RecognitionWorker] = []


def recognition_workers() -> list[RecognitionWorker]:
    with _pool_lock:
        if not _workers:
            from django.conf import settings

            # spawn, not fork: the parent runs threads (the event loop, the TTS pool).
            context = multiprocessing.get_context("spawn")
            _workers.extend(RecognitionWorker(context) for _ in range(settings.SPEECH_WORKERS))
        return _workers


def _least_loaded_worker(*, claim: bool) -> RecognitionWorker:
    """The worker with the fewest open listeners (``claim``: count one more on it). Sessions come and
    go; taking turns instead would let long-lived ones pile up on one worker while another idles."""
    workers = recognition_workers()
    with _pool_lock:
        worker = min(workers, key=lambda candidate: candidate.listeners)
        worker.listeners += claim
        return worker


class Listener:
    """Async handle on a streaming listener living in one recognition worker process."""

    def __init__(self, *, fmt: str, turn_detection: dict | None, silence_duration_ms: int = 500):
        self.id = uuid.uuid4().hex
        self.fmt = fmt
        self._worker = _least_loaded_worker(claim=True)
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
            with _pool_lock:
                self._worker.listeners -= 1
            self._worker.submit(_worker_close, self.id)


async def transcribe(pcm16: bytes, sample_rate: int) -> str:
    """``speech_to_text`` in a recognition worker."""
    worker = _least_loaded_worker(claim=False)
    return await asyncio.wrap_future(worker.submit(speech_to_text, pcm16, sample_rate))


def _input_to_text(native: bytes, fmt: str) -> str:
    return speech_to_text(audio.to_pcm16(native, fmt), audio.format_rate(fmt))


async def transcribe_input(native: bytes, fmt: str) -> str:
    """Transcribe a committed turn in a protocol input format, as an end-of-turn job (decoded in the
    worker too: a full 15 MiB G.711 buffer takes ~0.1 s to decode, too long for the event loop)."""
    worker = _least_loaded_worker(claim=False)
    return await asyncio.wrap_future(worker.submit(_input_to_text, native, fmt, urgent=True))


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
    await run_in_pool(_espeak_warm_up)


def _espeak_warm_up() -> None:
    with _espeak_lock:
        _espeak_lib()


# --- Text to speech (eSpeak NG) --------------------------------------------------------------------

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
    resampler = audio.StreamResampler(_espeak_rate if _espeak else 22050, sample_rate)
    max_bytes = sample_rate * chunk_ms // 1000 * 2

    def on_chunk(data: bytes) -> bool:
        out = resampler.push(data)
        if out:
            loop.call_soon_threadsafe(chunks.put_nowait, out)
        return not stop.is_set()

    def work() -> None:
        try:
            _espeak_lib()
            resampler.__init__(_espeak_rate, sample_rate)
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
