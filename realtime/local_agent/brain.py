"""What the local agent says: a built-in assistant needing no model, or any OpenAI-compatible
chat-completions endpoint (``LOCAL_AGENT_LLM_URL``) streamed through ``realtime.lib.outbound``.

Both yield ``TextDelta`` and ``FunctionCall`` objects; the session turns them into protocol events.
"""
from __future__ import annotations

import datetime
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from django.conf import settings

from realtime.lib import outbound


@dataclass
class TextDelta:
    text: str


@dataclass
class FunctionCall:
    name: str
    arguments: str  # JSON text


class BrainError(RuntimeError):
    """The reply could not be produced (the LLM endpoint failed)."""


def item_text(item: dict) -> str:
    """The words of a message item: its text parts, else its audio transcripts (a reply in both
    modalities carries the same words twice)."""
    content = item.get("content") or []
    texts = [p.get("text") for p in content if p.get("type") in ("input_text", "text", "output_text")]
    if not any(texts):
        texts = [p.get("transcript") for p in content]
    return " ".join(text for text in texts if text).strip()


async def brain_reply(*, items: list[dict], instructions: str, tools: list[dict], tool_choice) -> AsyncIterator:
    if settings.LOCAL_AGENT_LLM_URL:
        async for output in _llm_reply(items=items, instructions=instructions, tools=tools, tool_choice=tool_choice):
            yield output
        return
    for output in _builtin_reply(items=items, tools=tools, tool_choice=tool_choice):
        yield output


# --- the built-in assistant ---------------------------------------------------------------------------

_FILLER = {"get", "set", "do", "the", "a", "an", "fetch", "call", "run", "lookup", "look", "up", "find"}
_WORD = re.compile(r"[a-z0-9']+")


def _tool_words(name: str) -> list[str]:
    words = re.split(r"[_\-\s]+|(?<=[a-z])(?=[A-Z])", name)
    return [w.lower() for w in words if w and w.lower() not in _FILLER]


def _tool_named(text: str, tools: list[dict], tool_choice) -> dict | None:
    functions = [t for t in tools if t.get("type", "function") == "function"]
    if not functions or tool_choice == "none":
        return None
    if isinstance(tool_choice, dict):
        return next((t for t in functions if t["name"] == tool_choice.get("name")), None)
    lowered = text.lower()
    words = set(_WORD.findall(lowered))
    for tool in functions:
        significant = _tool_words(tool["name"])
        if tool["name"].lower() in lowered or (significant and all(w in words for w in significant)):
            return tool
    return functions[0] if tool_choice == "required" else None


def _tool_arguments(text: str, tool: dict) -> str:
    """Fill string parameters from the phrase after the last "in/for/of/at", numbers from the first
    number said: crude, but enough for a model-free assistant to exercise tool round trips."""
    properties = (tool.get("parameters") or {}).get("properties") or {}
    phrase = ""
    match = re.search(r"\b(?:in|for|of|at|about|to)\s+([^.?!,]+?)\s*[.?!]*$", text, flags=re.IGNORECASE)
    if match:
        phrase = match.group(1).strip()
    number = re.search(r"-?\d+(?:\.\d+)?", text)
    arguments: dict = {}
    for key, schema in properties.items():
        kind = (schema or {}).get("type")
        if kind == "string" and phrase:
            arguments[key] = phrase
            phrase = ""  # one phrase fills one parameter
        elif kind in ("number", "integer") and number:
            arguments[key] = int(float(number.group())) if kind == "integer" else float(number.group())
    return json.dumps(arguments)


def _words(text: str):
    for index, word in enumerate(text.split(" ")):
        yield TextDelta(word if index == 0 else " " + word)


def _builtin_reply(*, items: list[dict], tools: list[dict], tool_choice):
    last = items[-1] if items else None
    if last and last.get("type") == "function_call_output":
        call = next((i for i in items if i.get("type") == "function_call" and i.get("call_id") == last.get("call_id")), None)
        name = call["name"].replace("_", " ") if call else "tool"
        yield from _words(f"The {name} tool says: {last.get('output', '')}.")
        return
    user = next((i for i in reversed(items) if i.get("type") == "message" and i.get("role") == "user"), None)
    text = item_text(user) if user else ""
    tool = _tool_named(text, tools, tool_choice) if text or tool_choice == "required" else None
    if tool:
        yield FunctionCall(name=tool["name"], arguments=_tool_arguments(text, tool))
        return
    if not text:
        yield from _words("Sorry, I did not catch that. Could you say it again?")
    elif re.search(r"\btime\b", text, flags=re.IGNORECASE):
        now = datetime.datetime.now(datetime.UTC)
        yield from _words(f"It is {now:%H:%M} UTC. You asked: {text}.")
    else:
        yield from _words(f"I heard you. You said: {text}.")


# --- an OpenAI-compatible chat-completions endpoint ---------------------------------------------------

def _chat_messages(items: list[dict], instructions: str) -> list[dict]:
    messages: list[dict] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            messages.append({"role": item.get("role", "user"), "content": item_text(item)})
        elif kind == "function_call":
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": item["call_id"], "type": "function",
                 "function": {"name": item["name"], "arguments": item.get("arguments", "{}")}}]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item.get("output", "")})
    return messages


async def _llm_reply(*, items, instructions, tools, tool_choice) -> AsyncIterator:
    payload: dict = {"model": settings.LOCAL_AGENT_LLM_MODEL, "stream": True,
                     "messages": _chat_messages(items, instructions)}
    if tools:
        payload["tools"] = [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters") if k in t}}
                            for t in tools]
        payload["tool_choice"] = ({"type": "function", "function": {"name": tool_choice["name"]}}
                                  if isinstance(tool_choice, dict) else tool_choice)
    headers = {"Authorization": f"Bearer {settings.LOCAL_AGENT_LLM_API_KEY}"} if settings.LOCAL_AGENT_LLM_API_KEY else {}
    calls: dict[int, dict] = {}
    try:
        async for chunk in outbound.http_post_sse(settings.LOCAL_AGENT_LLM_URL, payload=payload, headers=headers):
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    yield TextDelta(delta["content"])
                for call in delta.get("tool_calls") or []:
                    slot = calls.setdefault(call.get("index", 0), {"name": "", "arguments": ""})
                    function = call.get("function") or {}
                    slot["name"] += function.get("name") or ""
                    slot["arguments"] += function.get("arguments") or ""
    except Exception as exc:  # network, HTTP status or a malformed stream: the response fails cleanly
        raise BrainError(f"the language model endpoint failed: {type(exc).__name__}") from exc
    for index in sorted(calls):
        yield FunctionCall(name=calls[index]["name"], arguments=calls[index]["arguments"] or "{}")
