"""Session configuration of the local agent: partial updates, and errors that name the parameter."""
import pytest

from realtime.local_agent.config import ConfigError, session_config_default, session_config_update, silence_ms

pytestmark = pytest.mark.unit


def test_partial_update_keeps_everything_else():
    current = session_config_default()
    new = session_config_update(current=current, update={"audio": {"output": {"voice": "ash"}}, "instructions": "Hi"})
    assert new["audio"]["output"]["voice"] == "ash" and new["instructions"] == "Hi"
    assert new["audio"]["input"] == current["audio"]["input"]
    assert current["audio"]["output"]["voice"] == "alloy"  # the current config is not modified


def test_turn_detection_merges_and_semantic_vad_maps_eagerness_to_silence():
    current = session_config_default()
    new = session_config_update(current=current, update={"audio": {"input": {"turn_detection": {"silence_duration_ms": 800}}}})
    detection = new["audio"]["input"]["turn_detection"]
    assert detection["silence_duration_ms"] == 800 and detection["threshold"] == 0.5 and silence_ms(detection) == 800
    semantic = session_config_update(current=new, update={"audio": {"input": {"turn_detection": {
        "type": "semantic_vad", "eagerness": "high"}}}})["audio"]["input"]["turn_detection"]
    low = session_config_update(current=new, update={"audio": {"input": {"turn_detection": {
        "type": "semantic_vad", "eagerness": "low"}}}})["audio"]["input"]["turn_detection"]
    assert silence_ms(semantic) < silence_ms(low)
    off = session_config_update(current=new, update={"audio": {"input": {"turn_detection": None}}})
    assert off["audio"]["input"]["turn_detection"] is None


def test_beta_style_fields_are_mapped():
    new = session_config_update(current=session_config_default(), update={
        "modalities": ["text"], "voice": "verse", "input_audio_format": "g711_ulaw", "output_audio_format": "g711_alaw"})
    assert new["output_modalities"] == ["text"] and new["audio"]["output"]["voice"] == "verse"
    assert new["audio"]["input"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    assert new["audio"]["output"]["format"] == {"type": "audio/pcma", "rate": 8000}


@pytest.mark.parametrize("update, param", [
    ({"output_modalities": ["smell"]}, "session.output_modalities"),
    ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "session.audio.input.format.rate"),
    ({"audio": {"output": {"speed": 9}}}, "session.audio.output.speed"),
    ({"audio": {"input": {"turn_detection": {"type": "magic"}}}}, "session.audio.input.turn_detection.type"),
    ({"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "wild"}}}},
     "session.audio.input.turn_detection.eagerness"),
    ({"tools": [{"type": "function", "name": "bad name!"}]}, "session.tools[0].name"),
    ({"tools": [{"type": "web_search"}]}, "session.tools[0].type"),
    ({"max_output_tokens": 0}, "session.max_output_tokens"),
    ({"type": "transcription"}, "session.type"),
    ({"audio": {"input": {"echo": True}}}, "session.audio.input.echo"),
])
def test_invalid_fields_name_their_param(update, param):
    with pytest.raises(ConfigError) as raised:
        session_config_update(current=session_config_default(), update=update)
    assert raised.value.param == param


# Seed 004's "Session Config" example, as the seed shows it.
SEED_004_SESSION = {
    "type": "realtime", "model": "openai/gpt-4o-mini", "instructions": "You are a concise concierge.",
    "output_modalities": ["audio", "text"],
    "audio": {
        "input": {"turn_detection": {"type": "semantic_vad", "eagerness": "medium", "create_response": True,
                                     "interrupt_response": True}},
        "output": {"voice": "Clive", "model": "inworld-tts-1.5-mini", "speed": 1.0},
    },
    "tools": [{"type": "function", "name": "get_weather", "description": "Fetch weather for a location",
               "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                              "required": ["location"]}}],
}


def missing_fields(sent, kept, where="session") -> list[str]:
    """Paths of ``sent`` whose value is not in ``kept`` (objects compared field by field)."""
    if isinstance(sent, dict):
        if not isinstance(kept, dict):
            return [where]
        return [m for key, value in sent.items() for m in missing_fields(value, kept.get(key, ...), f"{where}.{key}")]
    return [] if sent == kept else [where]


def test_every_field_of_the_seeds_session_update_is_kept():
    new = session_config_update(current=session_config_default(), update=SEED_004_SESSION)
    assert missing_fields(SEED_004_SESSION, new) == []
    assert missing_fields({"audio": {"output": {"model": "x"}}}, session_config_default()) == ["session.audio.output.model"]
