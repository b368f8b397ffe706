"""Session configuration of the local agent: defaults, and validation of partial ``session.update``s.

Shapes follow the OpenAI Realtime GA session object. A few beta-era flat fields (``voice``,
``modalities``, ``input_audio_format`` ...) are accepted and mapped, because older clients still send
them. Any invalid field raises ``ConfigError`` naming its ``param``; nothing is applied then.
"""
from __future__ import annotations

import copy
import secrets
import time

from realtime.lib import audio

MODEL = "switchboard-local"
DEFAULT_SILENCE_MS = 500
# semantic_vad's eagerness decides how long the agent waits before taking the turn.
EAGERNESS_SILENCE_MS = {"low": 1200, "medium": 700, "auto": 700, "high": 350}
_BETA_FORMATS = {"pcm16": audio.PCM, "g711_ulaw": audio.PCMU, "g711_alaw": audio.PCMA}


class ConfigError(ValueError):
    def __init__(self, message: str, *, param: str, code: str = "invalid_value"):
        super().__init__(message)
        self.param, self.code = param, code


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def default_turn_detection() -> dict:
    return {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": DEFAULT_SILENCE_MS, "idle_timeout_ms": None,
            "create_response": True, "interrupt_response": True}


def session_config_default(*, model: str | None = None) -> dict:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model or MODEL,
        "output_modalities": ["audio"],
        "instructions": "You are a helpful, concise voice assistant.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "prompt": None,
        "truncation": "auto",
        "include": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": {"type": audio.PCM, "rate": 24000},
                "transcription": {"model": "pocketsphinx", "language": "en"},
                "noise_reduction": None,
                "turn_detection": default_turn_detection(),
            },
            "output": {"format": {"type": audio.PCM, "rate": 24000}, "voice": "alloy", "speed": 1.0},
        },
    }


def silence_ms(turn_detection: dict) -> int:
    if turn_detection.get("type") == "semantic_vad":
        return EAGERNESS_SILENCE_MS[turn_detection.get("eagerness") or "auto"]
    return int(turn_detection.get("silence_duration_ms", DEFAULT_SILENCE_MS))


# --- validation -------------------------------------------------------------------------------------

def _expect(cond: bool, message: str, param: str) -> None:
    if not cond:
        raise ConfigError(message, param=param)


def _unknown(update: dict, allowed: set[str], prefix: str) -> None:
    for key in update:
        if key not in allowed:
            raise ConfigError(f"Unknown parameter: '{prefix}.{key}'.", param=f"{prefix}.{key}", code="unknown_parameter")


def _format(value, param: str) -> dict:
    if isinstance(value, str) and value in _BETA_FORMATS:
        value = {"type": _BETA_FORMATS[value]}
    _expect(isinstance(value, dict) and value.get("type") in audio.FORMAT_RATES,
            f"Invalid audio format; expected type one of {', '.join(audio.FORMAT_RATES)}.", f"{param}.type")
    _unknown(value, {"type", "rate"}, param)
    rate = audio.FORMAT_RATES[value["type"]]
    _expect(value.get("rate", rate) == rate, f"{value['type']} is supported at {rate} Hz only.", f"{param}.rate")
    return {"type": value["type"], "rate": rate}


def _turn_detection(value, current: dict | None, param: str) -> dict | None:
    if value is None:
        return None
    _expect(isinstance(value, dict), "turn_detection must be an object or null.", param)
    _unknown(value, {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms",
                     "create_response", "interrupt_response", "eagerness"}, param)
    merged = {**(current or default_turn_detection()), **value}
    _expect(merged["type"] in ("server_vad", "semantic_vad"), "type must be server_vad or semantic_vad.", f"{param}.type")
    threshold = merged.get("threshold", 0.5)
    _expect(isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0 <= threshold <= 1,
            "threshold must be a number from 0 to 1.", f"{param}.threshold")
    for key, top in (("prefix_padding_ms", 5000), ("silence_duration_ms", 10000)):
        number = merged.get(key, 0)
        _expect(isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= top,
                f"{key} must be an integer from 0 to {top}.", f"{param}.{key}")
    idle = merged.get("idle_timeout_ms")
    _expect(idle is None or (isinstance(idle, int) and not isinstance(idle, bool) and idle >= 0),
            "idle_timeout_ms must be a non-negative integer or null.", f"{param}.idle_timeout_ms")
    for key in ("create_response", "interrupt_response"):
        _expect(isinstance(merged.get(key, True), bool), f"{key} must be a boolean.", f"{param}.{key}")
    if merged["type"] == "semantic_vad":
        merged.setdefault("eagerness", "auto")
        _expect(merged["eagerness"] in EAGERNESS_SILENCE_MS, "eagerness must be low, medium, high or auto.",
                f"{param}.eagerness")
    else:
        merged.pop("eagerness", None)
    return merged


def _tools(value, param: str) -> list:
    _expect(isinstance(value, list), "tools must be a list.", param)
    for index, tool in enumerate(value):
        where = f"{param}[{index}]"
        _expect(isinstance(tool, dict) and tool.get("type", "function") == "function",
                "Only function tools are supported.", f"{where}.type")
        name = tool.get("name")
        _expect(isinstance(name, str) and name.replace("_", "").replace("-", "").isalnum() and len(name) <= 64,
                "A tool needs a name of letters, digits, _ and - (at most 64).", f"{where}.name")
        _expect(isinstance(tool.get("parameters", {}), dict), "parameters must be a JSON schema object.",
                f"{where}.parameters")
    return [{"type": "function", **tool} for tool in value]


