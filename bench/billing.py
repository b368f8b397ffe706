"""Billing benchmark: what prices, budgets and usage reports cost, in one process on a throwaway
PostgreSQL database holding a month of ledger rows.

  budget check (cached)   what every connection and every live session's re-check pays while the
                          process's copy of the project's budget state is fresh. Reference: the API-key
                          cache lookup every connection already pays (accounts.keys.key_cache).
  budget check (refresh)  the same when the copy is stale: the project's budgets and month-to-date
                          spend per key from the ledger. Reference: a project without budgets (one query).
  flush                   one meter flush of 7 metrics as written now: pricing (from the per-process price
                          list), the retry check, the ledger insert and the month's spend. Reference: the
                          bare ledger insert the meter did before billing.
  usage report            the dashboard's aggregate over 30 days, and the whole dashboard page (chart,
                          tables, budgets). Reference: counting the same rows.

Medians over runs; ratios are taken within each run, then their median. ``python bench/billing.py``
writes the billing section of bench/README.md and bench/results/billing.json; ``--no-write`` prints.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from relay import BASE_DIR, machine, prepare_database  # noqa: E402  (bench helpers)
from support import django_setup, readme_section_write  # noqa: E402

README = BASE_DIR / "bench" / "README.md"
RESULTS = BASE_DIR / "bench" / "results" / "billing.json"
SECTION_BEGIN = "<!-- billing:begin (written by bench/billing.py; edit the script, not this section) -->"
SECTION_END = "<!-- billing:end -->"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/switchboard_bench_billing"
IDLE_SESSIONS = 500
METRICS = ("session_seconds", "audio_in_seconds", "audio_out_seconds", "text_in_tokens", "text_out_tokens",
           "messages", "tasks:upscale")


def setup_django(database_url: str) -> None:
    django_setup(database_url=database_url, label="billing")


def build_ledger(rows: int, keys: int):
    """A project with ``keys`` keys over the three environments and ``rows`` ledger rows spread over this
    month so far (so a budget refresh sums all of them, as at the end of a month); a second project
    without budgets."""
    from accounts.models import Environment, EnvironmentKind, UsageRecord, User
    from accounts.services import api_key_create, project_create

    user = User.objects.create_user(email="bench-billing@example.com", password=None)
    project = project_create(name="Billing bench", owner=user)
    plain = project_create(name="Billing bench, no budgets", owner=user)
    environments = list(Environment.objects.filter(project=project))
    made = [api_key_create(project=project, environment=environments[n % 3], name=f"key {n}", created_by=user)[0]
            for n in range(keys)]
    for other in (plain,):
        api_key_create(project=other, environment=other.environments.get(kind=EnvironmentKind.DEVELOPMENT),
                       name="plain", created_by=user)
    now = dt.datetime.now(dt.UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = (now - month_start).total_seconds()
    batch = []
    for n in range(rows):
        key = made[n % keys]
        metric = METRICS[n % len(METRICS)]
        batch.append(UsageRecord(
            api_key=key, key_id=key.key_id, project=project, environment_id=key.environment_id,
            session_id=f"sess_{n // 70}", dialect="realtime", metric=metric, quantity=Decimal("4.987"),
            unit_price_micros=100, cost_micros=498, occurred_at=now - dt.timedelta(seconds=span * n / rows),
            idempotency_key=f"bench:{n}:{metric}"))
        if len(batch) == 5000:
            UsageRecord.objects.bulk_create(batch)
            batch = []
    UsageRecord.objects.bulk_create(batch)
    return project, plain, made


def timed(function, repeat: int) -> float:
    """Median seconds of one call over ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def one_run(project, plain, keys, owner_client) -> dict:
    from django.db import transaction
    from django.utils import timezone

    from accounts.billing.budgets import budget_cache, budget_state_get, budget_state_peek
    from accounts.billing.ledger import KeyRef, UsageBatch, ledger_write, usage_batch_price
    from accounts.billing.prices import price_cache
    from accounts.billing.usage import today, usage_lines
    from accounts.keys import VerifiedKey, key_cache
    from accounts.models import UsageRecord

    key = keys[0]
    verified = VerifiedKey(pk=str(key.pk), key_id=key.key_id, name=key.name, project_id=project.pk,
                           project_slug=project.slug, environment_id=key.environment_id, environment="development",
                           expires_at=None, valid_until=None)
    key_cache.put("bench-digest", verified)
    budget_state_get(project_id=project.pk)  # warm

    def cached_check():
        for _ in range(1000):
            budget_state_peek(project_id=project.pk).exceeded(key.key_id)

    def key_lookup():
        for _ in range(1000):
            key_cache.get("bench-digest")

    def refresh(project_id):
        def run():
            budget_cache.invalidate(project_id)
            budget_state_get(project_id=project_id)
        return run

    amounts = {metric: Decimal("4.987") for metric in METRICS}
    session = uuid.uuid4().hex
    key_ref = KeyRef.of(verified)

    def batch(session_id: str, batch_amounts: dict) -> UsageBatch:
        return UsageBatch(key=key_ref, session_id=session_id, meter_id="bench", dialect="realtime",
                          seq=next(sequence), amounts=batch_amounts, occurred_at=timezone.now())

    def write(batches: list[UsageBatch]) -> None:
        for one in batches:
            usage_batch_price(one, remainders={})
        ledger_write(batches=batches)

    def flush_priced():
        write([batch(session, amounts)])

    # Issue 14: idle sessions' session time, written per process (one transaction for all) versus per
    # session (one transaction each, as before the usage writer).
    idle = [uuid.uuid4().hex for _ in range(IDLE_SESSIONS)]
    idle_amounts = {"session_seconds": Decimal("5.000")}

    def flush_process():
        write([batch(session_id, idle_amounts) for session_id in idle])

    def flush_each_session():
        for session_id in idle:
            write([batch(session_id, idle_amounts)])

    def flush_unpriced():
        seq = next(sequence)
        now = timezone.now()
        with transaction.atomic():
            UsageRecord.objects.bulk_create([UsageRecord(
                api_key_id=verified.pk, key_id=verified.key_id, project_id=project.pk,
                environment_id=verified.environment_id, session_id=session, dialect="realtime", metric=metric,
                quantity=quantity, occurred_at=now, idempotency_key=f"{session}:{seq}:{metric}")
                for metric, quantity in amounts.items()], ignore_conflicts=True)

    import itertools

    sequence = itertools.count(1)
    price_cache.get(project.pk)
    start = today() - dt.timedelta(days=29)
    end = today()
    count = UsageRecord.objects.filter(project=project, occurred_at__date__gte=start).count

    result = {
        "budget_cached_us": timed(cached_check, 15) * 1e6 / 1000,
        "key_cache_us": timed(key_lookup, 15) * 1e6 / 1000,
        "budget_refresh_ms": timed(refresh(project.pk), 9) * 1000,
        "budget_refresh_no_budget_ms": timed(refresh(plain.pk), 9) * 1000,
        "flush_priced_ms": timed(flush_priced, 25) * 1000,
        "flush_unpriced_ms": timed(flush_unpriced, 25) * 1000,
        "flush_process_ms": timed(flush_process, 5) * 1000,
        "flush_each_ms": timed(flush_each_session, 3) * 1000,
        "report_ms": timed(lambda: usage_lines(project_id=project.pk, start=start, end=end), 5) * 1000,
        "count_ms": timed(count, 5) * 1000,
        "page_ms": timed(lambda: owner_client.get(f"/projects/{project.slug}/usage/", {
            "from": start.isoformat(), "to": end.isoformat(), "by": "key"}), 5) * 1000,
    }
    result["budget_cached_x"] = result["budget_cached_us"] / result["key_cache_us"]
    result["budget_refresh_x"] = result["budget_refresh_ms"] / result["budget_refresh_no_budget_ms"]
    result["flush_x"] = result["flush_priced_ms"] / result["flush_unpriced_ms"]
    result["flush_process_x"] = result["flush_process_ms"] / result["flush_each_ms"]
    result["report_x"] = result["report_ms"] / result["count_ms"]
    result["page_x"] = result["page_ms"] / result["count_ms"]
    return result


