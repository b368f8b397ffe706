"""The voice console in a real browser against a real daphne process and the built-in local agent:
the fake microphone plays a WAV that eSpeak NG speaks during the test, and the page must hear it,
show both sides of the conversation, play the agent's audio, log the events and meter the usage."""
from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from playwright.sync_api import expect

from realtime.lib import audio
from realtime.local_agent.speech.tts import text_to_speech
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, browser_user_prepare, sign_in, wait_for_function

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.xdist_group("voice")]

SPOKEN = "what is the weather in london today"
AGENT_TIMEOUT_MS = 90_000  # recognition and synthesis share 2 CPU cores with everything else


@pytest.fixture
def microphone_wav(tmp_path):
    """What the fake microphone says: eSpeak NG speech with a second of silence either side."""
    rate = 24000
    pcm = text_to_speech(SPOKEN, sample_rate=rate, voice="sage")
    silence = b"\0" * (rate * 2)
    path = tmp_path / "microphone.wav"
    path.write_bytes(audio.wav_bytes(silence + pcm + silence, rate))
    return path


def _launch(microphone_wav):
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        # %noloop: the file is said once, then the microphone is silent.
        f"--use-file-for-fake-audio-capture={microphone_wav}%noloop",
    ])
    return playwright, browser


@pytest.fixture
def console_page(microphone_wav, monkeypatch):
    # Playwright's sync API runs an event loop in this thread (see tests/browser/conftest.py).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    playwright, browser = _launch(microphone_wav)
    context = browser.new_context()
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.console_messages = []
    page.on("console", lambda message: page.console_messages.append(f"{message.type}: {message.text}"))
    page.sent_audio = bytearray()  # what the page sent as input audio, for the artifacts

    def on_frame(payload):
        if isinstance(payload, str) and '"input_audio_buffer.append"' in payload:
            page.sent_audio.extend(base64.b64decode(json.loads(payload)["audio"]))

    page.on("websocket", lambda ws: ws.on("framesent", on_frame))
    try:
        yield page
    finally:
        context.close()
        browser.close()
        playwright.stop()


@pytest.fixture
def console_server(server_factory, owner, project):
    browser_user_prepare(owner)
    return server_factory(env={
        "REALTIME_ALLOWED_ORIGINS": "http://127.0.0.1:{port}",
        "REALTIME_METER_FLUSH_SECONDS": "1",
    })


def sign_in_and_open_console(page, server, project):
    sign_in(page, server, "owner@example.com")
    page.goto(f"{server.http_url}/projects/{project.slug}/")
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Console").click()
    expect(page.get_by_role("heading", name="Conversation")).to_be_visible()
    expect(page.locator("html[data-console-ready=true]")).to_have_count(1)


def connect(page):
    expect(page.get_by_label("Deployment")).to_contain_text("default")
    page.get_by_role("button", name="Connect", exact=True).click()
    expect(page.locator("#connection-status")).to_contain_text("Connected · session console-")
    expect(page.locator('#event-log li[data-type="session.created"]')).to_have_count(1)


def log_rows(page, event_type: str, direction: str = "in"):
    return page.locator(f'#event-log li[data-type="{event_type}"][data-direction="{direction}"]')


def report_failure(page, server) -> None:
    """What the page logged and saw (audio appends left out), and the server's log."""
    print("\n".join(page.console_messages))
    print(page.evaluate("""window.switchboardConsole.state.log
        .filter((e) => e.type !== "input_audio_buffer.append")
        .map((e) => `${e.time.slice(11, 23)} ${e.direction} ${e.type}`).join("\\n")"""))
    print(server.log()[-5000:])


