"""Voice activity detection: turn detection over a 16 kHz PCM16 stream (webrtcvad)."""
from __future__ import annotations

from dataclasses import dataclass

import webrtcvad

VAD_RATE = 16000  # webrtcvad works at 8, 16, 32 or 48 kHz; 16 kHz is also what recognition uses
VAD_FRAME_MS = 30
_VAD_FRAME_BYTES = VAD_RATE * VAD_FRAME_MS // 1000 * 2


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
            voiced = self._vad.is_speech(data[offset:offset + _VAD_FRAME_BYTES], VAD_RATE)
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