def render(runs: list[dict], meta: dict) -> str:
    def med(name):
        return statistics.median(run[name] for run in runs)

    rows = [
        ("budget check, cached (every connection; each live session every BILLING_SPEND_CACHE_SECONDS)",
         f"{med('budget_cached_us'):.2f} µs", "API-key cache lookup", f"{med('key_cache_us'):.2f} µs",
         f"{med('budget_cached_x'):.1f}×"),
        ("budget check, refresh (once per project per process per BILLING_SPEND_CACHE_SECONDS)",
         f"{med('budget_refresh_ms'):.1f} ms", "project without budgets", f"{med('budget_refresh_no_budget_ms'):.2f} ms",
         f"{med('budget_refresh_x'):.1f}×"),
        ("meter flush, 7 metrics: priced, retry check, insert, month's spend", f"{med('flush_priced_ms'):.2f} ms",
         "the bare insert (before billing)", f"{med('flush_unpriced_ms'):.2f} ms", f"{med('flush_x'):.2f}×"),
        (f"usage writer: {IDLE_SESSIONS} live sessions' time in one transaction (every flush interval)",
         f"{med('flush_process_ms'):.1f} ms", "one transaction per session (before)", f"{med('flush_each_ms'):.1f} ms",
         f"{med('flush_process_x'):.2f}×"),
        ("dashboard aggregate, 30 days", f"{med('report_ms'):.1f} ms", "count of the same rows",
         f"{med('count_ms'):.1f} ms", f"{med('report_x'):.1f}×"),
        ("dashboard page, 30 days by key", f"{med('page_ms'):.1f} ms", "count of the same rows",
         f"{med('count_ms'):.1f} ms", f"{med('page_x'):.1f}×"),
    ]
    table = ["| measure | median | reference | reference median | × reference |", "|---|---:|---|---:|---:|"]
    table += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join([
        SECTION_BEGIN, "## Billing (`bench/billing.py`)", "",
        f"Measured {meta['date']} on {meta['machine']}. Median of {meta['runs']} runs; ratios are taken within "
        f"each run, then their median. The 1-minute load average was {meta['load'][0]:.1f} before and "
        f"{meta['load'][1]:.1f} after (other work on the shared machine is noise).", "",
        "Run: `.venv/bin/python bench/billing.py` (`--help` for options). Needs PostgreSQL on loopback; about a "
        "minute.", "",
        f"One process, a throwaway PostgreSQL database with {meta['rows']:,} ledger rows of one project "
        f"({meta['keys']} keys, 3 environments, 7 metrics) this month so far, with a project and a key budget (a flush every 5 s is 720 rows per metric per session-hour). A "
        "refresh reads the per-key month-to-date spend (`MonthlySpend`, kept in step with every ledger write), "
        "not the ledger itself; the dashboard aggregates the ledger rows.", "",
        *table, "", SECTION_END, "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="2 runs over 20,000 rows")
    parser.add_argument("--no-write", action="store_true", help="print instead of writing README and results")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.rows = 2, 20_000
    database_url = os.environ.get("BENCH_BILLING_DATABASE_URL", DEFAULT_DATABASE_URL)
    load_before = os.getloadavg()[0]
    prepare_database(database_url)
    setup_django(database_url)
    from django.test import Client
    from django.test.utils import setup_test_environment

    from accounts.models import Budget

    setup_test_environment()
    project, plain, keys = build_ledger(args.rows, args.keys)
    Budget.objects.create(project=project, key_id="", monthly_limit_micros=10**12)
    Budget.objects.create(project=project, key_id=keys[0].key_id, monthly_limit_micros=10**12)
    client = Client()
    client.force_login(project.owner)
    runs = [one_run(project, plain, keys, client) for _ in range(args.runs)]
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "runs": args.runs,
            "rows": args.rows, "keys": args.keys, "load": (load_before, os.getloadavg()[0])}
    section = render(runs, meta)
    if args.no_write:
        print(section)
        return
    RESULTS.write_text(json.dumps({"meta": meta, "runs": runs}, indent=2) + "\n")
    readme_section_write(name="billing", section=section)
    print(section)


if __name__ == "__main__":
    main()