def heard_words(page) -> str:
    """The first user turn's transcript, once the recogniser has finished it. The browser's capture path
    (and a loaded machine) changes the audio a little from run to run, and the recogniser may then miss
    a word or two ("weather" heard as "where there"), so what is asserted is that the turn is
    recognised as mostly the sentence that was said, not word for word."""
    user_turn = page.locator("#transcript li.turn.user").first
    expect(user_turn.locator(".text")).not_to_be_empty(timeout=AGENT_TIMEOUT_MS)
    expect(log_rows(page, "conversation.item.input_audio_transcription.completed")).to_have_count(
        1, timeout=AGENT_TIMEOUT_MS)
    heard = user_turn.locator(".text").inner_text().strip()
    spoken = SPOKEN.split()
    recognised = [word for word in spoken if word in heard.split()]
    assert len(recognised) * 2 >= len(spoken), f"heard {heard!r} for {SPOKEN!r}"
    return heard


def _session_count(project) -> int:
    """From a thread of its own that closes its connection: a query on this thread while Playwright's
    sync API runs leaves a second connection open, which then blocks dropping the test database."""
    from realtime.models import SessionRecord

    def count() -> int:
        try:
            return SessionRecord.objects.filter(project=project).count()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(count).result()


def meter(page, element_id: str) -> float:
    return float(page.locator(f"#{element_id}").get_attribute("data-value") or 0)


def test_talk_to_the_local_agent_by_voice_and_by_typing(console_server, console_page, project, artifacts_dir):
    page = console_page
    try:
        sign_in_and_open_console(page, console_server, project)
        connect(page)

        # The fake microphone says its sentence once; server VAD ends the turn. It is a file, so there
        # is no echo to cancel (Chrome's canceller changes the audio a little differently each run).
        page.get_by_label("Echo cancellation").uncheck()
        page.get_by_role("button", name="Start microphone").click()
        heard = heard_words(page)
        # The agent answers with what it heard, in the same conversation.
        agent_turn = page.locator("#transcript li.turn.assistant").first
        expect(agent_turn).to_contain_text(f"You said: {heard}", timeout=AGENT_TIMEOUT_MS)
        expect(log_rows(page, "response.done")).to_have_count(1, timeout=AGENT_TIMEOUT_MS)
        assert page.locator("#event-log li[data-direction=out][data-type='input_audio_buffer.append']").count() > 10

        # The playback worklet played the agent's voice: at least half a second of non-silent samples.
        wait_for_function(page, "window.switchboardConsole.stats.playbackNonSilentSamples > 12000",
                               timeout=AGENT_TIMEOUT_MS)
        # Turn latency was measured (speech_stopped to the first audio delta).
        assert meter(page, "meter-latency") > 0

        # The gateway's metering reached the ledger and the meters.
        wait_for_function(page, "Number(document.getElementById('meter-audio-in').dataset.value) > 1", timeout=20_000)
        wait_for_function(page, "Number(document.getElementById('meter-audio-out').dataset.value) > 0.5")
        wait_for_function(page, "Number(document.getElementById('meter-tokens').dataset.value) > 0")

        # A typed turn, answered in the same conversation.
        page.get_by_label("Message").fill("what time is it")
        page.get_by_role("button", name="Send", exact=True).click()
        expect(page.locator("#transcript li.turn.user").nth(1).locator(".text")).to_have_text("what time is it")
        expect(page.locator("#transcript li.turn.assistant").nth(1)).to_contain_text(
            "You asked: what time is it", timeout=AGENT_TIMEOUT_MS)
        expect(log_rows(page, "response.done")).to_have_count(2, timeout=AGENT_TIMEOUT_MS)
        expect(log_rows(page, "conversation.item.create", "out")).to_have_count(1)

        # Audio payloads are elided in the log (the microphone off first, so the log stops scrolling).
        page.get_by_role("button", name="Stop microphone").click()
        expect(page.get_by_role("button", name="Start microphone")).to_be_visible()
        delta = log_rows(page, "response.output_audio.delta").last
        delta.locator("summary").click()
        expect(delta.locator("pre")).to_contain_text("bytes of audio elided")
        # Filtering by type shows only the matching events.
        page.get_by_label("Filter by event type").fill("response.done")
        expect(page.locator("#event-log li")).to_have_count(2)
        # The whole log downloads as JSONL, audio elided there too.
        with page.expect_download() as download:
            page.get_by_role("button", name="Download JSONL").click()
        entries = [json.loads(line) for line in open(download.value.path(), encoding="utf-8")]
        assert [e["type"] for e in entries].count("response.done") == 2
        appends = [e["event"] for e in entries if e["type"] == "input_audio_buffer.append"]
        assert appends and all(e["audio"].endswith("bytes of audio elided>") for e in appends)
        assert {e["direction"] for e in entries} == {"in", "out"}

        page.screenshot(path=str(artifacts_dir / "console-conversation.png"), full_page=True)
    except Exception:
        (artifacts_dir / "console-microphone-sent.wav").write_bytes(audio.wav_bytes(bytes(page.sent_audio), 24000))
        report_failure(page, console_server)
        raise


