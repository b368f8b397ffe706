"""The usage dashboard in a real browser after real traffic: sessions of three dialects through a
daphne process, then the owner opens the dashboard, sees today's usage in the chart (screenshot in
test-artifacts/), downloads the CSV and finds it equal to the ledger, reads the statement (print
layout too) and sets a budget."""
from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import importlib
import json
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from playwright.sync_api import expect

from accounts.models import EnvironmentKind, UsageRecord
from accounts.services import api_key_create
from realtime.models import SessionRecord
from tests.browser.conftest import browser_user_prepare, sign_in
from tests.test_billing_support import prices_set
from tests.test_gateway_support import (
    ScriptedUpstream,
    bearer,
    connect,
    make_custom_deployment,
    recv_until,
    session_url,
)
from tests.test_rooms_live import run_plan
from tests.test_tasks_support import b64, new_connection, png_bytes, run_task, task_uuid
from tests.test_tasks_support import connect as tasks_connect

pytestmark = [pytest.mark.browser, pytest.mark.live]

def _ledger() -> dict[tuple[str, str], tuple[Decimal, int]]:
    totals: dict[tuple[str, str], tuple[Decimal, int]] = {}
    for row in UsageRecord.objects.all():
        quantity, cost = totals.get((row.key_id, row.metric), (Decimal(0), 0))
        totals[(row.key_id, row.metric)] = (quantity + row.quantity, cost + row.cost_micros)
    return totals


async def _sessions(server, project, keys: dict) -> None:
    async with ScriptedUpstream(audio_delta_bytes=48000, usage=(420, 180)) as upstream:
        await make_custom_deployment(project, upstream.url)
        # A voice session: 20 s of audio in, three spoken answers of 1 s each.
        async with await connect(session_url(server, "dashboard"), bearer(keys["voice"][1])) as ws:
            await recv_until(ws, "session.created")
            for _ in range(20):
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(bytes(48000)).decode()}))
            for _ in range(3):
                await ws.send(json.dumps({"type": "response.create"}))
                await recv_until(ws, "response.done")
        # Image tasks on the staging key.
        async with await tasks_connect(server) as ws:
            await new_connection(ws, keys["images"][1])
            upload = await run_task(ws, {"taskType": "imageUpload", "taskUUID": task_uuid(), "image": b64(png_bytes())})
            for _ in range(4):
                await run_task(ws, {"taskType": "upscale", "taskUUID": task_uuid(), "inputImage": upload["imageUUID"],
                                    "upscaleFactor": 2})
    # Chat messages on the production key (rooms).
    await asyncio.to_thread(run_plan, {"scenario": "send", "count": 12, "clients": [
        {"name": "chat", "url": server.http_url, "apiKey": keys["chat"][1]}]})

    async with asyncio.timeout(30):
        while True:
            ledger = await sync_to_async(_ledger)()
            ended = not await sync_to_async(SessionRecord.objects.filter(ended_at__isnull=True).exists)()
            if ended and ledger.get((keys["chat"][0].key_id, "messages"), (0, 0))[0] == 12 and ledger.get(
                    (keys["images"][0].key_id, "tasks:upscale"), (0, 0))[0] == 4:
                return
            await asyncio.sleep(0.1)  # written by the server process; no event reaches the test


@pytest.fixture
def traffic(server_factory, owner, project):
    """Real traffic through a server process, before the browser starts (its event loop owns the thread)."""
    browser_user_prepare(owner)
    prices_set(importlib.import_module("accounts.migrations.0003_default_prices").DEFAULT_PRICES)  # the seeded list
    keys = {name: api_key_create(project=project, environment=project.environments.get(kind=kind), name=name,
                                 created_by=owner)
            for name, kind in (("voice", EnvironmentKind.DEVELOPMENT), ("images", EnvironmentKind.STAGING),
                               ("chat", EnvironmentKind.PRODUCTION))}
    server = server_factory(env={"REALTIME_METER_FLUSH_SECONDS": "0.5"})
    asyncio.run(_sessions(server, project, keys))
    return {"server": server, "keys": keys, "ledger": _ledger(),
            "today_cost": sum(UsageRecord.objects.values_list("cost_micros", flat=True))}


