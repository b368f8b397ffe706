"""Template filters for money and usage: {{ micros|money }}, {{ price|money_exact }},
{{ quantity|quantity:metric }}, {{ metric|metric_label }}."""
from django import template

from accounts.billing.metrics import metric_label as _metric_label
from accounts.billing.metrics import metric_unit as _metric_unit
from accounts.billing.metrics import metric_unit_singular as _metric_unit_singular
from accounts.billing.metrics import quantity_text
from accounts.billing.money import money_decimal, money_format

register = template.Library()


@register.filter
def money(micros):
    return "" if micros is None else money_format(int(micros))


@register.filter
def money_exact(micros):
    return "" if micros is None else money_format(int(micros), exact=True)


@register.filter
def money_plain(micros):
    """The amount in currency units without a symbol, for a form field ("25.00", "0.004567")."""
    if micros is None:
        return ""
    whole, _, fraction = f"{money_decimal(int(micros)):.6f}".rstrip("0").partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


@register.filter
def quantity(value, metric):
    return quantity_text(value or 0, metric)


@register.filter
def metric_label(metric):
    return _metric_label(metric)


@register.filter
def metric_unit(metric):
    return _metric_unit(metric)


@register.filter
def metric_unit_singular(metric):
    return _metric_unit_singular(metric)


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None