# The built-in agent calls a tool when every significant word of its name was said.
TOOL = {"type": "function", "name": "london_today", "description": "What is on in London today.",
        "parameters": {"type": "object", "properties": {"topic": {"type": "string"}}}}


def test_push_to_talk_with_a_tool_and_resume_after_a_dropped_connection(console_server, console_page, project,
                                                                        artifacts_dir):
    page = console_page
    try:
        sign_in_and_open_console(page, console_server, project)
        page.get_by_label("Push to talk").check()
        connect(page)
        # Push-to-talk turns server VAD off.
        expect(log_rows(page, "session.updated")).to_have_count(1)
        expect(page.get_by_label("Turn detection")).to_have_value("none")

        # Tools JSON is checked before anything is sent, with the error next to the field.
        tools = page.get_by_label("Tools (JSON list of function tools)")
        tools.fill('[{"name": "get weather"}]')
        page.get_by_role("button", name="Apply settings").click()
        expect(page.locator("#setting-tools-error")).to_contain_text('Tool 1: "name" must be')
        expect(tools).to_have_attribute("aria-invalid", "true")
        tools.fill("[{")
        expect(page.locator("#setting-tools-error")).to_contain_text("Not valid JSON")
        expect(log_rows(page, "session.update", "out")).to_have_count(1)  # only push-to-talk's

        tools.fill(json.dumps([TOOL]))
        expect(page.locator("#setting-tools-error")).to_be_empty()
        page.get_by_label("Voice", exact=True).select_option("sage")
        page.get_by_role("button", name="Apply settings").click()
        expect(log_rows(page, "session.updated")).to_have_count(2)
        expect(page.locator("#settings-status")).to_have_text("Settings applied.")

        # Hold to talk while the fake microphone speaks; release when it has gone quiet.
        page.get_by_label("Echo cancellation").uncheck()
        page.get_by_role("button", name="Start microphone").click()
        page.get_by_role("button", name="Hold to talk").hover()
        page.mouse.down()
        wait_for_function(page, "parseFloat(document.getElementById('level-bar').style.width) > 30", timeout=20_000)
        wait_for_function(page, "parseFloat(document.getElementById('level-bar').style.width) === 0", timeout=20_000)
        page.mouse.up()
        expect(log_rows(page, "input_audio_buffer.commit", "out")).to_have_count(1)
        heard_words(page)
        expect(log_rows(page, "response.done")).to_have_count(1, timeout=AGENT_TIMEOUT_MS)
        # The built-in agent calls the tool the user's words name (typed here, so the call does not
        # hang on the recogniser hearing both words of its name).
        page.get_by_label("Message").fill("what is on in london today")
        page.get_by_role("button", name="Send", exact=True).click()
        expect(page.locator("#transcript li.turn.tool").last).to_contain_text("london_today(",
                                                                             timeout=AGENT_TIMEOUT_MS)
        expect(log_rows(page, "response.done")).to_have_count(2, timeout=AGENT_TIMEOUT_MS)

        # The socket drops: the page resumes the same session and says so.
        page.get_by_role("button", name="Drop connection").click()
        expect(page.locator("#connection-status")).to_contain_text("Resumed · session console-")
        expect(page.locator("#transcript")).to_contain_text("Connection restored: resumed the same session")

        page.get_by_label("Message").fill("thanks a lot")
        page.get_by_role("button", name="Send", exact=True).click()
        expect(page.locator("#transcript li.turn.assistant").last).to_contain_text("You said: thanks a lot",
                                                                                   timeout=AGENT_TIMEOUT_MS)
        assert _session_count(project) == 1  # one session, resumed
        page.screenshot(path=str(artifacts_dir / "console-push-to-talk-resumed.png"), full_page=True)
    except Exception:
        report_failure(page, console_server)
        raise


