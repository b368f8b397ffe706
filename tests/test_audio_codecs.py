"""Audio formats: G.711 against the ITU-T reference values, resampling, durations, strict base64."""
import base64
import warnings

import numpy as np
import pytest

from realtime.lib import audio

pytestmark = pytest.mark.unit

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the stdlib reference implementation (removed in 3.13; present on our 3.11)

ALL_PCM = np.arange(-32768, 32768, dtype="<i2").tobytes()


@pytest.mark.parametrize("code, value", [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xCE, 988), (0x4E, -988)])
def test_ulaw_decodes_to_the_g711_values(code, value):
    assert np.frombuffer(audio.ulaw_to_pcm16(bytes([code])), "<i2")[0] == value


@pytest.mark.parametrize("code, value", [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256)])
def test_alaw_decodes_to_the_g711_values(code, value):
    assert np.frombuffer(audio.alaw_to_pcm16(bytes([code])), "<i2")[0] == value


@pytest.mark.parametrize("pcm, ulaw, alaw", [(0, 0xFF, 0xD5), (-1, 0x7E, 0x55), (1000, 0xCE, 0xFA), (-1000, 0x4E, 0x7A),
                                             (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A)])
def test_encoding_known_samples(pcm, ulaw, alaw):
    sample = np.array([pcm], "<i2").tobytes()
    assert audio.pcm16_to_ulaw(sample) == bytes([ulaw])
    assert audio.pcm16_to_alaw(sample) == bytes([alaw])


def test_every_sample_and_code_matches_the_reference_implementation():
    assert audio.pcm16_to_ulaw(ALL_PCM) == audioop.lin2ulaw(ALL_PCM, 2)
    assert audio.pcm16_to_alaw(ALL_PCM) == audioop.lin2alaw(ALL_PCM, 2)
    codes = bytes(range(256))
    assert audio.ulaw_to_pcm16(codes) == audioop.ulaw2lin(codes, 2)
    assert audio.alaw_to_pcm16(codes) == audioop.alaw2lin(codes, 2)


def test_g711_round_trip_keeps_a_tone_close():
    tone = (np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 12000).astype("<i2")
    for encode, decode in ((audio.pcm16_to_ulaw, audio.ulaw_to_pcm16), (audio.pcm16_to_alaw, audio.alaw_to_pcm16)):
        back = np.frombuffer(decode(encode(tone.tobytes())), "<i2").astype(float)
        snr = 10 * np.log10(np.sum(tone.astype(float) ** 2) / np.sum((tone - back) ** 2))
        assert snr > 30  # G.711 gives about 38 dB on a loud tone


def test_durations_from_bytes_and_format():
    assert audio.duration_ms(48000, audio.PCM) == 1000
    assert audio.duration_ms(8000, audio.PCMU) == 1000
    assert audio.duration_ms(800, audio.PCMA) == 100
    assert audio.bytes_for_ms(100, audio.PCM) == 4800 and audio.bytes_for_ms(100, audio.PCMU) == 800
    with pytest.raises(audio.AudioFormatError):
        audio.duration_ms(10, "audio/mp3")
    with pytest.raises(audio.AudioFormatError):
        audio.to_pcm16(b"\x00\x01\x02", audio.PCM)


def test_resampling_keeps_duration_and_pitch():
    tone = (np.sin(np.arange(24000) * 2 * np.pi * 1000 / 24000) * 10000).astype("<i2").tobytes()
    out = np.frombuffer(audio.resample(tone, 24000, 16000), "<i2")
    assert len(out) == 16000
    assert np.argmax(np.abs(np.fft.rfft(out))) == 1000  # 1 kHz peak at 1 Hz per bin
    stream = audio.StreamResampler(24000, 16000)
    pieces = b"".join(stream.push(tone[i:i + 4800]) for i in range(0, len(tone), 4800)) + stream.push(b"", last=True)
    assert abs(len(pieces) // 2 - 16000) <= 2


def test_base64_is_strict():
    assert audio.b64decode(base64.b64encode(b"abc").decode()) == b"abc"
    for bad in ("***", "YWJj!", "YWJ", 42, None):
        with pytest.raises(ValueError):
            audio.b64decode(bad)


def test_wav_round_trip():
    pcm = np.arange(-100, 100, dtype="<i2").tobytes()
    assert audio.wav_read(audio.wav_bytes(pcm, 8000)) == (pcm, 8000)
