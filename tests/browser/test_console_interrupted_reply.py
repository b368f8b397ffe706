"""An interrupted reply reads as cut at what was heard, at 1280x900 and 390x844, light and dark.

A loopback upstream speaks three sentences (each transcript delta just ahead of its 3 s of tone, as
real agents send them) and never finishes; the user types over it after about 4 s of playback. The
console must show the first sentence, part of the second, none of the third, and say it was cut."""
from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import threading

import pytest
from playwright.sync_api import expect
from websockets.asyncio.server import serve

from tests.browser.conftest import browser_user_prepare, sign_in, wait_for_function
from tests.browser.portal_support import new_page, screen_params, shot
from tests.test_gateway_support import _make_custom_deployment

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.xdist_group("voice")]

RATE = 24000
SENTENCES = ["Alpha one is the first sentence.", " Bravo two comes second in line.", " Charlie three is never heard."]


def _tone(seconds: float) -> str:
    samples = int(RATE * seconds)
    pcm = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / RATE))) for n in range(samples))
    return base64.b64encode(pcm).decode()


class SpeakingUpstream:
    """A realtime upstream on its own thread and loop (the browser API blocks the test thread)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.stop = None
        self.thread = threading.Thread(target=self._run, name="speaking-upstream", daemon=True)
        self.audio = [_tone(0.5)] * 6  # 3 s per sentence in 0.5 s deltas

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self):
        self.stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0, max_size=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            await self.stop.wait()

    async def _handle(self, ws):
        async def emit(event):
            await ws.send(json.dumps(event))

        await emit({"type": "session.created", "session": {"id": "up", "type": "realtime"}})
        async for message in ws:
            event = json.loads(message)
            if event.get("type") == "conversation.item.create":
                item = {**event["item"], "id": f"item_user_{id(event)}"}
                await emit({"type": "conversation.item.added", "item": item})
            elif event.get("type") == "response.create":
                item_id = f"item_reply_{id(event)}"
                await emit({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}})
                await emit({"type": "conversation.item.added", "item": {"id": item_id, "type": "message",
                                                                         "role": "assistant", "content": []}})
                for sentence in SENTENCES:
                    await emit({"type": "response.output_audio_transcript.delta", "item_id": item_id, "delta": sentence})
                    for chunk in self.audio:
                        await emit({"type": "response.output_audio.delta", "item_id": item_id, "delta": chunk})
            elif event.get("type") == "response.cancel":
                await emit({"type": "response.done", "response": {"id": "resp_1", "status": "cancelled"}})

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


@screen_params()
def test_an_interrupted_reply_shows_only_what_was_heard(server_factory, chromium_browser, owner, project,
                                                       artifacts_dir, screen):
    browser_user_prepare(owner)
    with SpeakingUpstream() as upstream:
        _make_custom_deployment(project, f"ws://127.0.0.1:{upstream.port}/realtime")
        server = server_factory(env={"REALTIME_ALLOWED_ORIGINS": "http://127.0.0.1:{port}"})
        context, page = new_page(chromium_browser, screen)
        try:
            sign_in(page, server, "owner@example.com")
            page.goto(f"{server.http_url}/projects/{project.slug}/console/")
            expect(page.locator("html[data-console-ready=true]")).to_have_count(1)
            page.get_by_role("button", name="Connect", exact=True).click()
            expect(page.locator("#connection-status")).to_contain_text("Connected · session console-")
            page.get_by_label("Message").fill("tell me three things")
            page.get_by_role("button", name="Send", exact=True).click()
            expect(page.locator("#agent-state")).to_have_text("speaking")
            wait_for_function(page, "window.switchboardConsole.stats.playbackSamples > 24000 * 4")
            page.get_by_label("Message").fill("stop, thanks")
            page.get_by_role("button", name="Send", exact=True).click()

            cut = page.locator("#transcript li.turn.assistant[data-interrupted=true]")
            expect(cut).to_have_count(1)
            expect(cut.locator(".cut-note")).to_contain_text("Interrupted after")
            heard_ms = int(cut.get_attribute("data-heard-ms"))
            assert 4000 <= heard_ms < 6000, heard_ms  # within the second sentence
            shown = cut.locator(".text").inner_text()
            assert shown.startswith(SENTENCES[0]) and "Bravo" in shown, shown
            assert "second in line" not in shown and "Charlie" not in shown, shown
            expect(page.locator("#typed-send")).to_be_enabled()
            shot(page, artifacts_dir, "console-interrupted-reply", screen)
        finally:
            context.close()
