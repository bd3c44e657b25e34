"""Charts drawn on the server as inline SVG: nothing to load, no script, no network.

Bars carry their numbers in a ``<title>`` (a tooltip) and in ``data-`` attributes, so a
reader (or a test) can check what a bar stands for.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from hooks.stats import PERIOD, Period

SUCCEEDED = "#1f7a3d"
FAILED = "#c0392b"
WARNING = "#b7791f"
IDLE = "#c8c8c8"
AXIS = "#888"
LABEL_EVERY = 12  # periods: every six hours at half an hour each


def _span(period: Period) -> str:
    end = period.start + PERIOD
    return f"{period.start:%H:%M}–{end:%H:%M} UTC"


def _time_labels(periods: Sequence[Period], left: float, step: float, y: float) -> list[str]:
    return [
        f'<text x="{left + i * step:.1f}" y="{y:.1f}" font-size="10" fill="{AXIS}">'
        f"{period.start:%H:%M}</text>"
        for i, period in enumerate(periods)
        if i % LABEL_EVERY == 0
    ]


def stacked_bars(
    periods: Sequence[Period], *, chart_id: str, width: int = 760, height: int = 170
) -> SafeString:
    """Succeeded (below) and failed (above) attempts per period."""
    left, top, bottom = 44, 8, 18
    plot = height - top - bottom
    step = (width - left) / max(1, len(periods))
    peak = max((period.total for period in periods), default=0) or 1
    base = top + plot
    parts = [
        f'<svg id="{escape(chart_id)}" class="hook-chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="attempts per half hour, succeeded and failed">',
        f'<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="{AXIS}"/>',
        f'<text x="0" y="{top + 8}" font-size="10" fill="{AXIS}">{peak:,}</text>',
        f'<text x="0" y="{base}" font-size="10" fill="{AXIS}">0</text>',
    ]
    for i, period in enumerate(periods):
        x = left + i * step + 1
        ok_height = plot * period.succeeded / peak
        failed_height = plot * period.failed / peak
        title = escape(f"{_span(period)}: {period.succeeded:,} succeeded, {period.failed:,} failed")
        parts.append(
            f'<g class="period" data-succeeded="{period.succeeded}" data-failed="{period.failed}">'
            f"<title>{title}</title>"
            f'<rect class="bar-succeeded" x="{x:.1f}" y="{base - ok_height:.1f}" '
            f'width="{max(1.0, step - 2):.1f}" height="{ok_height:.1f}" fill="{SUCCEEDED}"/>'
            f'<rect class="bar-failed" x="{x:.1f}" y="{base - ok_height - failed_height:.1f}" '
            f'width="{max(1.0, step - 2):.1f}" height="{failed_height:.1f}" fill="{FAILED}"/>'
            "</g>"
        )
    parts += _time_labels(periods, left, step, height - 4)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (numbers, and text through escape())


def success_rate_bars(
    periods: Sequence[Period], *, chart_id: str, width: int = 380, height: int = 64
) -> SafeString:
    """Each period's share of attempts that succeeded, as a bar's height; a period with no
    attempts is a grey tick."""
    top, bottom = 4, 14
    plot = height - top - bottom
    step = width / max(1, len(periods))
    base = top + plot
    parts = [
        f'<svg id="{escape(chart_id)}" class="hook-chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="success rate per half hour">',
        f'<line x1="0" y1="{base}" x2="{width}" y2="{base}" stroke="{AXIS}"/>',
    ]
    for i, period in enumerate(periods):
        rate = period.success_rate
        if rate is None:
            bar_height, colour, text = 1.0, IDLE, "no attempts"
        else:
            bar_height = max(1.0, plot * rate)
            colour = SUCCEEDED if rate >= 0.99 else WARNING if rate >= 0.9 else FAILED
            text = f"{rate:.1%} of {period.total:,} succeeded"
        parts.append(
            f'<rect class="bar-rate" data-rate="{"" if rate is None else f"{rate:.4f}"}" '
            f'x="{i * step + 0.5:.1f}" y="{base - bar_height:.1f}" '
            f'width="{max(1.0, step - 1):.1f}" height="{bar_height:.1f}" fill="{colour}">'
            f"<title>{escape(f'{_span(period)}: {text}')}</title></rect>"
        )
    parts += _time_labels(periods, 0, step, height - 2)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (numbers, and text through escape())
