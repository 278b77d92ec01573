"""An inline SVG chart of weekly in-person vs remote interactions (12 weeks).

Plain SVG text, built here rather than in the template so it can be tested on its own: two
bars per week, in-person solid and remote hatched (distinguishable without colour), a
``<title>`` and ``<desc>`` for screen readers, and the page shows the same numbers in a
table for anyone who cannot see the chart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape
from typing import Any

__all__ = ["weekly_chart"]

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 40, 36, 12, 40
IN_PERSON = "#1b5e20"  # dark green: 7.9:1 on white
REMOTE = "#0d47a1"  # dark blue: 8.6:1 on white


def weekly_chart(weeks: Sequence[dict[str, Any]]) -> str:
    top = max([1, *(max(w["in_person"], w["remote"]) for w in weeks)])
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(weeks), 1)
    bar = slot * 0.36
    total_in = sum(w["in_person"] for w in weeks)
    total_remote = sum(w["remote"] for w in weeks)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'role="img" aria-labelledby="chart-title chart-desc" class="chart">',
        '<title id="chart-title">In-person and remote contact, last 12 weeks</title>',
        f'<desc id="chart-desc">{total_in} in-person meetings and {total_remote} calls or '
        "messages over 12 weeks; the table below lists every week.</desc>",
        "<defs>"
        '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="#ffffff"/><rect width="3" height="6" fill="{REMOTE}"/>'
        "</pattern></defs>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" '
        'stroke="#222" stroke-width="1"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 16}" text-anchor="end" font-size="20">{top}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" font-size="20">0</text>',
    ]
    for i, w in enumerate(weeks):
        x = LEFT + i * slot + slot * 0.12
        for j, (key, fill) in enumerate((("in_person", IN_PERSON), ("remote", "url(#hatch)"))):
            h = plot_h * w[key] / top
            parts.append(
                f'<rect class="bar {key.replace("_", "-")}" x="{x + j * bar:.1f}" '
                f'y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{fill}" '
                f'stroke="{IN_PERSON if j == 0 else REMOTE}"/>'
            )
        if (len(weeks) - 1 - i) % 3 == 0:  # every third week, ending with this one
            day = dt.date.fromisoformat(w["week_start"])
            parts.append(
                f'<text x="{x + bar:.1f}" y="{HEIGHT - BOTTOM + 24}" text-anchor="middle" '
                f'font-size="20">{escape(day.strftime("%d %b"))}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
