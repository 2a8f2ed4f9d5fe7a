"""The dashboard's charts as inline SVG, drawn the way the owner statements draw theirs
(services.settlement.statements.charts: same style, text kept as text, fixed ids)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import matplotlib
from matplotlib.dates import AutoDateLocator, DateFormatter

from flexfleet.domain.time import MTU
from services.api.dashboard_queries import SocPoint
from services.settlement.statements import charts
from services.settlement.statements.charts import BLUE, GREEN, Bar, bar_chart


def soc_histogram_chart(bands: Sequence[tuple[str, int]]) -> str:
    """How many plugged-in cars sit in each SoC band."""
    return bar_chart([Bar(label, float(n), str(n)) for label, n in bands], "SoC of plugged-in vehicles",
                     "soc-histogram")


def _with_gaps(points: Sequence[SocPoint]) -> tuple[list[datetime], list[float], list[float]]:
    """The trace with a break after every quarter hour without readings, so the line does not
    draw a SoC (or a plugged-in stretch) across hours nobody reported."""
    xs: list[datetime] = []
    soc: list[float] = []
    plugged: list[float] = []
    for i, p in enumerate(points):
        if i and p.mtu_start - points[i - 1].mtu_start > MTU:
            xs.append(points[i - 1].mtu_start + MTU)
            soc.append(math.nan)
            plugged.append(0.0)
        xs.append(p.mtu_start)
        soc.append(p.soc_pct)
        plugged.append(100.0 if p.plugged_share >= 0.5 else 0.0)
    if points:                        # the last quarter hour has its width too
        xs.append(points[-1].mtu_start + MTU)
        soc.append(math.nan)
        plugged.append(0.0)
    return xs, soc, plugged


def soc_trace_chart(points: Sequence[SocPoint]) -> str:
    """Mean SoC per 15 minutes; the shaded band marks the quarter hours the car was plugged in."""
    with matplotlib.rc_context(charts.STYLE):
        fig = charts.figure(2.5)
        ax = charts.axes(fig, "State of charge (%), UTC")
        xs, soc, plugged = _with_gaps(points)
        ax.fill_between(xs, 0, plugged, step="post", color=GREEN, alpha=0.12, linewidth=0, label="plugged in")
        ax.plot(xs, soc, color=BLUE, linewidth=1.4, label="SoC")
        ax.set_ylim(0, 100)
        ax.set_yticks([0, 25, 50, 75, 100])
        ax.xaxis.set_major_locator(AutoDateLocator(maxticks=8))
        ax.xaxis.set_major_formatter(DateFormatter("%d %b %H:%M"))
        ax.legend(loc="upper right", frameon=False, ncols=2, fontsize=8)
    return charts.svg(fig, "soc-trace")
