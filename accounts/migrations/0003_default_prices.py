"""The default price list (micro-units of BILLING_CURRENCY per unit). Operators change it in the admin;
this only fills metrics that have no default price yet."""
from django.db import migrations

DEFAULT_PRICES = {
    "session_seconds": 100,        # 0.006 a minute of connected session
    "audio_in_seconds": 1_000,     # 0.06 a minute of audio from the client
    "audio_out_seconds": 4_000,    # 0.24 a minute of audio to the client
    "text_in_tokens": 5,           # 5 per million tokens
    "text_out_tokens": 20,         # 20 per million tokens
    "messages": 100,               # 0.10 per thousand conversation or room messages
    "tasks:*": 1_000,              # 0.001 a task without a price of its own
    "tasks:imageUpload": 100,
    "tasks:upscale": 2_000,
    "tasks:imageUpscale": 2_000,
    "tasks:text2img": 10_000,
    "tasks:img2img": 10_000,
    "tasks:inpainting": 10_000,
}


def seed(apps, schema_editor):
    Price = apps.get_model("accounts", "Price")
    existing = set(Price.objects.filter(project__isnull=True).values_list("metric", flat=True))
    Price.objects.bulk_create(
        [Price(metric=metric, unit_price_micros=price) for metric, price in DEFAULT_PRICES.items() if metric not in existing]
    )


def unseed(apps, schema_editor):
    Price = apps.get_model("accounts", "Price")
    Price.objects.filter(project__isnull=True, metric__in=list(DEFAULT_PRICES)).delete()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_prices_budgets")]

    operations = [migrations.RunPython(seed, unseed)]
