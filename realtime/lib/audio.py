"""Audio formats of the realtime protocol: PCM16 24 kHz and G.711 (mu-law / A-law) 8 kHz.

Codecs are numpy lookup tables built from the ITU-T G.711 algorithm (the stdlib ``audioop`` is
deprecated and gone in Python 3.13); resampling uses soxr. Everything here is pure and cheap enough
to call per chunk; callers on the event loop still run bulk work in the speech pool.
"""
from __future__ import annotations

import base64
import binascii
import io
import wave

import numpy as np
import soxr

PCM = "audio/pcm"
PCMU = "audio/pcmu"
PCMA = "audio/pcma"
FORMAT_RATES = {PCM: 24000, PCMU: 8000, PCMA: 8000}


class AudioFormatError(ValueError):
    """An unknown format, or a buffer that cannot be audio in the stated format."""


def format_rate(fmt: str) -> int:
    try:
        return FORMAT_RATES[fmt]
    except KeyError:
        raise AudioFormatError(f"unsupported audio format {fmt!r}; use one of {', '.join(FORMAT_RATES)}") from None


def bytes_per_second(fmt: str) -> int:
    # PCM16 has two bytes a sample; G.711 one.
    return format_rate(fmt) * (2 if fmt == PCM else 1)


def duration_ms(nbytes: int, fmt: str) -> float:
    return nbytes * 1000.0 / bytes_per_second(fmt)


def bytes_for_ms(ms: float, fmt: str) -> int:
    """Whole samples' worth of bytes for ``ms`` milliseconds."""
    samples = int(format_rate(fmt) * ms / 1000)
    return samples * (2 if fmt == PCM else 1)


# --- G.711 tables ----------------------------------------------------------------------------------

def _ulaw_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _ulaw_encode_table() -> np.ndarray:
    """Code for every int16 value (indexed by value + 32768), on the 14-bit scale G.711 specifies."""
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + 0x21
    segment = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), magnitude)
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(pcm >= 0, 0x80, 0)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)  # A-law is symmetric around -0.5
    magnitude = np.minimum(magnitude, 32767) >> 3  # 13-bit
    exponent = np.where(magnitude < 32, 0, np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4)
    exponent = np.clip(exponent, 0, 7)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8)


_ULAW_DECODE = _ulaw_decode_table()
_ALAW_DECODE = _alaw_decode_table()
_ULAW_ENCODE = _ulaw_encode_table()
_ALAW_ENCODE = _alaw_encode_table()


def ulaw_to_pcm16(data: bytes) -> bytes:
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def alaw_to_pcm16(data: bytes) -> bytes:
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def pcm16_to_ulaw(data: bytes) -> bytes:
    return _ULAW_ENCODE[np.frombuffer(data, dtype="<i2").astype(np.int32) + 32768].tobytes()


def pcm16_to_alaw(data: bytes) -> bytes:
    return _ALAW_ENCODE[np.frombuffer(data, dtype="<i2").astype(np.int32) + 32768].tobytes()


def to_pcm16(data: bytes, fmt: str) -> bytes:
    """Decode a buffer in ``fmt`` to PCM16 at the format's own rate."""
    if fmt == PCM:
        if len(data) % 2:
            raise AudioFormatError("audio/pcm needs whole 16-bit samples (an even number of bytes)")
        return data
    if fmt == PCMU:
        return ulaw_to_pcm16(data)
    if fmt == PCMA:
        return alaw_to_pcm16(data)
    format_rate(fmt)  # raises for unknown formats
    raise AssertionError("unreachable")


def from_pcm16(data: bytes, fmt: str) -> bytes:
    """Encode PCM16 at the format's own rate into ``fmt``."""
    if fmt == PCM:
        return data
    if fmt == PCMU:
        return pcm16_to_ulaw(data)
    if fmt == PCMA:
        return pcm16_to_alaw(data)
    format_rate(fmt)
    raise AssertionError("unreachable")


# --- Resampling ------------------------------------------------------------------------------------

def resample(data: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample a whole PCM16 buffer."""
    if from_rate == to_rate or not data:
        return data
    samples = np.frombuffer(data, dtype="<i2")
    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype("<i2").tobytes()


class StreamResampler:
    """Chunk-by-chunk PCM16 resampling that keeps the filter state between chunks (no clicks)."""

    def __init__(self, from_rate: int, to_rate: int):
        self.from_rate, self.to_rate = from_rate, to_rate
        self._stream = None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16", quality="HQ")

    def push(self, data: bytes, *, last: bool = False) -> bytes:
        if self._stream is None:
            return data
        samples = np.frombuffer(data, dtype="<i2")
        return self._stream.resample_chunk(samples, last=last).astype("<i2").tobytes()


# --- Base64 and WAV --------------------------------------------------------------------------------

def b64decode(text: object) -> bytes:
    """Strict base64 (padding and alphabet checked). Raises ValueError on anything else."""
    if not isinstance(text, str):
        raise ValueError("audio must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("audio is not valid base64") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def wav_bytes(pcm16: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm16)
    return out.getvalue()


def wav_read(data: bytes) -> tuple[bytes, int]:
    """(mono PCM16, rate) from a 16-bit WAV file; stereo is mixed down."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise AudioFormatError("only 16-bit WAV is supported")
        channels, rate = wav.getnchannels(), wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    if channels > 1:
        samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels).mean(axis=1)
        frames = samples.astype("<i2").tobytes()
    return frames, rate
