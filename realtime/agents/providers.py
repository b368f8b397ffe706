"""The provider presets the agent form offers: each provider's endpoint, credential and the models and
voices to pick from. A static catalogue (no network at run time); a model or voice not listed can
still be typed."""
from __future__ import annotations

from dataclasses import dataclass

from accounts.models import Provider
from realtime.gateway.upstream import INWORLD_URL, OPENAI_URL

# The voices the realtime protocol names; the local agent maps each to an eSpeak NG variant.
REALTIME_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer", "verse")


@dataclass(frozen=True)
class ProviderPreset:
    provider: str
    label: str
    url: str  # the default endpoint ("" : none, or the user gives one)
    credential_help: str
    models: tuple[str, ...]
    voices: tuple[str, ...]
    help: str


# Keyed by accounts.models.Provider's values.
PRESETS: dict[str, ProviderPreset] = {
    "local": ProviderPreset(
        "local", "Local agent", "", "None needed: the built-in agent runs inside Switchboard.",
        ("local-echo",), REALTIME_VOICES,
        "The built-in agent: speech in, speech out, no network and no account needed. Good for trying things out.",
    ),
    "openai": ProviderPreset(
        "openai", "OpenAI", OPENAI_URL, "Your OpenAI API key (sk-…), sent as a Bearer token.",
        ("gpt-realtime", "gpt-realtime-mini", "gpt-4o-realtime-preview", "gpt-4o-mini-realtime-preview"),
        REALTIME_VOICES,
        "OpenAI's Realtime API. Pick a model and voice, paste your API key, then test the connection.",
    ),
    "inworld": ProviderPreset(
        "inworld", "Inworld", INWORLD_URL,
        "Your Inworld API key exactly as the Inworld portal shows it (already Base64), sent as Basic auth.",
        ("openai/gpt-4o-mini", "openai/gpt-4.1-mini", "openai/gpt-4.1", "google-ai-studio/gemini-2.5-flash",
         "anthropic/claude-3-5-haiku-latest"),
        ("Clive", "Ashley", "Alex", "Craig", "Deborah", "Dennis", "Edward", "Elizabeth", "Hades", "Julia",
         "Mark", "Olivia", "Priya", "Ronald", "Sarah", "Theodore", "Timothy", "Wendy"),
        "Inworld's Realtime API. The model is the LLM behind the agent; the voice is an Inworld TTS voice.",
    ),
    "custom": ProviderPreset(
        "custom", "Custom URL", "", "Whatever your endpoint expects; put it in a header with {credential}.",
        (), REALTIME_VOICES,
        "Any endpoint that speaks the realtime event protocol. {session_id}, {model} and {credential} in the "
        "URL are filled in per session.",
    ),
}


def provider_presets() -> list[ProviderPreset]:
    return [PRESETS[value] for value in Provider.values]
