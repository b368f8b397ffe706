"""Prices and money: how a price is resolved, how a cost is rounded (and why many small rows cost the
same as one big one), how amounts are shown, the seeded price list and its admin."""
from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.test import Client

from accounts.billing.money import money_format, money_parse
from accounts.billing.prices import charge_compute, price_list_get
from accounts.models import Price, User
from tests.test_billing_support import prices_set

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("micros, shown", [
    (1_230_000, "$1.23"), (1_234_567, "$1.23"), (1_235_000, "$1.24"), (10_000, "$0.01"), (4_567, "$0.004567"),
    (1, "$0.000001"), (9_999, "$0.009999"), (0, "$0.00"), (-500_000, "-$0.50"), (123_456_789_000, "$123,456.79"),
])
def test_amounts_are_shown_to_the_cent_and_sub_cent_amounts_exactly(micros, shown):
    assert money_format(micros) == shown


def test_the_currency_setting_decides_the_symbol(settings):
    settings.BILLING_CURRENCY = "EUR"
    assert money_format(4_567) == "€0.004567" and money_format(1_230_000) == "€1.23"
    settings.BILLING_CURRENCY = "JPY"
    assert money_format(1_234_500_000) == "¥1,234" and money_format(500_000) == "¥0.5"
    settings.BILLING_CURRENCY = "NOK"
    assert money_format(2_500_000) == "2.50\u00a0NOK"


def test_unit_prices_are_shown_with_every_digit():
    assert money_format(20, exact=True) == "$0.00002"
    assert money_format(1_500_000, exact=True) == "$1.50"


@pytest.mark.parametrize("text, micros", [("25", 25_000_000), ("12.50", 12_500_000), ("0.000001", 1), ("1,000", 10**9)])
def test_amounts_typed_in_currency_units_become_micro_units(text, micros):
    assert money_parse(text) == micros


@pytest.mark.parametrize("text", ["", "abc", "-1", "0.0000001", "NaN", "Infinity", "1e30"])
def test_unusable_amounts_are_refused(text):
    with pytest.raises(ValueError):
        money_parse(text)


def test_a_cost_is_rounded_down_and_the_remainder_carried():
    first = charge_compute(quantity=Decimal("0.333"), unit_price_micros=1000)  # 333 micros exactly
    assert (first.cost_micros, first.remainder) == (333, 0)
    small = charge_compute(quantity=Decimal("0.001"), unit_price_micros=333)  # 0.333 micros
    assert (small.cost_micros, small.remainder) == (0, 333)
    carried = charge_compute(quantity=Decimal("0.002"), unit_price_micros=333, remainder=small.remainder)
    assert (carried.cost_micros, carried.remainder) == (0, 999)  # 0.999 micros, still not a whole one
    assert charge_compute(quantity=Decimal("0.001"), unit_price_micros=333, remainder=999).cost_micros == 1


def test_many_small_rows_cost_what_one_row_of_their_total_costs():
    """A 1-hour session flushed every 5 s is 720 rows; per-row rounding must not make it cost more
    (or visibly less) than the same usage in one row."""
    price, remainder, charged = 7, 0, 0  # 7 micro-units a second
    quantity = Decimal("4.987")  # seconds per flush, each 34.909 micro-units exactly
    for _ in range(720):
        charge = charge_compute(quantity=quantity, unit_price_micros=price, remainder=remainder)
        charged, remainder = charged + charge.cost_micros, charge.remainder
    whole = charge_compute(quantity=quantity * 720, unit_price_micros=price)
    assert charged == whole.cost_micros == 25134  # 3590.64 s x 7 = 25134.48 micro-units, rounded down
    # Rounding each row on its own would have lost 0.909 micro-units 720 times.
    assert sum(charge_compute(quantity=quantity, unit_price_micros=price).cost_micros for _ in range(720)) == 24480