def test_the_dashboard_shows_todays_usage_and_its_csv_is_the_ledger(traffic, page, project, artifacts_dir):
    server, ledger = traffic["server"], traffic["ledger"]
    today = dt.datetime.now(dt.UTC).date()
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, server, "owner@example.com")
    page.goto(f"{server.http_url}/projects/{project.slug}/")
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", name="Cost per day")).to_be_visible()

    page.get_by_role("link", name="Last 7 days").click()
    page.get_by_label("Break down by").select_option("key")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#chart-heading")).to_contain_text("by key")

    # Today's bar: a segment per key, together the day's cost in the ledger.
    today_bars = page.locator(f'#usage-chart rect.bar[data-date="{today.isoformat()}"]')
    expect(today_bars).to_have_count(3)
    values = [int(v) for v in today_bars.evaluate_all("bars => bars.map((b) => b.dataset.value)")]
    assert sum(values) == traffic["today_cost"] > 0
    heights = today_bars.evaluate_all("bars => bars.map((b) => b.getBBox().height)")
    assert sum(heights) > 100  # the tallest bar of the range fills most of the plot
    assert page.locator('#usage-chart rect.bar').count() == 3  # nothing on the other six days
    # The data table beside the chart says the same.
    expect(page.locator(f'#usage-table tr[data-date="{today.isoformat()}"] td.total')).not_to_be_empty()
    expect(page.get_by_role("img", name="Cost per day, by key")).to_be_visible()
    for name in ("voice (development)", "images (staging)", "chat (production)"):
        expect(page.locator(".legend")).to_contain_text(name)
    page.screenshot(path=str(artifacts_dir / "usage-dashboard.png"), full_page=True)

    # The CSV is the ledger: every key and metric with its quantity and cost.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.DictReader(open(download.value.path(), encoding="utf-8")))
    from_csv: dict[tuple[str, str], tuple[Decimal, int]] = {}
    for row in rows:
        quantity, cost = from_csv.get((row["key_id"], row["metric"]), (Decimal(0), 0))
        from_csv[(row["key_id"], row["metric"])] = (quantity + Decimal(row["quantity"]), cost + int(row["cost_micros"]))
        assert row["date"] == today.isoformat() and row["currency"] == "USD"
    assert from_csv == ledger
    voice = traffic["keys"]["voice"][0].key_id
    assert ledger[(voice, "audio_in_seconds")][0] == Decimal("20.000")
    assert ledger[(voice, "audio_out_seconds")][0] == Decimal("3.000")

    # A key's page, from the by-key table.
    page.get_by_role("link", name="voice", exact=True).click()
    expect(page.locator("h2.key-title")).to_contain_text("voice")
    expect(page.locator("#usage-chart rect.bar")).to_have_count(len([k for k in ledger if k[0] == voice]))

    # The month's statement: a line per key and metric, and its print layout without the portal's chrome.
    page.get_by_role("navigation", name="Usage and billing").get_by_role("link", name="Statements").click()
    statement = page.locator("article.statement")
    expect(statement.locator("tr[data-metric]")).to_have_count(len([k for k in ledger if ledger[k][0]]))
    page.emulate_media(media="print")
    expect(page.locator(".site-header")).to_be_hidden()
    page.screenshot(path=str(artifacts_dir / "usage-statement-print.png"), full_page=True)
    page.emulate_media(media="screen")

    # A project budget set in the page shows how much of it is used.
    page.get_by_role("link", name="Budgets").click()
    page.get_by_label("Monthly limit for Whole project (USD)").fill("0.50")
    page.get_by_role("button", name="Save limit for Whole project").click()
    expect(page.get_by_role("status")).to_contain_text("Monthly budget of the project set to $0.50.")
    expect(page.get_by_role("meter", name="Whole project: budget used")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "usage-budgets.png"), full_page=True)