def _beta_aliases(update: dict) -> dict:
    """Map beta-era flat fields onto the GA shape."""
    update = dict(update)
    audio_in: dict = {}
    audio_out: dict = {}
    if "modalities" in update:
        update.setdefault("output_modalities", update.pop("modalities"))
    if "input_audio_format" in update:
        audio_in["format"] = update.pop("input_audio_format")
    if "turn_detection" in update:
        audio_in["turn_detection"] = update.pop("turn_detection")
    if "input_audio_transcription" in update:
        audio_in["transcription"] = update.pop("input_audio_transcription")
    if "output_audio_format" in update:
        audio_out["format"] = update.pop("output_audio_format")
    if "voice" in update:
        audio_out["voice"] = update.pop("voice")
    if "max_response_output_tokens" in update:
        update.setdefault("max_output_tokens", update.pop("max_response_output_tokens"))
    update.pop("temperature", None)  # not meaningful for the local brain
    if audio_in or audio_out:
        merged = copy.deepcopy(update.get("audio") or {})
        merged.setdefault("input", {}).update(audio_in)
        merged.setdefault("output", {}).update(audio_out)
        update["audio"] = merged
    return update


def session_config_update(*, current: dict, update: object) -> dict:
    """The new session config after a partial update, or ConfigError. ``current`` is not modified."""
    if not isinstance(update, dict):
        raise ConfigError("session must be an object.", param="session")
    update = _beta_aliases(update)
    _unknown(update, {"type", "object", "id", "model", "output_modalities", "instructions", "tools", "tool_choice",
                      "max_output_tokens", "tracing", "prompt", "truncation", "include", "expires_at", "audio"}, "session")
    new = copy.deepcopy(current)
    if "type" in update:
        _expect(update["type"] == "realtime", "Only realtime sessions are supported.", "session.type")
    if "model" in update:
        _expect(isinstance(update["model"], str) and bool(update["model"]), "model must be a string.", "session.model")
        new["model"] = update["model"]
    if "instructions" in update:
        _expect(isinstance(update["instructions"], str), "instructions must be a string.", "session.instructions")
        new["instructions"] = update["instructions"]
    if "output_modalities" in update:
        mods = update["output_modalities"]
        _expect(isinstance(mods, list) and bool(mods) and set(mods) <= {"audio", "text"},
                "output_modalities must be a non-empty list of 'audio' and/or 'text'.", "session.output_modalities")
        new["output_modalities"] = list(dict.fromkeys(mods))
    if "tools" in update:
        new["tools"] = _tools(update["tools"], "session.tools")
    if "tool_choice" in update:
        choice = update["tool_choice"]
        _expect(choice in ("auto", "none", "required") or (isinstance(choice, dict) and choice.get("type") == "function"
                                                           and isinstance(choice.get("name"), str)),
                "tool_choice must be auto, none, required or a function.", "session.tool_choice")
        new["tool_choice"] = choice
    if "max_output_tokens" in update:
        limit = update["max_output_tokens"]
        _expect(limit == "inf" or (isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= 4096),
                "max_output_tokens must be an integer from 1 to 4096 or 'inf'.", "session.max_output_tokens")
        new["max_output_tokens"] = limit
    for key in ("tracing", "prompt", "truncation", "include"):
        if key in update:
            new[key] = update[key]
    if "audio" in update:
        _apply_audio(new["audio"], update["audio"])
    return new


def _apply_audio(target: dict, update) -> None:
    _expect(isinstance(update, dict), "audio must be an object.", "session.audio")
    _unknown(update, {"input", "output"}, "session.audio")
    if "input" in update:
        value = update["input"]
        _expect(isinstance(value, dict), "audio.input must be an object.", "session.audio.input")
        _unknown(value, {"format", "transcription", "noise_reduction", "turn_detection"}, "session.audio.input")
        if "format" in value:
            target["input"]["format"] = _format(value["format"], "session.audio.input.format")
        if "turn_detection" in value:
            target["input"]["turn_detection"] = _turn_detection(
                value["turn_detection"], target["input"]["turn_detection"], "session.audio.input.turn_detection")
        for key in ("transcription", "noise_reduction"):
            if key in value:
                _expect(value[key] is None or isinstance(value[key], dict), f"{key} must be an object or null.",
                        f"session.audio.input.{key}")
                target["input"][key] = value[key]
    if "output" in update:
        value = update["output"]
        _expect(isinstance(value, dict), "audio.output must be an object.", "session.audio.output")
        _unknown(value, {"format", "voice", "speed", "model"}, "session.audio.output")
        if "format" in value:
            target["output"]["format"] = _format(value["format"], "session.audio.output.format")
        if "voice" in value:
            # Any voice name is accepted (other providers' names too); speech/tts.py's voice_variant maps it.
            _expect(isinstance(value["voice"], str) and 0 < len(value["voice"]) <= 64,
                    "voice must be a non-empty string of at most 64 characters.", "session.audio.output.voice")
            target["output"]["voice"] = value["voice"]
        if "model" in value:
            # The speech model (seed 004 shows e.g. inworld-tts-1.5-mini): kept and reported back; the
            # local agent itself always speaks with eSpeak NG.
            _expect(isinstance(value["model"], str) and 0 < len(value["model"]) <= 128,
                    "model must be a non-empty string of at most 128 characters.", "session.audio.output.model")
            target["output"]["model"] = value["model"]
        if "speed" in value:
            speed = value["speed"]
            _expect(isinstance(speed, (int, float)) and not isinstance(speed, bool) and 0.25 <= speed <= 1.5,
                    "speed must be a number from 0.25 to 1.5.", "session.audio.output.speed")
            target["output"]["speed"] = float(speed)
