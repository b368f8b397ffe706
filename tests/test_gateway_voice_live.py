"""A full voice turn through the gateway to the built-in local agent (the default deployment of a new
project), metered in the ledger."""
from __future__ import annotations

import asyncio
import base64
import json
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from accounts.models import UsageRecord
from realtime.lib import audio
from realtime.models import SessionRecord
from tests.test_gateway_support import RUN, bearer, connect, recv_json, recv_until, session_url
from tests.test_local_agent_live import SPOKEN, spoken_pcm

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def test_a_spoken_turn_through_the_gateway_to_the_local_agent(server_factory, project, dev_key, artifacts_dir):
    row, raw = dev_key
    server = server_factory(env={"LOCAL_AGENT_SECRET": "gateway-test-agent-secret"})
    pcm = await asyncio.to_thread(spoken_pcm, SPOKEN, 24000, artifacts_dir)
    async with await connect(session_url(server, "voice"), bearer(raw), max_size=None) as ws:
        created = await recv_json(ws, timeout=30)
        assert created["type"] == "session.created"
        chunk = audio.bytes_for_ms(100, audio.PCM)
        for offset in range(0, len(pcm), chunk):
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(pcm[offset:offset + chunk]).decode()}))
        done, events = await recv_until(ws, "response.done", timeout=90)
        types = [e["type"] for e in events]
        assert types.index("input_audio_buffer.speech_started") < types.index("input_audio_buffer.speech_stopped")
        transcript = next(e for e in events
                          if e["type"] == "conversation.item.input_audio_transcription.completed")["transcript"]
        # What the recogniser hears is the local agent's business (its own tests); here: it heard speech.
        assert transcript.strip()
        reply = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
        assert len(reply) / 48000 > 1.0
        assert done["response"]["status"] == "completed"
        text_in = done["response"]["usage"]["input_token_details"]["text_tokens"]
        text_out = done["response"]["usage"]["output_token_details"]["text_tokens"]
    def ended():
        return SessionRecord.objects.filter(client_key=f"voice-{RUN}", ended_at__isnull=False).first()

    async with asyncio.timeout(15):
        while (record := await sync_to_async(ended)()) is None:
            await asyncio.sleep(0.1)  # the server process ends the session after the client leaves
    session_id = record.session_id  # the ledger's id of this session

    def totals():
        result = {}
        for metric, quantity in UsageRecord.objects.filter(session_id=session_id).values_list("metric", "quantity"):
            result[metric] = result.get(metric, Decimal(0)) + quantity
        return result

    metered = await sync_to_async(totals)()
    assert metered["audio_in_seconds"] == Decimal(len(pcm) / 48000).quantize(Decimal("0.001"))
    assert metered["audio_out_seconds"] == Decimal(len(reply) / 48000).quantize(Decimal("0.001"))
    assert (metered.get("text_in_tokens", 0), metered.get("text_out_tokens", 0)) == (text_in, text_out)