@pytest.mark.django_db
def test_a_project_override_wins_over_the_default_and_tasks_star_covers_unpriced_task_types(project, other_project):
    prices_set({"audio_in_seconds": 1000, "tasks:*": 500, "tasks:upscale": 2000, "messages": 100})
    prices_set({"audio_in_seconds": 800, "tasks:*": 300}, project=project)
    mine, theirs = price_list_get(project_id=project.pk), price_list_get(project_id=other_project.pk)
    assert (mine.unit_price("audio_in_seconds"), theirs.unit_price("audio_in_seconds")) == (800, 1000)
    # The project's tasks:* is an override of every task type, the defaults' per-type rows included.
    assert (mine.unit_price("tasks:upscale"), theirs.unit_price("tasks:upscale")) == (300, 2000)
    assert (mine.unit_price("tasks:imageUpload"), theirs.unit_price("tasks:imageUpload")) == (300, 500)
    assert mine.unit_price("messages") == 100  # not overridden: the default
    assert mine.unit_price("text_in_tokens") == 0  # priced nowhere: free


@pytest.mark.django_db
def test_a_price_changed_in_the_database_applies_after_the_cache_window(project, monkeypatch):
    from accounts.billing import prices

    prices_set({"messages": 100})
    assert price_list_get(project_id=project.pk).unit_price("messages") == 100
    Price.objects.filter(metric="messages").update(unit_price_micros=150)
    assert price_list_get(project_id=project.pk).unit_price("messages") == 100  # this process's copy
    monkeypatch.setattr(prices, "PRICE_CACHE_SECONDS", 0)
    assert price_list_get(project_id=project.pk).unit_price("messages") == 150


@pytest.mark.django_db
@pytest.mark.parametrize("metric", ["session_seconds", "tasks:*", "tasks:text2img", "messages"])
def test_prices_may_name_any_metric_the_ledger_records(metric, project):
    Price(metric=metric, project=project, unit_price_micros=1).full_clean()


@pytest.mark.django_db
@pytest.mark.parametrize("metric", ["seconds", "tasks:", "tasks:bad type", "audio_in", "tasks:**"])
def test_a_price_for_an_unknown_metric_is_refused(metric):
    with pytest.raises(ValidationError) as error:
        Price(metric=metric, unit_price_micros=1).full_clean()
    assert "metric" in error.value.message_dict


@pytest.mark.django_db
def test_the_seeded_price_list_prices_every_metric():
    seed = importlib.import_module("accounts.migrations.0003_default_prices")
    Price.objects.all().delete()
    seed.seed(apps, None)
    seed.seed(apps, None)  # idempotent: it only fills metrics without a default price
    defaults = price_list_get(project_id=0)
    for metric in ("session_seconds", "audio_in_seconds", "audio_out_seconds", "text_in_tokens", "text_out_tokens",
                   "messages", "tasks:imageUpload", "tasks:someNewType"):
        assert defaults.unit_price(metric) > 0, metric
    assert Price.objects.filter(project__isnull=True).count() == len(seed.DEFAULT_PRICES)


@pytest.mark.django_db
def test_operators_edit_prices_and_overrides_in_the_admin(project):
    operator = User.objects.create_superuser(email="ops@example.com", password="operator passphrase 1")
    client = Client()
    client.force_login(operator)
    response = client.post("/admin/accounts/price/add/", {"metric": "tasks:upscale", "project": project.pk,
                                                          "unit_price_micros": "2500"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert price_list_get(project_id=project.pk).unit_price("tasks:upscale") == 2500  # the admin cleared the cache
    refused = client.post("/admin/accounts/price/add/", {"metric": "tasks:upscale", "project": project.pk,
                                                         "unit_price_micros": "1"})
    assert refused.status_code == 200 and "already has a price" in refused.content.decode()
    listing = client.get("/admin/accounts/price/").content.decode()
    assert "$0.0025 per task" in listing and project.slug in listing
