"""Offline speech engines: eSpeak NG synthesis, pocketsphinx recognition, webrtcvad turn detection."""
import asyncio
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from realtime.lib import audio
from realtime.local_agent.speech.listener import Listener, transcribe_input
from realtime.local_agent.speech.pool import run_in_pool
from realtime.local_agent.speech.stt import VOCABULARY_WORDS, new_decoder, speech_to_text, vocabulary_dictionary
from realtime.local_agent.speech.tts import synthesize_stream, text_to_speech
from realtime.local_agent.speech.vad import VoiceActivityDetector

pytestmark = [pytest.mark.unit, pytest.mark.xdist_group("voice")]


def test_text_to_speech_gives_speech_of_plausible_length():
    pcm = text_to_speech("The quick brown fox jumps over the lazy dog.", sample_rate=24000)
    seconds = len(pcm) / 48000
    assert 1.5 < seconds < 5  # nine words at about 175 words a minute
    assert np.sqrt(np.mean(np.frombuffer(pcm, "<i2").astype(float) ** 2)) > 300
    slow = text_to_speech("The quick brown fox jumps over the lazy dog.", sample_rate=24000, speed=0.5)
    assert len(slow) > 1.5 * len(pcm)


def test_speech_round_trip_hears_the_key_words():
    pcm = text_to_speech("what is the weather in paris", sample_rate=16000, voice="sage")
    transcript = speech_to_text(b"\0" * 6400 + pcm + b"\0" * 6400, 16000)
    assert "weather" in transcript and "paris" in transcript, transcript


def test_every_new_decoder_hears_its_first_utterance():
    # The first decoder of a band is calibrated on a spoken sentence; later ones start from its cepstral
    # mean instead of decoding the calibration again, and must hear as well on their first utterance.
    pcm = text_to_speech("what is the weather in paris", sample_rate=16000, voice="sage")
    padded = b"\0" * 6400 + pcm + b"\0" * 6400
    for decoder in (new_decoder(), new_decoder()):
        decoder.start_utt()
        for offset in range(0, len(padded), 3200):
            decoder.process_raw(padded[offset:offset + 3200], False, False)
        decoder.end_utt()
        assert {"weather", "paris"} <= set(decoder.hyp().hypstr.split()), decoder.hyp().hypstr


_BAND_MEAN = """
import sys
import django
django.setup()
from realtime.local_agent.speech import stt
for narrowband in [band == "narrow" for band in sys.argv[1:]]:
    stt.new_decoder(narrowband=narrowband)
print(stt._cepstral_means[True])
"""


def _narrowband_mean_after(*bands: str) -> str:
    """The narrowband decoder's calibrated mean in a fresh process that calibrated ``bands`` in order."""
    return subprocess.run([sys.executable, "-c", _BAND_MEAN, *bands], check=True, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120).stdout.strip()


def test_a_bands_calibration_does_not_depend_on_what_the_worker_calibrated_before():
    # A G.711 listener lands on whichever worker is least loaded; one that calibrated the wideband decoder
    # first used to start narrowband decoders from another mean, and hear the same speech differently.
    assert _narrowband_mean_after("wide", "narrow") == _narrowband_mean_after("narrow")


def test_the_vocabulary_is_the_most_probable_words_with_all_their_pronunciations():
    entries = vocabulary_dictionary(VOCABULARY_WORDS).splitlines()
    words = {entry.split(" ", 1)[0] for entry in entries}
    assert len({re.sub(r"\(\d+\)$", "", word) for word in words}) == VOCABULARY_WORDS  # "the(2)" is "the"
    assert {"weather", "london", "paris", "today", "time", "the", "the(2)"} <= words
    assert not {"aardvark", "quixotic"} & words  # rare words are left out
    assert all(len(entry.split()) >= 2 for entry in entries)  # a word and its phones


async def test_a_g711_buffer_is_transcribed_in_a_worker():
    pcm = text_to_speech("what is the weather in paris", sample_rate=8000, voice="sage")
    transcript = await asyncio.wait_for(transcribe_input(audio.pcm16_to_ulaw(b"\0" * 4000 + pcm + b"\0" * 8000),
                                                                audio.PCMU), 60)
    assert len(transcript.split()) >= 3, transcript


def test_vad_finds_start_and_end_of_speech():
    pcm = text_to_speech("hello there, how are you today", sample_rate=16000)
    vad = VoiceActivityDetector(silence_duration_ms=500, prefix_padding_ms=0)
    events = []
    stream = b"\0" * 32000 + pcm + b"\0" * 32000  # 1 s silence, speech, 1 s silence
    for offset in range(0, len(stream), 3200):
        events += vad.feed(stream[offset:offset + 3200])
    assert [e.kind for e in events] == ["speech_started", "speech_stopped"]
    speech_ms = len(pcm) / 32
    assert 900 <= events[0].ms <= 1200
    assert abs(events[1].ms - (1000 + speech_ms)) < 300


async def test_streaming_synthesis_yields_bounded_chunks_before_the_end():
    chunks = []
    async for chunk in synthesize_stream("One. Two. Three. Four.", sample_rate=8000, chunk_ms=100):
        chunks.append(chunk)
    assert len(chunks) > 3 and max(len(c) for c in chunks) <= 1600
    whole = text_to_speech("One. Two. Three. Four.", sample_rate=8000)
    assert abs(len(b"".join(chunks)) - len(whole)) < 400


async def test_stopping_a_stream_early_frees_the_synthesiser():
    stream = synthesize_stream(" ".join(["A long sentence that goes on."] * 50), sample_rate=24000)
    first = await anext(stream)
    assert first
    await stream.aclose()
    # eSpeak is free again: another synthesis completes.
    assert await run_in_pool(text_to_speech, "done", sample_rate=24000)


async def test_listener_in_a_worker_process_detects_and_transcribes_a_turn():
    listener = Listener(fmt=audio.PCMU, turn_detection={"threshold": 0.5, "prefix_padding_ms": 300},
                               silence_duration_ms=500)
    try:
        pcm = text_to_speech("please tell me the weather in london", sample_rate=8000, voice="sage")
        ulaw = audio.pcm16_to_ulaw(b"\0" * 8000 + pcm + b"\0" * 16000)
        events = []
        for offset in range(0, len(ulaw), 800):
            events += await asyncio.wait_for(listener.ingest(ulaw[offset:offset + 800]), 30)
        assert [e.kind for e in events] == ["speech_started", "speech_stopped"]
        transcript = await listener.finish()
        # 8 kHz telephone audio through a 16 kHz model: words, if not always the right ones.
        assert len(transcript.split()) >= 3, transcript
    finally:
        listener.close()
