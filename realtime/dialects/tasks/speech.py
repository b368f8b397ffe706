"""text2speech (eSpeak NG, in the bounded speech pool) and speech2text (pocketsphinx, in a recognition
worker process). Audio travels as base64 16-bit mono WAV."""
from __future__ import annotations

import wave

from django.conf import settings

from realtime.dialects.tasks import TaskContext, TaskFailed
from realtime.dialects.tasks.inputs import param_base64, param_choice, param_str
from realtime.lib import audio
from realtime.local_agent.speech import listener, pool, tts

SAMPLE_RATES = {8000: 8000, 16000: 16000, 22050: 22050, 24000: 24000, 44100: 44100, 48000: 48000}


def _speak(text: str, voice: str, rate: int) -> bytes:
    return audio.wav_bytes(tts.text_to_speech(text, sample_rate=rate, voice=voice), rate)


async def text_to_speech(task: dict, ctx: TaskContext) -> dict:
    text = param_str(task, "text", max_chars=settings.TASKS_MAX_TEXT_CHARS)
    voice = param_str(task, "voice", max_chars=40, required=False) or "alloy"
    rate = param_choice(task, "sampleRate", SAMPLE_RATES, 24000)
    param_choice(task, "outputFormat", {"WAV": "WAV"}, "WAV")
    wav = await pool.run_in_pool(_speak, text, voice, rate)
    samples = (len(wav) - 44) // 2
    return {"audioBase64Data": audio.b64encode(wav), "audioFormat": "WAV", "sampleRate": rate,
            "durationSeconds": round(samples / rate, 3)}


async def speech_to_text(task: dict, ctx: TaskContext) -> dict:
    data = param_base64(task, "audio")
    try:
        pcm, rate = audio.wav_read(data)
    except (audio.AudioFormatError, wave.Error, EOFError):
        raise TaskFailed("invalid_audio", "audio must be a 16-bit PCM WAV file.", parameter="audio") from None
    if not pcm:
        raise TaskFailed("invalid_audio", "The WAV file holds no samples.", parameter="audio")
    # Silence on both sides: the recogniser clips words that touch the edges of the buffer.
    pad = b"\0" * (rate * 2 // 5)
    text = await listener.transcribe(pad + pcm + pad, rate)
    return {"text": text, "durationSeconds": round(len(pcm) / 2 / rate, 3)}
