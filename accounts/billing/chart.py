"""A stacked bar chart as server-rendered SVG (no JavaScript, nothing from the network).

Values are integers (micro-units of money, or thousandths of a unit of usage) so the axis arithmetic
is exact; ``value_text`` turns one into the label a reader sees. Each bar segment carries a <title>
(a tooltip) and data attributes; the page puts the same numbers in a data table beside the chart.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

# Distinguishable, colour-blind-friendly series colours (Okabe-Ito, then a few more).
PALETTE = ("#2454d6", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#7a5195", "#8c8c00",
           "#5f7a8c", "#b5651d")
WIDTH, HEIGHT = 960, 300
LEFT, RIGHT, TOP, BOTTOM = 72, 8, 14, 44


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    values: list[int]  # one per day
    color: str = ""


def series_colored(series: list[Series]) -> list[Series]:
    return [Series(s.key, s.label, s.values, s.color or PALETTE[n % len(PALETTE)]) for n, s in enumerate(series)]


def nice_step(top: int, ticks: int = 4) -> int:
    """The smallest 1, 2 or 5 x 10^n step that covers ``top`` in at most ``ticks`` steps."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor * ticks >= top:
                return step * factor
        step *= 10


def _n(number: float) -> str:
    return f"{number:.1f}"


def _day_label(day: dt.date, many: bool) -> str:
    return f"{day.day} {day:%b}" if not many else str(day.day)


def stacked_bars_svg(*, days: list[dt.date], series: list[Series], value_text: Callable[[int], str],
                     title: str, description: str) -> SafeString:
    totals = [sum(s.values[n] for s in series) for n in range(len(days))]
    top = max(totals, default=0)
    step = nice_step(top) if top > 0 else 1
    y_max = step * max(1, -(-top // step))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    band = plot_w / max(1, len(days))
    bar = min(56.0, band * 0.72)

    def y(value: int) -> float:
        return TOP + plot_h - plot_h * value / y_max

    parts = [format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-labelledby="chart-title chart-desc" '
        'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        '<title id="chart-title">{}</title><desc id="chart-desc">{}</desc>', WIDTH, HEIGHT, title, description)]
    tick = 0
    # An empty chart has one honest tick, 0: a "1 micro-unit" top tick would read as real spend.
    last_tick = y_max if top > 0 else 0
    while tick <= last_tick:
        ty = y(tick)
        parts.append(format_html(
            '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
            '<text class="axis" x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>',
            LEFT, WIDTH - RIGHT, _n(ty), _n(ty), LEFT - 8, _n(ty), value_text(tick)))
        tick += step
    label_every = max(1, -(-len(days) // 24))
    many = len(days) > 24
    for n, day in enumerate(days):
        x = LEFT + band * n + (band - bar) / 2
        base = 0
        for s in series:
            value = s.values[n]
            if value <= 0:
                continue
            y_top, y_bottom = y(base + value), y(base)
            parts.append(format_html(
                '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}" '
                'data-date="{}" data-series="{}" data-value="{}"><title>{} · {}: {}</title></rect>',
                _n(x), _n(y_top), _n(bar), _n(max(0.5, y_bottom - y_top)), s.color, day.isoformat(), s.key, value,
                day.isoformat(), s.label, value_text(value)))
            base += value
        if n % label_every == 0:
            parts.append(format_html(
                '<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                _n(LEFT + band * n + band / 2), HEIGHT - BOTTOM + 18, _day_label(day, many)))
    if many:
        month_text = days[0].strftime("%b %Y") if days[0].month == days[-1].month else (
            f"{days[0].strftime('%b %Y')} – {days[-1].strftime('%b %Y')}")
        parts.append(format_html('<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                                 _n(LEFT + plot_w / 2), HEIGHT - 6, month_text))
    parts.append(format_html('<line class="baseline" x1="{}" x2="{}" y1="{}" y2="{}"/>',
                             LEFT, WIDTH - RIGHT, TOP + plot_h, TOP + plot_h))
    if top == 0:
        parts.append(format_html('<text class="empty" x="{}" y="{}" text-anchor="middle">{}</text>',
                                 _n(LEFT + plot_w / 2), _n(TOP + plot_h / 2), "No usage in this range"))
    parts.append("</svg>")
    return mark_safe("".join(str(p) for p in parts))