def test_speaking_over_the_agent_stops_playback_and_truncates_what_was_not_heard(console_server, console_page,
                                                                                  project, artifacts_dir):
    page = console_page
    try:
        sign_in_and_open_console(page, console_server, project)
        connect(page)
        # A long typed turn makes a long spoken reply ("I heard you. You said: ...", about 40 s), so it
        # is still playing however slowly the shared machine starts the microphone and detects speech.
        page.get_by_label("Message").fill(" ".join(["the quick brown fox jumps over the lazy dog"] * 16))
        page.get_by_role("button", name="Send", exact=True).click()
        wait_for_function(page, "window.switchboardConsole.stats.playbackNonSilentSamples > 2400",
                               timeout=AGENT_TIMEOUT_MS)
        # Now the user speaks over it (the microphone file starts with a second of silence).
        page.get_by_role("button", name="Start microphone").click()
        expect(log_rows(page, "input_audio_buffer.speech_started")).to_have_count(1, timeout=AGENT_TIMEOUT_MS)
        truncate = log_rows(page, "conversation.item.truncate", "out")
        expect(truncate).to_have_count(1)
        expect(log_rows(page, "conversation.item.truncated")).to_have_count(1)
        sent = page.evaluate("""window.switchboardConsole.state.log
            .find((e) => e.direction === "out" && e.type === "conversation.item.truncate").event""")
        # Playback of the interrupted reply stopped at once: none of it is queued or played from now on
        # (the fake microphone loops, so a later reply to the user's next words may well be playing).
        played_of_item = "(id) => window.switchboardConsole.playback.stats.playedByTag[id] || 0"
        heard_samples = page.evaluate(played_of_item, sent["item_id"])
        played_ms = page.evaluate("window.switchboardConsole.stats.playbackSamples") / 24
        # What was heard: more than the 100 ms that proved playback started, never more than was played.
        assert 100 < sent["audio_end_ms"] <= played_ms + 1
        # The reply was cut short: the agent's item is marked interrupted, the response cancelled.
        cut = page.locator("#transcript li.turn.assistant[data-interrupted=true]")
        expect(cut).to_have_count(1)
        expect(log_rows(page, "response.done").first.locator("summary")).to_be_visible()
        # It reads as cut, at what was heard: a prefix of what the agent said, never the unheard rest.
        expect(cut.locator(".cut-note")).to_contain_text("Interrupted after")
        item_id = cut.get_attribute("data-item-id")
        said = page.evaluate("""(id) => window.switchboardConsole.state.log
            .filter((e) => e.direction === "in" && e.event.item_id === id
                    && e.type === "response.output_audio_transcript.delta")
            .map((e) => e.event.delta).join("")""", item_id)
        shown = cut.locator(".text").inner_text().removesuffix(" —").strip()
        assert shown and said.startswith(shown) and len(shown) < len(said.strip()), (shown, said)
        assert int(cut.get_attribute("data-heard-ms")) == sent["audio_end_ms"]
        assert page.evaluate(played_of_item, sent["item_id"]) == heard_samples
        assert sent["audio_end_ms"] == heard_samples * 1000 // 24000
        page.screenshot(path=str(artifacts_dir / "console-interrupted.png"), full_page=True)
    except Exception:
        report_failure(page, console_server)
        raise
