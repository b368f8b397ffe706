"""Money is integer micro-units (millionths) of one currency, BILLING_CURRENCY; never a float.

Display: amounts of a cent or more are shown to the cent ("$1.23"); smaller ones with the digits
they need, up to the micro-unit ("€0.004567"), so a sub-cent price or cost never reads as "$0.00".
Currencies without minor units (JPY, KRW, ...) follow the same rule around one whole unit.
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings

MICROS = 1_000_000
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "CAD": "CA$", "AUD": "A$", "CNY": "CN¥",
           "KRW": "₩", "BRL": "R$", "MXN": "MX$", "CHF": "CHF\u00a0", "SEK": "SEK\u00a0"}
NO_MINOR_UNITS = {"JPY", "KRW"}


def currency() -> str:
    return settings.BILLING_CURRENCY


def money_decimal(micros: int) -> Decimal:
    """The exact amount in currency units."""
    return Decimal(int(micros)) / MICROS


def money_format(micros: int, *, exact: bool = False) -> str:
    """"$1.23", "€0.004567", "-$0.50". ``exact`` shows every significant digit down to the
    micro-unit (for unit prices, where rounding to the cent would be wrong)."""
    code = currency()
    sign = "-" if micros < 0 else ""
    amount = money_decimal(abs(int(micros)))
    minor = 0 if code in NO_MINOR_UNITS else 2
    threshold = Decimal(1).scaleb(-minor)
    if exact or (amount and amount < threshold):
        text = f"{amount:.6f}".rstrip("0")
        whole, _, fraction = text.partition(".")
        text = whole + ("." + fraction.ljust(minor, "0") if fraction or minor else "")
    else:
        text = f"{amount.quantize(threshold, rounding=ROUND_HALF_EVEN):,.{minor}f}"
    text = text.rstrip(".")
    symbol = SYMBOLS.get(code)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text}\u00a0{code}"


def money_parse(text: str) -> int:
    """Micro-units from a decimal amount in currency units ("12.50", "0.000001"); ValueError when it
    is not a plain non-negative number with at most six decimals."""
    value = text.strip().replace(",", "")
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise ValueError("not a number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("not a non-negative amount")
    micros = amount * MICROS
    if micros != micros.to_integral_value():
        raise ValueError("more than six decimals")
    if micros > 10**15:
        raise ValueError("too large")
    return int(micros)
