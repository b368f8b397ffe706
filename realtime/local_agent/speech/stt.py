"""Speech to text: pocketsphinx with its shipped English model, in the calling process. The recognition
worker processes (``workers``) run it off the event loop."""
from __future__ import annotations

import functools
import queue
import re
import tempfile
import threading

from realtime.lib import audio
from realtime.local_agent.speech.tts import synthesize

STT_RATE = 16000  # pocketsphinx's en-us model works at 16 kHz

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
            pcm, native_rate = _calibration_speech()
            calibration = audio.resample(audio.resample(pcm, native_rate, rate), rate, STT_RATE)
            decoder.start_utt()
            decoder.process_raw(calibration, False, True)
            decoder.end_utt()
            _cepstral_means[narrowband] = decoder.get_cmn(False)
    return decoder


@functools.cache
def _calibration_speech() -> tuple[bytes, int]:
    """The calibration sentence as eSpeak says it, once per process; both bands start from these same
    samples. eSpeak's output depends on everything the process synthesised before (it draws on the C
    library's rand()), so a second synthesis of the sentence differs from the first: the narrowband mean
    depended on whether the wideband decoder had been calibrated first in that worker, and a G.711
    session's transcript on which worker it landed. A recognition worker synthesises nothing else, so
    this is its first synthesis and the same in every worker."""
    return synthesize(_CALIBRATION, voice="alloy")


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


def prepare_decoder(*, narrowband: bool = False) -> None:
    """Load a decoder into the free list now, not when the user starts talking."""
    if _decoders[narrowband].empty():
        _decoders[narrowband].put(new_decoder(narrowband=narrowband))


def speech_to_text(pcm16: bytes, sample_rate: int) -> str:
    """Transcribe a whole PCM16 buffer (any rate; resampled to 16 kHz), in the calling process."""
    recognizer = Recognizer(narrowband=sample_rate < STT_RATE)
    recognizer.feed(audio.resample(pcm16, sample_rate, STT_RATE))
    return recognizer.finish()
